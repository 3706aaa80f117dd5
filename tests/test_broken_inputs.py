#!/usr/bin/env python3
"""Run smelt on a corpus of broken inputs and check that it fails cleanly.

Usage:
    /usr/bin/python3 tests/test_broken_inputs.py --smelt build/core/smelt \\
        --workdir /tmp/smelt-broken [--case NAME]... [--list]

The corpus is generated at run time by tests/data/make-broken-inputs.py into
WORKDIR/corpus (one directory per case: recipe.smelt, model/, adapter/,
expect.json; exactly one thing is wrong in each).  For every case
`smelt run recipe.smelt --progress=none` must:

  * exit with the expected code (1: export failed, 2: invalid recipe; a
    signal or any other code is a failure);
  * print exactly one line on stderr, "smelt: error: MESSAGE", and MESSAGE
    must contain the key fact (file, tensor or key name; see expect.json);
  * for an invalid recipe (exit 2), `smelt validate recipe.smelt` must exit 2
    with one "smelt: error:" line as well;
  * `smelt run --dry-run` (run first) must change nothing, and must fail the
    same way when the problem is visible without reading tensor data
    (expect.json "at_plan"; bad values in the data need the real run);
  * leave the case directory exactly as it was: no file created (no output,
    no *.partial, anywhere), none deleted, none changed -- inputs and any
    pre-existing files in the destination included.  Only empty directories
    may appear.

The case control-valid breaks nothing: it must exit 0, print nothing on
stderr and write its destination, which shows that the corpus is valid but
for the one thing broken in each other case.

Prints "ok CASE" or "FAIL CASE: why" per case, then "N passed, M failed";
the exit status is non-zero if any case failed.  Cases that fail because of a
known smelt bug are still failures; their FAIL line says "[known smelt bug]".

The plugins are taken from SMELT_PLUGIN_PATH if set, else from the build tree
next to the smelt binary (BUILD/plugins); SMELT_PLUGIN_SYSTEM_PATH is emptied.
Only the Python standard library and numpy (for the generator) are needed.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = os.path.join(HERE, "data", "make-broken-inputs.py")

#: cases that fail because of a smelt bug found by this test (see the report);
#: they are run and counted as failures like any other.
KNOWN_BUGS = {
    "lora-export-fp16-overflow":
        "safetensors-lora DType=fp16 writes inf for an adapter value > 65504 "
        "(exit 0) instead of failing and naming the tensor",
    "lora-export-bf16-overflow":
        "safetensors-lora DType=bf16 writes -inf for an f32 adapter value beyond "
        "bf16's range (exit 0) instead of failing and naming the tensor",
    "bf16-overflow-f32-base":
        "merged16 DType=bf16 writes inf for a finite f32 base value beyond bf16's "
        "range (exit 0); only fp16 overflow is checked",
    "recipe-bad-shard-size":
        "`smelt validate` accepts MaxShardSize=5XB (exit 0); run rejects it (exit 2)",
    "recipe-destination-without-path":
        "a [Destination] without Path= passes `smelt validate` (exit 0) and fails "
        "`smelt run` with exit 1 instead of 2",
    "adapter-no-tensors":
        "an adapter whose adapter_model.safetensors holds no tensors merges as a "
        "silent no-op (exit 0)",
    "recipe-two-exports-one-destination":
        "two exports writing the same files into one destination: validate and "
        "--dry-run accept the recipe (exit 0), run fails with exit 1 instead of 2",
}


def smelt_env(smelt):
    """The environment for running smelt from a build tree."""
    env = dict(os.environ)
    if not env.get("SMELT_PLUGIN_PATH"):
        build = os.path.dirname(os.path.dirname(os.path.abspath(smelt)))
        env["SMELT_PLUGIN_PATH"] = os.path.join(build, "plugins")
    env["SMELT_PLUGIN_SYSTEM_PATH"] = ""
    env["LC_ALL"] = "C.UTF-8"
    env.pop("HF_TOKEN", None)
    return env


def snapshot(root):
    """{relative path: (kind, size, mode, sha256)} for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", 0, st.st_mode, os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", 0, st.st_mode, "")
            else:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = ("file", st.st_size, st.st_mode, h.hexdigest())
    return out


def compare_snapshots(before, after, root):
    """Problems (list of strings) between two snapshots of a case directory."""
    problems = []
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    new_files = [p for p in created if after[p][0] != "dir"]
    partial = [p for p in new_files if p.endswith(".partial")]
    if partial:
        problems.append("left *.partial files: %s" % ", ".join(partial))
    others = [p for p in new_files if not p.endswith(".partial")]
    if others:
        problems.append("left new files: %s" % ", ".join(others[:8])
                        + (" (+%d more)" % (len(others) - 8) if len(others) > 8 else ""))
    if removed:
        problems.append("deleted pre-existing paths: %s" % ", ".join(removed))
    if changed:
        problems.append("changed pre-existing paths: %s" % ", ".join(changed))
    return problems


def error_problems(stderr, exp):
    """Problems with the stderr of a failed run: one "smelt: error:" line
    holding the key facts."""
    problems = []
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        problems.append("expected one stderr line, got %d: %r" % (len(lines), stderr[-600:]))
    error_lines = [line for line in lines if line.startswith("smelt: error: ")]
    if not error_lines:
        problems.append("no \"smelt: error:\" line on stderr")
    else:
        msg = error_lines[0]
        missing = [s for s in exp.get("contains", []) if s not in msg]
        for group in exp.get("contains_any", []):
            if not any(s.lower() in msg.lower() for s in group):
                missing.append(" or ".join(repr(s) for s in group))
        if missing:
            problems.append("error line lacks %s: %r" % (", ".join(missing), msg))
    return problems


def run_smelt(smelt, args, case_dir, env):
    """(exit code, stderr text) of smelt ARGS run in case_dir, or raises
    subprocess.TimeoutExpired."""
    proc = subprocess.run([smelt] + args, cwd=case_dir, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def dry_run_problems(smelt, case_dir, exp, env):
    """`smelt run --dry-run` writes nothing, and reports every problem that
    does not need the tensor data (exp["at_plan"]) as the real run does."""
    before = snapshot(case_dir)
    try:
        rc, stderr = run_smelt(smelt, ["run", os.path.join(case_dir, "recipe.smelt"),
                                       "--dry-run"], case_dir, env)
    except subprocess.TimeoutExpired:
        return ["--dry-run timed out"]
    problems = []
    at_plan = exp.get("at_plan", True)
    if rc < 0:
        problems.append("--dry-run killed by signal %d" % -rc)
    elif at_plan and rc != exp["exit"]:
        problems.append("--dry-run exits %d, expected %d (the problem is visible before "
                        "any tensor data is read)" % (rc, exp["exit"]))
    elif not at_plan and rc not in (0, exp["exit"]):
        problems.append("--dry-run exits %d, expected 0 or %d" % (rc, exp["exit"]))
    if rc > 0:
        problems += ["--dry-run: " + p for p in error_problems(stderr, exp)]
    after = snapshot(case_dir)
    if after != before:
        diff = sorted(set(after) ^ set(before)
                      | {k for k in set(after) & set(before) if after[k] != before[k]})
        problems.append("--dry-run changed the case directory: %s" % diff[:8])
    return problems


def run_case(smelt, case_dir, exp, env):
    """Problems (list of strings) for one case; [] when it passes."""
    recipe = os.path.join(case_dir, "recipe.smelt")
    problems = dry_run_problems(smelt, case_dir, exp, env)
    before = snapshot(case_dir)
    try:
        rc, stderr = run_smelt(smelt, ["run", recipe, "--progress=none"], case_dir, env)
    except subprocess.TimeoutExpired:
        return problems + ["timed out after 60 s: smelt run %s" % recipe]
    if rc < 0:
        problems.append("killed by signal %d (crash)" % -rc)
    elif rc != exp["exit"]:
        problems.append("exit code %d, expected %d" % (rc, exp["exit"]))
    if exp["exit"] == 0:
        # the control case: a clean success that writes the destination
        if stderr.strip():
            problems.append("unexpected stderr: %r" % stderr[-600:])
        dest = os.path.join(case_dir, exp["destination"])
        if not os.path.isdir(dest) or not os.listdir(dest):
            problems.append("nothing written to %s" % exp["destination"])
        for dirpath, _, filenames in os.walk(case_dir):
            problems += ["left %s" % os.path.join(dirpath, f)
                         for f in filenames if f.endswith(".partial")]
        return problems
    problems += error_problems(stderr, exp)
    if exp["exit"] == 2:
        # an invalid recipe is invalid for `smelt validate` too
        try:
            vrc, verr = run_smelt(smelt, ["validate", recipe], case_dir, env)
            vlines = [x for x in verr.splitlines() if x.strip()]
            if vrc != 2 or len(vlines) != 1 or not vlines[0].startswith("smelt: error: "):
                problems.append("`smelt validate` exits %d (stderr %r) where run rejects "
                                "the recipe; expected 2 and one error line"
                                % (vrc, "\n".join(vlines)[-300:]))
        except subprocess.TimeoutExpired:
            problems.append("`smelt validate` timed out")
    problems += compare_snapshots(before, snapshot(case_dir), case_dir)
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True, help="the smelt binary")
    p.add_argument("--workdir", required=True, help="scratch directory (its corpus/ is replaced)")
    p.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)

    gen_cmd = [sys.executable, GENERATOR]
    if args.list:
        return subprocess.call(gen_cmd + ["--list"])
    smelt = os.path.abspath(args.smelt)
    if not os.access(smelt, os.X_OK):
        print("FAIL setup: %s is not executable" % smelt)
        print("0 passed, 1 failed")
        return 1
    corpus = os.path.join(os.path.abspath(args.workdir), "corpus")
    if os.path.exists(corpus):
        shutil.rmtree(corpus)
    os.makedirs(corpus)
    sel = []
    for c in args.case:
        sel += ["--case", c]
    gen = subprocess.run(gen_cmd + [corpus] + sel, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    if gen.returncode != 0:
        print("FAIL generate: %s" % gen.stderr.decode("utf-8", "replace").strip()[-2000:])
        print("0 passed, 1 failed")
        return 1
    names = gen.stdout.decode().split()
    env = smelt_env(smelt)
    passed = failed = 0
    for name in names:
        case_dir = os.path.join(corpus, name)
        with open(os.path.join(case_dir, "expect.json")) as f:
            exp = json.load(f)
        problems = run_case(smelt, case_dir, exp, env)
        if problems:
            failed += 1
            note = " [known smelt bug: %s]" % KNOWN_BUGS[name] if name in KNOWN_BUGS else ""
            print("FAIL %s: %s%s" % (name, "; ".join(problems), note))
        else:
            passed += 1
            note = " (listed as a known bug: fixed?)" if name in KNOWN_BUGS else ""
            print("ok %s%s" % (name, note))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

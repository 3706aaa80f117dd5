#!/usr/bin/env python3
"""Tests of the smelt command line: plugins, run (--dry-run, --jobs, --set,
--progress=json, SIGINT, write errors), validate, export --print-recipe and
inspect.

Usage:
    /usr/bin/python3 tests/test_cli.py --smelt build/core/smelt \\
        --workdir /tmp/smelt-cli [--case NAME]... [--list]
        [--fixture-plugins build/tests/plugins]

Every case works in its own subdirectory of WORKDIR (emptied first) on
models made by tests/gen/gen_tiny_model.py.  Prints "ok CASE" or
"FAIL CASE: why" per case and "N passed, M failed" last; the exit status is
non-zero when a case failed.  Cases that fail because of a known smelt bug
are still failures; their FAIL line says "[known smelt bug: ...]".

The plugins come from SMELT_PLUGIN_PATH if set, else BUILD/plugins next to
the binary (BUILD/core/smelt); SMELT_PLUGIN_SYSTEM_PATH is emptied.  The
broken fixture plugins default to BUILD/tests/plugins.

Needs the Python standard library and numpy (for the model generator).
The interrupt, progress-json and determinism-jobs-1-2-4-big cases share a
~425 MB float32 model (8 layers, hidden 1024, intermediate 2816, vocab 8192)
in WORKDIR/_big, deleted at the end.  The whole run takes ~10-20 s; each
interrupt case a second or two.
"""

import argparse
import hashlib
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))

import gen_tiny_model as gen  # noqa: E402

REAL_PLUGINS = ["localfs", "merged16", "safetensors-lora"]

#: fixture plugin -> substrings its error message must contain (besides
#: naming its .so or .plugin file)
FIXTURE_ERRORS = {
    "abi-too-new": ["ABI"],
    "no-entry": ["entry point"],
    "name-mismatch": ["some-other-name"],
    "init-fails": ["init"],
    "unresolved-symbol": ["smelt_fixture_function_that_does_not_exist"],
    "missing-feature": ["never-registered"],
    "bad-keyfile": [],
}

#: cases that fail because of a smelt bug found by these tests
KNOWN_BUGS = {
    "inspect-model": "`smelt inspect MODEL_DIR` does not state the tensor count "
                     "(adapter and .safetensors inspection do)",
}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class Ctx:
    def __init__(self, smelt, workdir, fixture_plugins):
        self.smelt = smelt
        self.workdir = workdir
        self.fixtures = fixture_plugins
        self.env = dict(os.environ)
        build = os.path.dirname(os.path.dirname(smelt))
        if not self.env.get("SMELT_PLUGIN_PATH"):
            self.env["SMELT_PLUGIN_PATH"] = os.path.join(build, "plugins")
        self.env["SMELT_PLUGIN_SYSTEM_PATH"] = ""
        self.env["LC_ALL"] = "C.UTF-8"
        self.env.pop("HF_TOKEN", None)
        self._demo = None

    def run(self, args, cwd, env=None, timeout=60, preexec_fn=None):
        """Run smelt; returns (exit code, stdout, stderr) as text."""
        try:
            p = subprocess.run([self.smelt] + list(args), cwd=cwd, env=env or self.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout, preexec_fn=preexec_fn)
        except subprocess.TimeoutExpired:
            raise Failure("timed out: smelt %s" % " ".join(args))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode < 0:
            raise Failure("smelt %s killed by signal %d: %s"
                          % (" ".join(args), -p.returncode, err[-500:]))
        return p.returncode, out, err

    def run_ok(self, args, cwd, **kw):
        rc, out, err = self.run(args, cwd, **kw)
        check(rc == 0, "smelt %s: exit %d: %s" % (" ".join(args), rc, err.strip()[-800:]))
        return out, err

    def demo(self, d):
        """Copy the demo model (bf16, 2 shards) and adapter into d."""
        if self._demo is None:
            self._demo = os.path.join(self.workdir, "_demo")
            if os.path.exists(self._demo):
                shutil.rmtree(self._demo)
            gen.generate_demo(self._demo)
        for sub in ("model", "adapter"):
            shutil.copytree(os.path.join(self._demo, sub), os.path.join(d, sub))

    def medium(self, d):
        """A bigger model (bf16, 2 shards, attention biases, ~8 MB) and a DoRA
        adapter on every linear layer that also trains the biases (bias="all"),
        in d/model and d/adapter."""
        gen.generate_model(os.path.join(d, "model"), arch="llama", dtype="bf16", layers=4,
                           hidden=256, intermediate=688, heads=4, kv_heads=2, vocab=2048,
                           attention_bias=True, shards=2, seed=3)
        gen.generate_adapter(os.path.join(d, "adapter"), os.path.join(d, "model"), rank=16,
                             alpha=32, dora=True, bias="all", seed=4,
                             base_name="smelt-tests/medium")


def write_recipe(path, exports, model="model", adapters=("adapter",), name="cli",
                 dest_opts=None):
    """exports: [(export name, format, path, {key: value})]; each export gets
    its own destination NAME-out (with the keys of dest_opts, if given)."""
    lines = ["[Recipe]", "Name=%s" % name, "", "[Source]", "Model=%s" % model]
    if adapters:
        lines.append("Adapters=%s" % ";".join(adapters))
    lines.append("")
    for ename, fmt, dest, opts in exports:
        lines += ["[Destination %s-out]" % ename, "Plugin=localfs", "Path=%s" % dest]
        lines += ["%s=%s" % kv for kv in (dest_opts or {}).items()] + [""]
        lines += ["[Export %s]" % ename, "Format=%s" % fmt, "Destination=%s-out" % ename]
        lines += ["%s=%s" % kv for kv in opts.items()]
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree(root):
    """{relative file path: sha256} of the files under root ({} if absent)."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            out[os.path.relpath(p, root)] = sha256(p)
    return out


def all_paths(root):
    """Every path (files and directories) under root, relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


OLD_FILES = {"config.json": '{"old": true}\n', "model.safetensors": "the previous export\n",
             "notes.txt": "not smelt's\n"}


def put_old_files(dest):
    """Files of an earlier export (and one unrelated) in dest; returns tree()."""
    os.makedirs(dest)
    for rel, text in OLD_FILES.items():
        with open(os.path.join(dest, rel), "w") as f:
            f.write(text)
    return tree(dest)


def files_under(root):
    return sorted(p for p in all_paths(root) if os.path.isfile(os.path.join(root, p)))


def format_size(n):
    """smelt_format_size(): decimal units, one decimal."""
    if n < 1000:
        return "%d B" % n
    v = float(n)
    units = ["kB", "MB", "GB", "TB", "PB", "EB"]
    for i, u in enumerate(units):
        v /= 1000.0
        if v < 999.95 or i == len(units) - 1:
            return "%.1f %s" % (v, u)


def error_lines(err):
    return [line for line in err.splitlines() if line.strip()]


def one_error_line(err, *must):
    lines = error_lines(err)
    check(len(lines) == 1 and lines[0].startswith("smelt: error: "),
          "expected one \"smelt: error:\" line on stderr, got %r" % err[-800:])
    missing = [m for m in must if m not in lines[0]]
    check(not missing, "error line lacks %s: %r" % (missing, lines[0]))
    return lines[0]


def plugins_json(ctx, args, env=None):
    rc, out, err = ctx.run(["plugins"] + args + ["--json"], ctx.workdir, env=env)
    try:
        data = json.loads(out)
    except ValueError as e:
        raise Failure("plugins %s --json: stdout is not JSON (%s): %r" % (args, e, out[:300]))
    return rc, data, err


def safetensors_dtypes(path):
    header, _ = gen.read_safetensors_header(path)
    return {k: v["dtype"] for k, v in header.items()}


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------

CASES = []


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


@case("plugins-list-json")
def _(ctx, d):
    rc, data, err = plugins_json(ctx, [])
    check(rc == 0, "exit %d (stderr %r)" % (rc, err))
    check(isinstance(data, list), "not a JSON array")
    by_name = {p.get("name"): p for p in data}
    for name in REAL_PLUGINS:
        check(name in by_name, "%s not listed (have %s)" % (name, sorted(by_name)))
        p = by_name[name]
        check(p.get("state") == "loaded", "%s state %r" % (name, p.get("state")))
        check(p.get("error") is None, "%s error %r" % (name, p.get("error")))
        feats = {f["name"]: f["kind"] for f in p.get("features", [])}
        want = "destination" if name == "localfs" else "format"
        check(feats.get(name) == want, "%s features %r" % (name, feats))


@case("plugins-format-options-json")
def _(ctx, d):
    def options(plugin):
        rc, data, err = plugins_json(ctx, [plugin])
        check(rc == 0, "plugins %s: exit %d (%r)" % (plugin, rc, err))
        check(data.get("state") == "loaded", "%s state %r" % (plugin, data.get("state")))
        feat = [f for f in data.get("features", []) if f.get("name") == plugin]
        check(feat, "%s: no feature %s" % (plugin, plugin))
        return {o["key"]: o for o in feat[0].get("options", [])}

    opts = options("merged16")
    check(set(opts) >= {"DType", "MaxShardSize"}, "merged16 options %s" % sorted(opts))
    dt = opts["DType"]
    check(set(re.split(r"[|,; ]+", dt["type"])) == {"auto", "bf16", "fp16"},
          "merged16 DType type %r" % dt["type"])
    check(dt["default"] == "auto", "merged16 DType default %r" % dt["default"])
    ms = opts["MaxShardSize"]
    check(ms["type"] == "string", "MaxShardSize type %r" % ms["type"])
    check(ms["default"] == "5GB", "MaxShardSize default %r" % ms["default"])
    for o in (dt, ms):
        check(o.get("description"), "%s has no description" % o["key"])
    opts = options("safetensors-lora")
    check("DType" in opts, "safetensors-lora options %s" % sorted(opts))
    check(set(re.split(r"[|,; ]+", opts["DType"]["type"])) == {"auto", "f32", "bf16", "fp16"},
          "safetensors-lora DType type %r" % opts["DType"]["type"])
    check(opts["DType"]["default"] == "auto", "safetensors-lora DType default %r"
          % opts["DType"]["default"])
    rc, out, err = ctx.run(["plugins", "no-such-plugin", "--json"], d)
    check(rc == 2, "plugins no-such-plugin: exit %d, expected 2" % rc)
    one_error_line(err, "no-such-plugin")


def fixture_env(ctx):
    env = dict(ctx.env)
    env["SMELT_PLUGIN_PATH"] = ctx.env["SMELT_PLUGIN_PATH"] + os.pathsep + ctx.fixtures
    return env


@case("plugins-broken-fixtures")
def _(ctx, d):
    check(os.path.isdir(ctx.fixtures), "no fixture plugins at %s" % ctx.fixtures)
    rc, data, err = plugins_json(ctx, [], env=fixture_env(ctx))
    check(rc == 1, "exit %d with broken plugins on the path, expected 1" % rc)
    by_name = {p.get("name"): p for p in data}
    problems = []
    for name in REAL_PLUGINS + ["good-fixture"]:
        p = by_name.get(name)
        if not p or p.get("state") != "loaded" or p.get("error") is not None:
            problems.append("%s: %r" % (name, p and (p.get("state"), p.get("error"))))
    for name, words in FIXTURE_ERRORS.items():
        p = by_name.get(name)
        if p is None:
            problems.append("%s not listed" % name)
            continue
        msg = p.get("error") or ""
        if p.get("state") != "error":
            problems.append("%s: state %r" % (name, p.get("state")))
        names_file = ("libsmelt-%s.so" % name) in msg or ("%s.plugin" % name) in msg
        missing = [w for w in words if w not in msg]
        if not msg or not names_file or missing:
            problems.append("%s: message %r (wants its file name and %s)" % (name, msg, words))
    check(not problems, "; ".join(problems))
    # plain listing also exits 1, and still shows the real plugins as loaded
    rc, out, err = ctx.run(["plugins"], d, env=fixture_env(ctx))
    check(rc == 1, "plain listing: exit %d, expected 1" % rc)
    for name in REAL_PLUGINS:
        check(re.search(r"^%s\s+loaded" % re.escape(name), out, re.M),
              "plain listing lacks \"%s loaded\"" % name)


@case("run-with-broken-plugins")
def _(ctx, d):
    ctx.demo(d)
    write_recipe(os.path.join(d, "r.smelt"),
                 [("merged", "merged16", "out/merged", {}),
                  ("lora", "safetensors-lora", "out/lora", {})])
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none"], d, env=fixture_env(ctx))
    check(rc == 0, "exit %d: %s" % (rc, err.strip()[-800:]))
    check(os.path.isfile(os.path.join(d, "out/merged/model.safetensors")), "no merged model")
    check(os.path.isfile(os.path.join(d, "out/lora/adapter_model.safetensors")),
          "no adapter written")


def parse_plan(out):
    """{export: (destination path, [(file, size string)])}, total string."""
    plan, total, cur = {}, None, None
    for line in out.splitlines():
        m = re.match(r"^(?:Export|Wrote) (\S+) → (.+)$", line)
        if m:
            cur = m.group(1)
            plan[cur] = (m.group(2).strip(), [])
            continue
        m = re.match(r"^Total (?:to write|written): (.+)$", line)
        if m:
            total = m.group(1).strip()
            cur = None
            continue
        m = re.match(r"^  (\S+)\s+(\d+(?:\.\d)? [kMGTPE]?B|\?)$", line)
        if m and cur:
            plan[cur][1].append((m.group(1), m.group(2)))
    return plan, total


@case("dry-run-plan-matches-output")
def _(ctx, d):
    ctx.medium(d)
    write_recipe(os.path.join(d, "r.smelt"),
                 [("merged", "merged16", "out/merged", {"MaxShardSize": "3MB"}),
                  ("lora", "safetensors-lora", "out/lora", {"DType": "bf16"})])
    before = all_paths(d)
    out, err = ctx.run_ok(["run", "r.smelt", "--dry-run"], d)
    check(all_paths(d) == before, "--dry-run wrote %s" % sorted(all_paths(d) - before))
    plan, total = parse_plan(out)
    check(set(plan) == {"merged", "lora"}, "plan lists exports %s:\n%s" % (sorted(plan), out))
    check(any(f.startswith("model-00002-of-") for f, _ in plan["merged"][1]),
          "MaxShardSize=3MB planned a single shard:\n%s" % out)
    ctx.run_ok(["run", "r.smelt", "--progress=none"], d)
    problems = []
    grand = 0
    for export, (dest, files) in sorted(plan.items()):
        check(os.path.isabs(dest), "destination %r is not absolute" % dest)
        written = files_under(dest)
        planned = [f for f, _ in files]
        if sorted(planned) != written:
            problems.append("%s: planned %s, wrote %s" % (export, sorted(planned), written))
        for f, size in files:
            p = os.path.join(dest, f)
            if not os.path.isfile(p):
                continue
            real = os.path.getsize(p)
            grand += real
            if size != format_size(real):
                problems.append("%s/%s: planned %s, real %d bytes (%s)"
                                % (export, f, size, real, format_size(real)))
    if total != format_size(grand):
        problems.append("Total to write %s, real %d bytes (%s)"
                        % (total, grand, format_size(grand)))
    check(not problems, "; ".join(problems))


@case("determinism-jobs-1-2-4")
def _(ctx, d):
    ctx.medium(d)
    write_recipe(os.path.join(d, "r.smelt"),
                 [("merged", "merged16", "unused", {"MaxShardSize": "2MB"}),
                  ("half", "merged16", "unused", {"DType": "fp16"}),
                  ("lora", "safetensors-lora", "unused", {"DType": "bf16"})])
    trees = {}
    for jobs in (1, 2, 4):
        args = ["run", "r.smelt", "--progress=none", "--jobs", str(jobs)]
        for e in ("merged", "half", "lora"):
            args += ["--set", "%s-out.Path=out/j%d/%s" % (e, jobs, e)]
        ctx.run_ok(args, d)
        trees[jobs] = tree(os.path.join(d, "out", "j%d" % jobs))
    check(len(trees[1]) >= 10, "few files written: %s" % sorted(trees[1]))
    for jobs in (2, 4):
        diff = sorted(k for k in set(trees[1]) | set(trees[jobs])
                      if trees[1].get(k) != trees[jobs].get(k))
        check(not diff, "--jobs %d differs from --jobs 1 in %s" % (jobs, diff))


@case("determinism-jobs-1-2-4-big")
def _(ctx, d):
    # tensors of several row blocks each (the 1024 x 2816 f32 weights)
    model, adapter = big_inputs(ctx)
    write_recipe(os.path.join(d, "r.smelt"),
                 [("merged", "merged16", "unused", {"MaxShardSize": "100MB"})],
                 model=model, adapters=(adapter,))
    trees = {}
    for jobs in (1, 2, 4):
        ctx.run_ok(["run", "r.smelt", "--progress=none", "--jobs", str(jobs),
                    "--set", "merged-out.Path=out/j%d" % jobs], d)
        trees[jobs] = tree(os.path.join(d, "out", "j%d" % jobs))
        if jobs > 1:
            shutil.rmtree(os.path.join(d, "out", "j%d" % jobs))
    check(len([f for f in trees[1] if f.endswith(".safetensors")]) >= 2,
          "expected several shards: %s" % sorted(trees[1]))
    for jobs in (2, 4):
        diff = sorted(k for k in set(trees[1]) | set(trees[jobs])
                      if trees[1].get(k) != trees[jobs].get(k))
        check(not diff, "--jobs %d differs from --jobs 1 in %s" % (jobs, diff))
    shutil.rmtree(os.path.join(d, "out"))


@case("progress-json")
def _(ctx, d):
    # the interrupt cases' model: big enough (~1.5 s) for intermediate reports
    model, adapter = big_inputs(ctx)
    write_recipe(os.path.join(d, "r.smelt"),
                 [("merged", "merged16", "out/merged", {}),
                  ("lora", "safetensors-lora", "out/lora", {})],
                 model=model, adapters=(adapter,))
    out, err = ctx.run_ok(["run", "r.smelt", "--progress=json", "--jobs", "2"], d)
    check(not err.strip(), "stderr not empty: %r" % err[-500:])
    events = []
    for i, line in enumerate(out.splitlines()):
        try:
            ev = json.loads(line)
        except ValueError:
            raise Failure("stdout line %d is not JSON: %r" % (i + 1, line))
        for k, t in (("stage", str), ("fraction", (int, float)), ("bytes_done", int),
                     ("bytes_total", int)):
            check(isinstance(ev.get(k), t), "line %d: %s is %r" % (i + 1, k, ev.get(k)))
        events.append(ev)
    check(len(events) >= 3, "only %d progress lines" % len(events))
    for a, b in zip(events, events[1:]):
        check(b["fraction"] >= a["fraction"], "fraction decreased: %s -> %s" % (a, b))
        check(b["bytes_done"] >= a["bytes_done"], "bytes_done decreased: %s -> %s" % (a, b))
    for ev in events:
        check(0.0 <= ev["fraction"] <= 1.0, "fraction out of range: %s" % ev)
        check(ev["bytes_done"] <= ev["bytes_total"] or ev["bytes_total"] == 0,
              "bytes_done > bytes_total: %s" % ev)
    last = events[-1]
    check(last["stage"] == "done" and last["fraction"] == 1.0, "last line %s" % last)
    check(last["bytes_done"] == last["bytes_total"] > 0, "last line %s" % last)
    check(any(0 < ev["fraction"] < 1 for ev in events),
          "no intermediate progress (0 < fraction < 1) in %d lines" % len(events))
    shutil.rmtree(os.path.join(d, "out"))


@case("validate")
def _(ctx, d):
    ctx.demo(d)
    write_recipe(os.path.join(d, "good.smelt"), [("merged", "merged16", "out/merged",
                                                  {"DType": "fp16", "MaxShardSize": "1GB"})])
    before = all_paths(d)
    out, err = ctx.run_ok(["validate", "good.smelt"], d)
    check(not err.strip(), "stderr %r" % err)
    write_recipe(os.path.join(d, "bad.smelt"), [("merged", "merged16", "out/merged",
                                                 {"Dtype": "fp16"})])
    rc, out, err = ctx.run(["validate", "bad.smelt"], d)
    check(rc == 2, "unknown key: exit %d, expected 2" % rc)
    one_error_line(err, "Dtype", "DType")
    rc, out, err = ctx.run(["validate", "good.smelt", "--set", "merged.Typo=1"], d)
    check(rc == 2, "--set unknown key: exit %d, expected 2" % rc)
    one_error_line(err, "Typo")
    check(all_paths(d) - before == {"bad.smelt"}, "validate wrote %s"
          % sorted(all_paths(d) - before - {"bad.smelt"}))


def print_recipe_case(ctx, d, recipe_rel):
    ctx.demo(d)
    base = ["export", "--model", "model", "--adapter", "adapter", "--format", "merged16",
            "--to", "out/oneoff", "--set", "DType=fp16"]
    out, err = ctx.run_ok(base + ["--print-recipe"], d)
    check(not os.path.exists(os.path.join(d, "out")), "--print-recipe wrote files")
    recipe = os.path.join(d, recipe_rel)
    os.makedirs(os.path.dirname(recipe), exist_ok=True)
    with open(recipe, "w") as f:
        f.write(out)
    ctx.run_ok(["validate", recipe_rel], d)
    ctx.run_ok(["run", recipe_rel, "--progress=none"], d)
    got = os.path.join(d, "out", "oneoff")
    check(os.path.isdir(got), "running the printed recipe wrote nothing to out/oneoff "
          "(have %s)" % sorted(all_paths(d) - {"model", "adapter"})[:20])
    os.rename(got, os.path.join(d, "out", "from-recipe"))
    ctx.run_ok(base + ["--progress=none"], d)
    a, b = tree(os.path.join(d, "out", "from-recipe")), tree(os.path.join(d, "out", "oneoff"))
    check(a and a == b, "recipe output %s != one-off output %s" % (sorted(a), sorted(b)))
    with open(os.path.join(d, "out", "oneoff", "config.json")) as f:
        check(json.load(f).get("torch_dtype") == "float16", "--set DType=fp16 not applied")


@case("export-print-recipe")
def _(ctx, d):
    print_recipe_case(ctx, d, "export.smelt")


@case("export-print-recipe-saved-elsewhere")
def _(ctx, d):
    # `smelt export ... --print-recipe > recipes/x.smelt; smelt run recipes/x.smelt`
    print_recipe_case(ctx, d, os.path.join("recipes", "export.smelt"))


@case("set-override-dtype")
def _(ctx, d):
    ctx.demo(d)
    write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/default", {})])
    ctx.run_ok(["run", "r.smelt", "--progress=none"], d)
    ctx.run_ok(["run", "r.smelt", "--progress=none", "--set", "merged.DType=fp16",
                "--set", "merged-out.Path=out/fp16"], d)
    for sub, torch_dtype, st in (("default", "bfloat16", "BF16"), ("fp16", "float16", "F16")):
        dest = os.path.join(d, "out", sub)
        with open(os.path.join(dest, "config.json")) as f:
            cfg = json.load(f)
        check(cfg.get("torch_dtype") == torch_dtype,
              "%s: torch_dtype %r, expected %r" % (sub, cfg.get("torch_dtype"), torch_dtype))
        dtypes = safetensors_dtypes(os.path.join(dest, "model.safetensors"))
        check(dtypes and set(dtypes.values()) == {st},
              "%s: shard dtypes %s, expected %s" % (sub, sorted(set(dtypes.values())), st))
    check(not os.path.exists(os.path.join(d, "out", "default", "model.safetensors.partial")),
          "partial left")
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none", "--set", "merged.DType=fp8"], d)
    check(rc == 2, "--set merged.DType=fp8: exit %d, expected 2" % rc)
    one_error_line(err, "fp8")


# ---- interrupt --------------------------------------------------------------

BIG = {"arch": "llama", "dtype": "f32", "layers": 8, "hidden": 1024, "intermediate": 2816,
       "heads": 4, "kv_heads": 2, "vocab": 8192, "seed": 11, "fill": "block"}


def big_inputs(ctx):
    root = os.path.join(ctx.workdir, "_big")
    model, adapter = os.path.join(root, "model"), os.path.join(root, "adapter")
    stamp = os.path.join(root, "params.json")
    want = json.dumps(BIG, sort_keys=True)
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        if os.path.exists(root):
            shutil.rmtree(root)
        gen.generate_model(model, **BIG)
        gen.generate_adapter(adapter, model, rank=8, alpha=16, seed=12)
        with open(stamp, "w") as f:
            f.write(want)
    return model, adapter


def interrupt_case(ctx, d, wait_for_write, overwrite=False):
    model, adapter = big_inputs(ctx)
    write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/merged", {})],
                 model=model, adapters=(adapter,),
                 dest_opts={"Overwrite": "true"} if overwrite else None)
    dest = os.path.join(d, "out", "merged")
    old = put_old_files(dest) if overwrite else {}
    p = subprocess.Popen([ctx.smelt, "run", "r.smelt", "--progress=json", "--jobs", "1"],
                         cwd=d, env=ctx.env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, buf, sent, partial_seen = [], b"", False, []
    deadline = time.monotonic() + 12
    try:
        while not sent and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if not r:
                if p.poll() is not None:
                    break
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf and not sent:
                line, buf = buf.split(b"\n", 1)
                ev = json.loads(line)
                lines.append(ev)
                if (not wait_for_write
                        or (ev["stage"] == "exporting" and ev["bytes_done"] > 0)):
                    partial_seen = [f for f in files_under(dest) if f.endswith(".partial")]
                    p.send_signal(signal.SIGINT)
                    sent = True
        rest, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Failure("smelt did not exit within 10 s of SIGINT")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(sent, "never got the progress line to interrupt on (exit %s, %d lines: %s)"
          % (p.returncode, len(lines), lines[-1:] if lines else err[-300:]))
    if wait_for_write:
        check(partial_seen, "no .partial file in the destination while exporting "
              "(%s); the interrupt tests nothing" % lines[-1])
    check(p.returncode == 130, "exit %s after SIGINT, expected 130 (stderr %r)"
          % (p.returncode, err.decode("utf-8", "replace")[-500:]))
    now = tree(dest)
    check(now == old, "after SIGINT the destination holds %s, expected %s"
          % (sorted(now), sorted(old)))
    left = [f for f in files_under(os.path.join(d, "out")) if f.endswith(".partial")]
    check(not left, "partial files left after SIGINT: %s" % left)


@case("interrupt-after-first-progress-line")
def _(ctx, d):
    interrupt_case(ctx, d, wait_for_write=False)


@case("interrupt-while-writing")
def _(ctx, d):
    interrupt_case(ctx, d, wait_for_write=True)


@case("interrupt-overwrite-keeps-old-files")
def _(ctx, d):
    # Overwrite=true over an earlier export: nothing is replaced until commit
    interrupt_case(ctx, d, wait_for_write=True, overwrite=True)


# ---- write errors -------------------------------------------------------------

def small_fsize_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@case("unused-destination")
def _(ctx, d):
    ctx.demo(d)
    path = write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/merged", {})])
    with open(path, "a") as f:
        f.write("\n[Destination spare]\nPlugin=localfs\nPath=out/spare\n")
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none"], d)
    check(rc == 0, "exit %d (stderr %r)" % (rc, err[-500:]))
    check("warning" in err and "[Destination spare]" in err,
          "no warning about the unused destination: %r" % err)
    check(os.path.isfile(os.path.join(d, "out", "merged", "model.safetensors")), "no export")
    check(not os.path.exists(os.path.join(d, "out", "spare")), "the unused destination was created")


@case("full-disk-efbig")
def _(ctx, d):
    ctx.demo(d)          # model.safetensors of the merged export is ~273 kB
    write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/merged", {})])
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none"], d,
                           preexec_fn=small_fsize_limit)
    check(rc == 1, "exit %d, expected 1 (stderr %r)" % (rc, err[-500:]))
    one_error_line(err, "model.safetensors")
    left = files_under(os.path.join(d, "out"))
    check(not left, "files left: %s" % left)


@case("full-disk-overwrite-keeps-old-files")
def _(ctx, d):
    ctx.demo(d)
    write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/merged", {})],
                 dest_opts={"Overwrite": "true"})
    dest = os.path.join(d, "out", "merged")
    old = put_old_files(dest)
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none"], d,
                           preexec_fn=small_fsize_limit)
    check(rc == 1, "exit %d, expected 1 (stderr %r)" % (rc, err[-500:]))
    one_error_line(err, "model.safetensors")
    now = tree(dest)
    check(now == old, "destination holds %s, expected the old %s" % (sorted(now), sorted(old)))


@case("full-disk-efbig-lora")
def _(ctx, d):
    ctx.medium(d)        # the DoRA adapter is ~1.3 MB
    write_recipe(os.path.join(d, "r.smelt"), [("lora", "safetensors-lora", "out/lora", {})])
    rc, out, err = ctx.run(["run", "r.smelt", "--progress=none"], d,
                           preexec_fn=small_fsize_limit)
    check(rc == 1, "exit %d, expected 1 (stderr %r)" % (rc, err[-500:]))
    one_error_line(err, "adapter_model.safetensors")
    left = files_under(os.path.join(d, "out"))
    check(not left, "files left: %s" % left)


# ---- usage errors -------------------------------------------------------------

@case("usage-errors")
def _(ctx, d):
    ctx.demo(d)
    write_recipe(os.path.join(d, "r.smelt"), [("merged", "merged16", "out/merged", {})])
    problems = []
    for args, must in ((["run"], None),
                       (["run", "r.smelt", "--jobs", "-1"], "--jobs"),
                       (["run", "r.smelt", "--progress=fancy"], "--progress"),
                       (["run", "r.smelt", "--bogus"], "--bogus"),
                       (["frobnicate"], "frobnicate"),
                       (["run", "missing.smelt"], "missing.smelt"),
                       (["run", "r.smelt", "--set", "nosuch.DType=fp16"], "nosuch"),
                       (["run", "r.smelt", "--set", "garbage"], "garbage"),
                       (["export", "--model", "model", "--format", "merged16"], "--to"),
                       (["export", "--model", "model", "--adapter", "adapter", "--format",
                         "nope", "--to", "out/x", "--progress=none"], "nope")):
        rc, out, err = ctx.run(args, d)
        first = err.splitlines()[0] if err.strip() else ""
        if rc != 2 or out or not first.startswith("smelt: ") or (must and must not in err):
            problems.append("smelt %s: exit %d, stdout %r, stderr %r"
                            % (" ".join(args), rc, out[:100], err[:200]))
    check(not os.path.exists(os.path.join(d, "out")), "a usage error wrote files")
    check(not problems, "; ".join(problems))


# ---- inspect ----------------------------------------------------------------

def count_model_tensors(model):
    return len(gen.ModelFiles(model).tensors)


def inspect_ok(ctx, d, target, count):
    out, err = ctx.run_ok(["inspect", target], d)
    check(re.search(r"\b%d tensors\b" % count, out),
          "`smelt inspect %s` does not mention \"%d tensors\"; it starts: %s"
          % (target, count, " | ".join(l.strip() for l in out.splitlines()[:3])))
    out, err = ctx.run_ok(["inspect", target, "--json"], d)
    data = json.loads(out)
    check(len(data.get("tensors", [])) == count,
          "--json lists %d tensors, expected %d" % (len(data.get("tensors", [])), count))


@case("inspect-model")
def _(ctx, d):
    ctx.demo(d)
    inspect_ok(ctx, d, "model", count_model_tensors(os.path.join(d, "model")))


@case("inspect-adapter")
def _(ctx, d):
    ctx.demo(d)
    header, _ = gen.read_safetensors_header(os.path.join(d, "adapter",
                                                         "adapter_model.safetensors"))
    inspect_ok(ctx, d, "adapter", len(header))


@case("inspect-safetensors-file")
def _(ctx, d):
    ctx.demo(d)
    f = os.path.join("model", "model-00001-of-00002.safetensors")
    header, _ = gen.read_safetensors_header(os.path.join(d, f))
    inspect_ok(ctx, d, f, len(header))


@case("inspect-broken")
def _(ctx, d):
    ctx.demo(d)
    f = os.path.join(d, "model", "model-00002-of-00002.safetensors")
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) - 100)
    for target in (f, "model"):
        rc, out, err = ctx.run(["inspect", target], d)
        check(rc == 1, "inspect %s: exit %d, expected 1" % (target, rc))
        one_error_line(err, "model-00002-of-00002.safetensors")
    # the shared corpus of broken files (tests/data/broken, if present)
    shared = os.path.join(HERE, "data", "broken")
    for fn in sorted(os.listdir(shared)) if os.path.isdir(shared) else []:
        if fn.endswith(".safetensors"):
            rc, out, err = ctx.run(["inspect", os.path.join(shared, fn)], d)
            check(rc == 1, "inspect tests/data/broken/%s: exit %d, expected 1" % (fn, rc))
            one_error_line(err, fn)
    rc, out, err = ctx.run(["inspect", "no-such-dir"], d)
    check(rc == 1, "inspect no-such-dir: exit %d, expected 1" % rc)
    one_error_line(err, "no-such-dir")


# ---------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--fixture-plugins", default=None,
                   help="broken fixture plugins (default BUILD/tests/plugins)")
    p.add_argument("--case", action="append", default=[])
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name, _ in CASES:
            print(name)
        return 0
    names = {n for n, _ in CASES}
    unknown = set(args.case) - names
    if unknown:
        p.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    smelt = os.path.abspath(args.smelt)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    fixtures = args.fixture_plugins or os.path.join(
        os.path.dirname(os.path.dirname(smelt)), "tests", "plugins")
    ctx = Ctx(smelt, workdir, os.path.abspath(fixtures))
    passed = failed = 0
    try:
        for name, fn in CASES:
            if args.case and name not in args.case:
                continue
            d = os.path.join(workdir, name)
            if os.path.exists(d):
                shutil.rmtree(d)
            os.makedirs(d)
            try:
                fn(ctx, d)
                why = None
            except Failure as e:
                why = str(e)
            except Exception as e:  # a bug in the test or an unexpected output
                why = "%s: %s" % (type(e).__name__, e)
            if why is None:
                passed += 1
                note = " (listed as a known bug: fixed?)" if name in KNOWN_BUGS else ""
                print("ok %s%s" % (name, note))
            else:
                failed += 1
                note = " [known smelt bug: %s]" % KNOWN_BUGS[name] if name in KNOWN_BUGS else ""
                print("FAIL %s: %s%s" % (name, why, note))
            sys.stdout.flush()
    finally:
        # the interrupt model is big: do not leave it behind
        shutil.rmtree(os.path.join(workdir, "_big"), ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Shared pieces of the hf-hub destination's tests (test_hfhub_*.py): the
case runner, running the smelt binary against the fake Hub
(tests/hub/fakehub.py, doc/testing-hub.md), recipes, and the checks every
case makes (the token never in smelt's output; never at the storage
listener, which the strict fake turns into a failure).

Not a test by itself.  Each test file is run as

    /usr/bin/python3 tests/hub/test_hfhub_X.py --smelt BUILD/core/smelt \\
        --workdir DIR [--case NAME]... [--list]

and prints "ok CASE" or "FAIL CASE: why" per case, then "N passed, M
failed"; the exit status is non-zero when a case failed.  Plugins come from
SMELT_PLUGIN_PATH if set, else BUILD/plugins next to the binary.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "gen"))

import fakehub  # noqa: E402  (the project's fake Hub; doc/testing-hub.md)
import gen_tiny_model as gen  # noqa: E402

#: the test tokens; huggingface.js refuses tokens not starting with hf_
TOKEN = "hf_smeltTestTokenAlice0123456789abcdef"
OTHER_TOKEN = "hf_smeltTestTokenBob0123456789abcdefgh"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree(root):
    """{relative path: sha256} of the files under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = sha256_file(p)
    return out


class Run:
    """One smelt run: exit status, stdout, stderr, seconds."""

    def __init__(self, rc, out, err, secs):
        self.rc, self.out, self.err, self.secs = rc, out, err, secs

    def text(self):
        return self.out + self.err

    def error_line(self):
        lines = [l for l in self.err.splitlines() if l.startswith("smelt: error: ")]
        return lines[-1] if lines else ""


class Ctx:
    def __init__(self, smelt, workdir):
        self.smelt = smelt
        self.workdir = workdir
        self.env = dict(os.environ)
        build = os.path.dirname(os.path.dirname(smelt))
        if not self.env.get("SMELT_PLUGIN_PATH"):
            self.env["SMELT_PLUGIN_PATH"] = os.path.join(build, "plugins")
        self.env["SMELT_PLUGIN_SYSTEM_PATH"] = ""
        self.env["LC_ALL"] = "C.UTF-8"
        # nothing from the developer's own Hugging Face setup
        for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME",
                  "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME"):
            self.env.pop(k, None)
        self.env["HOME"] = os.path.join(workdir, "_home")
        os.makedirs(self.env["HOME"], exist_ok=True)
        self._demo = None
        self.tokens_seen = []   # every token a case used: none may appear in any output

    def demo(self):
        """The demo model and adapter (tests/gen's generate_demo, the same
        bytes as data/demo), generated once per workdir."""
        if self._demo is None:
            self._demo = os.path.join(self.workdir, "_demo")
            if not os.path.exists(os.path.join(self._demo, "model", "config.json")):
                shutil.rmtree(self._demo, ignore_errors=True)
                gen.generate_demo(self._demo)
        return os.path.join(self._demo, "model"), os.path.join(self._demo, "adapter")

    def hub_env(self, hub, d, token=TOKEN, **extra):
        """The environment of a run against hub: the endpoint, the token,
        a staging folder inside the case's directory."""
        env = dict(self.env)
        env["HF_ENDPOINT"] = hub.endpoint
        if token is not None:
            env["HF_TOKEN"] = token
            self.tokens_seen.append(token)
        env["XDG_CACHE_HOME"] = os.path.join(d, "cache")
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, args, cwd, env=None, timeout=120):
        t0 = time.monotonic()
        try:
            p = subprocess.run([self.smelt] + list(args), cwd=cwd, env=env or self.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("timed out: smelt %s" % " ".join(args))
        secs = time.monotonic() - t0
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode < 0:
            raise Failure("smelt %s killed by signal %d: %s" % (" ".join(args), -p.returncode, err[-800:]))
        # a sanitizer's report (CI aborts on one; without abort_on_error
        # its exit status could pass for smelt's own "exit 1")
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            check(mark not in err, "smelt %s: %s\n%s" % (" ".join(args), mark, err[-3000:]))
        run = Run(p.returncode, out, err, secs)
        for t in self.tokens_seen:
            check(t not in run.text(), "the token appears in smelt's output: %r" % run.text()[-600:])
        return run

    def run_ok(self, args, cwd, env=None, timeout=120):
        run = self.run(args, cwd, env, timeout)
        check(run.rc == 0, "smelt %s: exit %d: %s" % (" ".join(args), run.rc, run.err.strip()[-1200:]))
        return run


def staging_left(d):
    """Staged files the destination left behind (there must be none)."""
    root = os.path.join(d, "cache", "smelt", "hf-hub")
    left = []
    for dirpath, _, names in os.walk(root):
        left += [os.path.join(dirpath, n) for n in names]
    return left


def demo_recipe(path, model, adapter, dest, repo=None, dest_opts=None, exports=None):
    """The demo recipe (data/recipes/demo.smelt's merged16 and GGUF exports)
    into one destination: hf-hub on repo, or localfs at dest when repo is
    None."""
    lines = ["[Recipe]", "Name=demo", "", "[Source]", "Model=%s" % model, "Adapters=%s" % adapter, ""]
    if repo is None:
        lines += ["[Destination out]", "Plugin=localfs", "Path=%s" % dest, "Overwrite=true"]
    else:
        lines += ["[Destination out]", "Plugin=hf-hub", "Repo=%s" % repo]
    lines += ["%s=%s" % kv for kv in (dest_opts or {}).items()] + [""]
    if exports is None:
        exports = [("merged", "merged16", {"DType": "bf16", "MaxShardSize": "5GB"}),
                   ("gguf", "gguf-quant", {"Types": "f16;q8_0", "Name": "demo", "Pre": "gpt-2"})]
    for name, fmt, opts in exports:
        lines += ["[Export %s]" % name, "Format=%s" % fmt, "Destination=out"]
        lines += ["%s=%s" % kv for kv in opts.items()] + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def progress_lines(out):
    """The JSON lines of --progress=json."""
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


# ---------------------------------------------------------------------------
# the Hub, as the tests see it
# ---------------------------------------------------------------------------

class Hub(fakehub.FakeHub):
    """The fake Hub of one case (tests/hub/fakehub.py, strict: a token at
    the storage listener fails the case), with the few questions these
    tests add.  users: [{"token", "name", "orgs"}]."""

    def __init__(self, workdir, users=(), **kw):
        fakehub.FakeHub.__init__(self, os.path.join(workdir, "hub"), users=list(users), **kw)

    def download(self, repo, path, rev="main"):
        """A file read back through the Hub's resolve endpoint, as a client
        downloads it (an LFS file through the redirect to storage)."""
        return self.http_download(repo, path, rev, token=TOKEN)

    def stored_bytes(self, repo):
        return sum(self.objects(repo).values())


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------

def runner(doc, cases, argv=None):
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--smelt", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--case", action="append", default=[])
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name, _ in cases:
            print(name)
        return 0
    unknown = set(args.case) - {n for n, _ in cases}
    if unknown:
        p.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    smelt = os.path.abspath(args.smelt)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    ctx = Ctx(smelt, workdir)
    passed = failed = 0
    for name, fn in cases:
        if args.case and name not in args.case:
            continue
        d = os.path.join(workdir, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        t0 = time.monotonic()
        try:
            fn(ctx, d)
            why = None
        except Failure as e:
            why = str(e)
        except Exception as e:  # a bug in the test, or an output it did not expect
            import traceback
            why = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
        if why is None:
            passed += 1
            print("ok %s (%.1f s)" % (name, time.monotonic() - t0))
            shutil.rmtree(d, ignore_errors=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def make_cases():
    cases = []

    def case(name):
        def deco(fn):
            cases.append((name, fn))
            return fn
        return deco
    return cases, case

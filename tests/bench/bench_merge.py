#!/usr/bin/env python3
"""Benchmark: smelt's merged16 export next to its peers, in one run.

    /usr/bin/python3 tests/bench/bench_merge.py --smelt build/core/smelt
        [--workdir DIR] [--tiny] [--keep] [--runs 2] [--jobs N]

Default: a synthetic ~1.1B-parameter bf16 llama (22 layers, hidden 2048,
intermediate 5632, 32 heads, 4 kv heads, vocab 32000, 2 shards) with a rank-16
f32 adapter on all seven projections, generated once with tests/gen and cached
in the workdir.  Then, one after another, each as a child process:

  (a) smelt run RECIPE (merged16, DType=bf16, localfs with Fsync=false, so
      that it is as durable as its peers, which do not flush either)
  (b) tests/bench/peer_torch_merge.py (what PEFT merge_and_unload +
      save_pretrained do; torch fp32 merge, 2 threads)
  (c) a plain copy of the base shards (shutil.copyfile)
  and, at the durability smelt gives by default, smelt with Fsync=true next to
  the same copy followed by fsync of each file

Each is run --runs times (best wall time; peak RSS = max ru_maxrss of the
child over the runs) with a warm page cache.  Prints a table and the target
ratios (PASS/MISS); exits 0 whatever the numbers.  --tiny runs the same
pipeline on a tiny model in a few seconds (smoke test).
"""

import importlib

try:  # numpy/torch live in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:  # e.g. a pyenv python3 first in PATH: use Debian's
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_tiny_model as gen  # noqa: E402

BIG = {"arch": "llama", "dtype": "bf16", "layers": 22, "hidden": 2048, "intermediate": 5632,
       "heads": 32, "kv_heads": 4, "vocab": 32000, "shards": 2, "seed": 0, "fill": "block"}
TINY = {"arch": "llama", "dtype": "bf16", "layers": 2, "hidden": 256, "intermediate": 688,
        "heads": 4, "kv_heads": 2, "vocab": 1024, "shards": 2, "seed": 0, "fill": "random"}
ADAPTER = {"rank": 16, "alpha": 32, "dtype": "f32", "seed": 1}
STAMP_VERSION = 1

TARGET_TORCH_OVER_SMELT = 5.0
TARGET_SMELT_OVER_COPY = 2.0
TARGET_SMELT_RSS_MIB = 1024.0


def prepare(workdir, params):
    """Generate (or reuse) the model and adapter under workdir.  Returns
    (model_dir, adapter_dir)."""
    model = os.path.join(workdir, "model")
    adapter = os.path.join(workdir, "adapter")
    stamp_path = os.path.join(workdir, "stamp.json")
    stamp = {"version": STAMP_VERSION, "model": params, "adapter": ADAPTER}
    try:
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                print("reusing cached model in %s" % workdir)
                return model, adapter
    except (OSError, ValueError):
        pass
    shutil.rmtree(model, ignore_errors=True)
    shutil.rmtree(adapter, ignore_errors=True)
    os.makedirs(workdir, exist_ok=True)
    t0 = time.monotonic()
    gen.generate_model(model, **params)
    gen.generate_adapter(adapter, model, base_name="smelt-bench/synthetic-llama", **ADAPTER)
    print("generated model + adapter in %.1f s" % (time.monotonic() - t0))
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    return model, adapter


def base_shards(model):
    """The base's safetensors files."""
    return sorted(os.path.join(model, f) for f in os.listdir(model)
                  if f.endswith(".safetensors"))


def warm_cache(paths):
    """Read the files once so every tool starts with a warm page cache."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def dir_bytes(path):
    """Total size of the files under path."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


#: Runs one command and reports its wall time and peak RSS.  The child is
#: forked from this small launcher (python -S), not from the benchmark process:
#: a vfork'ed child inherits its parent's RSS high-water mark in ru_maxrss, and
#: a forked one the parent's current RSS, which would charge the generator's
#: memory to the measured tool.  The baseline error is the launcher's ~10 MiB.
LAUNCHER = r"""
import json, os, sys, time
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
elapsed = time.monotonic() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "seconds": elapsed,
               "maxrss_kib": ru.ru_maxrss}, f)
"""


def run_measured(cmd, env=None):
    """Run cmd as a grandchild through LAUNCHER; return (seconds, peak RSS MiB,
    returncode, stderr tail)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as res, tempfile.TemporaryFile() as errf:
        launcher = [sys.executable or "/usr/bin/python3", "-S", "-I", "-c", LAUNCHER, res.name]
        proc = subprocess.run(launcher + list(cmd), env=env, stdout=subprocess.DEVNULL,
                              stderr=errf)
        errf.seek(0)
        tail = errf.read()[-2000:].decode("utf-8", "replace")
        try:
            with open(res.name) as f:
                r = json.load(f)
        except ValueError:
            return 0.0, 0.0, proc.returncode or 1, tail
    return r["seconds"], r["maxrss_kib"] / 1024.0, r["rc"], tail


def measure(cmd, env, runs, before=None):
    """Best wall time and max peak RSS of cmd over runs; before() runs
    first each time (clears the output, warms the cache), then a sync."""
    results = []
    for _ in range(runs):
        if before:
            before()
        # no dirty pages left by the run before: otherwise the kernel's
        # writeback of the last output throttles whoever writes next
        os.sync()
        secs, rss, rc, tail = run_measured(cmd, env)
        if rc != 0:
            sys.exit("%s failed:\n%s" % (os.path.basename(cmd[0]), tail))
        results.append((secs, rss))
    return min(r[0] for r in results), max(r[1] for r in results)


def measure_copy(shards, copy_dir, runs):
    """measure() of a plain copy of the shards into copy_dir (the
    yardstick every benchmark prints), with a warm page cache."""
    def before():
        shutil.rmtree(copy_dir, ignore_errors=True)
        os.makedirs(copy_dir)
        warm_cache(shards)
    cmd = [sys.executable, "-c", "import shutil,sys\nfor s in sys.argv[2:]: "
           "shutil.copyfile(s, sys.argv[1] + '/' + s.rsplit('/',1)[1])", copy_dir] + list(shards)
    return measure(cmd, None, runs, before)


def smelt_env(smelt):
    """SMELT_PLUGIN_PATH guessed from the build tree when unset."""
    env = dict(os.environ)
    if not env.get("SMELT_PLUGIN_PATH"):
        build = os.path.dirname(os.path.dirname(os.path.abspath(smelt)))
        plugdir = os.path.join(build, "plugins")
        if os.path.isdir(plugdir):
            dirs = sorted(os.path.join(plugdir, d) for d in os.listdir(plugdir)
                          if os.path.isdir(os.path.join(plugdir, d)))
            env["SMELT_PLUGIN_PATH"] = os.pathsep.join(dirs)
            env.setdefault("SMELT_PLUGIN_SYSTEM_PATH", os.pathsep.join(dirs))
    return env


def output_signature(out):
    """(sorted tensor names, total tensor bytes) of a model output dir, from headers."""
    names, total = [], 0
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            header, _ = gen.read_safetensors_header(os.path.join(out, f))
            for k, v in header.items():
                names.append(k)
                total += v["data_offsets"][1] - v["data_offsets"][0]
    return sorted(names), total


def sample_agreement(out_a, out_b, names):
    """Compare a few bf16 tensors of two model outputs: (elements, identical,
    max ulp distance)."""
    import numpy as np
    fa, fb = gen.ModelFiles(out_a), gen.ModelFiles(out_b)
    total = same = max_ulp = 0
    for name in names:
        if name not in fa.tensors or name not in fb.tensors:
            continue
        a = gen.read_safetensors(fa.tensors[name][0], {name})[name][1]
        b = gen.read_safetensors(fb.tensors[name][0], {name})[name][1]
        if a.shape != b.shape:
            return total, same, -1
        ia = a.view(np.int16).astype(np.int64)
        ib = b.view(np.int16).astype(np.int64)
        ia = np.where(ia < 0, -(ia & 0x7FFF), ia)
        ib = np.where(ib < 0, -(ib & 0x7FFF), ib)
        d = np.abs(ia - ib)
        total += d.size
        same += int((d == 0).sum())
        max_ulp = max(max_ulp, int(d.max()))
    return total, same, max_ulp


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True, help="path to the smelt binary")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                     "smelt-bench-%d" % os.getuid()))
    p.add_argument("--tiny", action="store_true", help="tiny model smoke test")
    p.add_argument("--keep", action="store_true", help="keep the output directories")
    p.add_argument("--runs", type=int, default=2, help="runs per tool (best time)")
    p.add_argument("--jobs", type=int, default=None, help="pass --jobs N to smelt")
    args = p.parse_args(argv)

    params = TINY if args.tiny else BIG
    workdir = os.path.abspath(os.path.join(args.workdir, "tiny" if args.tiny else "1b"))
    model, adapter = prepare(workdir, params)
    shards = base_shards(model)
    base_bytes = sum(os.path.getsize(s) for s in shards)
    runs_dir = os.path.join(workdir, "runs")
    shutil.rmtree(runs_dir, ignore_errors=True)
    os.makedirs(runs_dir)
    outs = {k: os.path.join(runs_dir, k)
            for k in ("smelt", "torch", "copy", "smelt+fsync", "copy+fsync")}

    smelt = os.path.abspath(args.smelt)
    have_smelt = os.access(smelt, os.X_OK)
    recipe = gen.write_recipe(os.path.join(runs_dir, "bench.smelt"), model, [adapter], None,
                              [("merged", "merged16", outs["smelt"], {"DType": "bf16"})],
                              name="bench")
    # The headline comparison is at equal durability: neither the copy nor
    # save_pretrained flushes to disk, so smelt runs with Fsync=false there;
    # smelt's default (fsync every file before the rename) is measured
    # against a copy that fsyncs too.
    smelt_cmd = [smelt, "run", recipe, "--progress=none", "--set", "merged-out.Fsync=false"]
    smelt_fsync_cmd = [smelt, "run", recipe, "--progress=none",
                       "--set", "merged-out.Path=" + outs["smelt+fsync"]]
    if args.jobs:
        smelt_cmd.append("--jobs=%d" % args.jobs)
        smelt_fsync_cmd.append("--jobs=%d" % args.jobs)
    py = sys.executable or "/usr/bin/python3"
    tools = [
        ("smelt", smelt_cmd, smelt_env(smelt)),
        ("torch", [py, os.path.join(HERE, "peer_torch_merge.py"), "--model", model,
                   "--adapter", adapter, "--out", outs["torch"], "--threads", "2"], None),
        ("copy", [py, "-c", "import os, shutil, sys\n"
                  "os.makedirs(sys.argv[1], exist_ok=True)\n"
                  "for s in sys.argv[2:]:\n"
                  "    shutil.copyfile(s, os.path.join(sys.argv[1], os.path.basename(s)))\n",
                  outs["copy"]] + shards, None),
        # durable variants: smelt's default fsyncs every file at commit
        ("smelt+fsync", smelt_fsync_cmd, smelt_env(smelt)),
        ("copy+fsync", [py, "-c", "import os, shutil, sys\n"
                        "os.makedirs(sys.argv[1], exist_ok=True)\n"
                        "for s in sys.argv[2:]:\n"
                        "    d = os.path.join(sys.argv[1], os.path.basename(s))\n"
                        "    shutil.copyfile(s, d)\n"
                        "    fd = os.open(d, os.O_RDONLY)\n"
                        "    os.fsync(fd)\n"
                        "    os.close(fd)\n",
                        outs["copy+fsync"]] + shards, None),
    ]
    n_params = sum(int(math.prod(v[2]))
                   for v in gen.ModelFiles(model).tensors.values())
    print("model: %.3f B parameters, %.2f GB of bf16 shards (%d files); adapter rank %d f32"
          % (n_params / 1e9, base_bytes / 1e9, len(shards), ADAPTER["rank"]))
    print("warm page cache (inputs read once before timing); best of %d runs; "
          "smelt/torch/copy without fsync, the +fsync rows flush every file" % args.runs)
    warm_cache(shards + [os.path.join(adapter, "adapter_model.safetensors")])

    results = {}
    for name, cmd, env in tools:
        if name.startswith("smelt") and not have_smelt:
            print("smelt: %s not found, skipped" % smelt)
            continue
        best, rss, failed = None, 0.0, None
        for _ in range(args.runs):
            shutil.rmtree(outs[name], ignore_errors=True)
            # start each run with no dirty pages left by the previous one,
            # so no tool is throttled by another's writeback
            os.sync()
            secs, mib, rc, tail = run_measured(cmd, env)
            if rc != 0:
                failed = "exit %d: %s" % (rc, tail.strip())
                break
            best = secs if best is None else min(best, secs)
            rss = max(rss, mib)
        if failed:
            print("%s FAILED (%s): %s" % (name, " ".join(cmd), failed))
            continue
        results[name] = (best, rss, dir_bytes(outs[name]) / 1e9)

    print()
    print("%-11s %10s %14s %10s" % ("tool", "seconds", "peak RSS MiB", "output GB"))
    for name in ("smelt", "torch", "copy", "smelt+fsync", "copy+fsync"):
        if name in results:
            s, r, g = results[name]
            print("%-11s %10.2f %14.1f %10.3f" % (name, s, r, g))
        else:
            print("%-11s %10s %14s %10s" % (name, "-", "-", "-"))
    print()

    def verdict(ok):
        return "PASS" if ok else "MISS"
    if "smelt" in results and "torch" in results:
        ratio = results["torch"][0] / results["smelt"][0]
        print("torch/smelt time  %6.2f  (target >= %.0f)  %s"
              % (ratio, TARGET_TORCH_OVER_SMELT, verdict(ratio >= TARGET_TORCH_OVER_SMELT)))
    if "smelt" in results and "copy" in results:
        ratio = results["smelt"][0] / results["copy"][0]
        print("smelt/copy time   %6.2f  (target <= %.0f)  %s"
              % (ratio, TARGET_SMELT_OVER_COPY, verdict(ratio <= TARGET_SMELT_OVER_COPY)))
    if "smelt+fsync" in results and "copy+fsync" in results:
        print("(smelt+fsync)/(copy+fsync) %5.2f  (both durable: every file flushed to disk)"
              % (results["smelt+fsync"][0] / results["copy+fsync"][0]))
    if "smelt" in results:
        rss = results["smelt"][1]
        print("smelt peak RSS    %6.0f MiB (target < %.0f)  %s"
              % (rss, TARGET_SMELT_RSS_MIB, verdict(rss < TARGET_SMELT_RSS_MIB)))
        if "torch" in results:
            if output_signature(outs["smelt"]) != output_signature(outs["torch"]):
                print("note: smelt and torch outputs differ in tensor names or sizes")
            else:
                last = params["layers"] - 1
                n, same, ulp = sample_agreement(outs["smelt"], outs["torch"], [
                    "model.layers.0.self_attn.q_proj.weight",
                    "model.layers.%d.mlp.down_proj.weight" % last,
                    "model.embed_tokens.weight"])
                print("smelt vs torch output: same tensors and sizes; sampled %d elements "
                      "of 3 tensors: %d identical, max %d ulp" % (n, same, ulp))
    if args.tiny:
        print("(--tiny: a smoke test; ratios on a tiny model mean nothing)")
    if not args.keep:
        shutil.rmtree(runs_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

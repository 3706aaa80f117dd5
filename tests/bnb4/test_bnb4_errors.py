#!/usr/bin/python3
"""Bad input to the bnb4 format: each case must fail with a clear error
naming the key or the tensor and the problem, exit non-zero, and leave no
file in the output folder (not even a partial one).

    test_bnb4_errors.py --smelt SMELT --workdir DIR
"""
import importlib

try:  # numpy lives in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_tiny_model as gen  # noqa: E402

BAD_WEIGHT = "model.layers.1.mlp.up_proj.weight"


def model(work, name, **kw):
    d = os.path.join(work, name)
    if not os.path.isdir(d):
        gen.generate_model(d, seed=5, **kw)
    return d


def poke(m, value):
    """A copy of model m with one value of BAD_WEIGHT replaced."""
    path = os.path.join(m, "model.safetensors")
    header, _ = gen.read_safetensors_header(path)
    names = list(header)
    tensors = gen.read_safetensors(path, names)
    dtype, arr = tensors[BAD_WEIGHT]
    f = gen.storage_to_f32(arr, dtype).copy()
    f.flat[9] = value
    tensors[BAD_WEIGHT] = (dtype, gen.to_storage(f, dtype))
    gen.write_safetensors(path, [gen.entry_from_array(n, tensors[n][0], tensors[n][1])
                                 for n in names])


def cases(work):
    base = model(work, "base")
    gpt2 = model(work, "gpt2", arch="gpt2")
    big = os.path.join(work, "overflow")
    nan = os.path.join(work, "nan")
    for d, v in ((big, 70000.0), (nan, float("nan"))):
        if not os.path.isdir(d):
            shutil.copytree(base, d)
            poke(d, v)
    return [
        ("blocksize", base, {"BlockSize": "48"}, 2, ["BlockSize", "48"]),
        ("compute-dtype", base, {"ComputeDType": "int8"}, 2, ["ComputeDType", "int8"]),
        ("quant-type", base, {"QuantType": "nf5"}, 2, ["QuantType", "nf5"]),
        ("shard-size", base, {"MaxShardSize": "lots"}, 2, ["MaxShardSize", "lots"]),
        ("conv1d", gpt2, {}, 1, ["config.json", "gpt2", "Conv1D"]),
        ("fp16-overflow", big, {"DType": "fp16"}, 1, [BAD_WEIGHT, "float16", "65504", "bf16"]),
        ("nan", nan, {"DoubleQuant": "false"}, 1, [BAD_WEIGHT, "not a finite number"]),
        ("nan-scan", nan, {}, 1, [BAD_WEIGHT, "not a finite number"]),
        # to a destination that cannot seek, the scan cache cannot be
        # created (TMPDIR set to a missing folder)
        ("scan-cache", base, {"TMPDIR": os.path.join(work, "no-such-dir"), "_dest": "stream"}, 1,
         ["ScanCache", "no-such-dir"]),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--stream-dest", required=True,
                    help="folder of the stream-dest fixture plugin")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    failures = 0
    for label, m, opts, want_rc, needles in cases(args.workdir):
        out = os.path.join(args.workdir, "out-" + label)
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ)
        opts = dict(opts)
        if "TMPDIR" in opts:
            env["TMPDIR"] = opts.pop("TMPDIR")
        stream = opts.pop("_dest", None) == "stream"
        recipe = gen.write_recipe(os.path.join(args.workdir, label + ".smelt"), m, (), None,
                                  [("bnb", "bnb4", out, opts)])
        if stream:
            with open(recipe) as f:
                text = f.read().replace("Plugin=localfs", "Plugin=stream-dest")
            with open(recipe, "w") as f:
                f.write(text.replace("Overwrite=true\n", ""))
            env["SMELT_PLUGIN_PATH"] = os.pathsep.join(
                p for p in (env.get("SMELT_PLUGIN_PATH"), args.stream_dest) if p)
        p = subprocess.run([args.smelt, "run", recipe, "--progress=none"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        problems = []
        if p.returncode != want_rc:
            problems.append("exit status %d, expected %d" % (p.returncode, want_rc))
        missing = [n for n in needles if n not in p.stderr]
        if missing:
            problems.append("error does not mention %s" % missing)
        if "CRITICAL" in p.stderr or "Traceback" in p.stderr:
            problems.append("crash or critical warning")
        left = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs]
        if left:
            problems.append("files left: %s" % left)
        last = (p.stderr.strip().splitlines() or [""])[-1]
        if problems:
            failures += 1
            print("FAIL %s: %s\n     stderr: %s" % (label, "; ".join(problems), p.stderr.strip()))
        else:
            print("ok   %s (exit %d): %s" % (label, p.returncode, last))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

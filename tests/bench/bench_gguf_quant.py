#!/usr/bin/env python3
"""Benchmark: smelt's Q4_K_M export next to llama.cpp's llama-quantize path.

    /usr/bin/python3 tests/bench/bench_gguf_quant.py --smelt build/core/smelt
        --harness build/tests/llama/smelt-llama-harness
        [--workdir DIR] [--tiny] [--keep] [--runs 1] [--jobs N] [--simd LEVEL]

Default model: the synthetic ~1.1B-parameter bf16 llama of bench_gguf.py
(with its SentencePiece tokenizer and rank-16 adapter), cached in the
workdir. Then, one after another, each as a child process with a warm
page cache:

  (a) smelt run RECIPE with Types=q4_k_m: the merged model straight to a
      Q4_K_M GGUF in one run
  (b) llama.cpp's path: smelt's F16 GGUF of the same merged model (timed
      on its own), then smelt-llama-harness model-quantize F16.gguf
      out.gguf Q4_K_M, which is llama_model_quantize() with its default
      parameters (all cores); reported alone and as F16 export + quantize
      (times added, peak RSS the larger of the two)
  (c) a plain copy of the base shards

Each is run --runs times (best wall time, max peak RSS). Prints a table
with ratios; exits 0 whatever the numbers (a measurement, not a test).
--simd sets SMELT_SIMD (portable, avx2, avx512) for the smelt runs.
--tiny runs the same pipeline on a tiny model (the CI smoke test).
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
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_merge as bm  # noqa: E402
import bench_gguf as bg  # noqa: E402


def measure(cmd, env, runs, before=None):
    """Best wall time and max peak RSS of cmd over runs; before() runs
    first each time (clears the output, warms the cache)."""
    results = []
    for _ in range(runs):
        if before:
            before()
        secs, rss, rc, tail = bm.run_measured(cmd, env)
        if rc != 0:
            sys.exit("%s failed:\n%s" % (os.path.basename(cmd[0]), tail))
        results.append((secs, rss))
    return bg.best(results)


def only_gguf(out):
    files = [f for f in os.listdir(out) if f.endswith(".gguf")]
    if len(files) != 1:
        sys.exit("expected one GGUF file in %s, found %r" % (out, files))
    return os.path.join(out, files[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True)
    p.add_argument("--harness", required=True, help="smelt-llama-harness")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "smelt-bench"))
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--simd", default=None, help="SMELT_SIMD for the smelt runs")
    args = p.parse_args(argv)

    params = bm.TINY if args.tiny else bm.BIG
    work = os.path.join(args.workdir, "tiny" if args.tiny else "big")
    model, adapter = bm.prepare(work, params)
    bg.with_spm_tokenizer(model, params["vocab"])
    env = bm.smelt_env(args.smelt)
    if args.simd:
        env["SMELT_SIMD"] = args.simd
    shards = bm.base_shards(model)
    base_bytes = sum(os.path.getsize(s) for s in shards)
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []

    def smelt_export(types):
        out = os.path.join(work, "out-" + types)
        rec = os.path.join(work, "bench-%s.smelt" % types)
        bg.recipe(rec, model, adapter, out, types)

        def before():
            shutil.rmtree(out, ignore_errors=True)
            bm.warm_cache(shards)
        res = measure([args.smelt, "run", rec, "--progress=none"] + jobs, env, args.runs, before)
        return res, out

    rows = []
    (q4, q4_out) = smelt_export("q4_k_m")
    rows.append(("(a) smelt HF -> Q4_K_M", q4, os.path.getsize(only_gguf(q4_out))))
    (two, two_out) = smelt_export("q4_k_m;q8_0")
    rows.append(("(a2) smelt HF -> Q4_K_M + Q8_0", two, bm.dir_bytes(two_out)))
    (f16, f16_out) = smelt_export("f16")
    f16_file = only_gguf(f16_out)
    rows.append(("(b1) smelt HF -> F16", f16, os.path.getsize(f16_file)))

    lq_out = os.path.join(work, "out-llama-quantize")
    lq_file = os.path.join(lq_out, "model-Q4_K_M.gguf")

    def before_lq():
        shutil.rmtree(lq_out, ignore_errors=True)
        os.makedirs(lq_out)
        bm.warm_cache([f16_file])
    lq = measure([args.harness, "model-quantize", f16_file, lq_file, "Q4_K_M"], None,
                 args.runs, before_lq)
    rows.append(("(b2) llama-quantize F16->Q4_K_M", lq, os.path.getsize(lq_file)))
    both = (f16[0] + lq[0], max(f16[1], lq[1]))
    rows.append(("(b) F16 export + quantize", both, os.path.getsize(lq_file)))
    lq8_file = os.path.join(lq_out, "model-Q8_0.gguf")

    def before_lq8():
        if os.path.exists(lq8_file):
            os.unlink(lq8_file)
        bm.warm_cache([f16_file])
    lq8 = measure([args.harness, "model-quantize", f16_file, lq8_file, "Q8_0"], None,
                  args.runs, before_lq8)
    rows.append(("(b3) llama-quantize F16->Q8_0", lq8, os.path.getsize(lq8_file)))
    chain = (f16[0] + lq[0] + lq8[0], max(f16[1], lq[1], lq8[1]))
    rows.append(("(b') F16 + quantize twice", chain, os.path.getsize(lq_file) + os.path.getsize(lq8_file)))

    copy_dir = os.path.join(work, "out-copy")

    def before_copy():
        shutil.rmtree(copy_dir, ignore_errors=True)
        os.makedirs(copy_dir)
        bm.warm_cache(shards)
    cmd = [sys.executable, "-c", "import shutil,sys\nfor s in sys.argv[2:]: "
           "shutil.copyfile(s, sys.argv[1] + '/' + s.rsplit('/',1)[1])", copy_dir] + shards
    copy = measure(cmd, None, args.runs, before_copy)
    rows.append(("(c) copy of the base", copy, bm.dir_bytes(copy_dir)))

    copy_secs = copy[0]
    print("\nmodel: %s, %.2f GB of %s weights, adapter rank %d; %d cores, load %.2f %.2f %.2f%s" % (
        "tiny" if args.tiny else "1.1B llama", base_bytes / 1e9, params["dtype"], bm.ADAPTER["rank"],
        os.cpu_count() or 0, *os.getloadavg(),
        ", SMELT_SIMD=%s" % args.simd if args.simd else ""))
    print("%-34s %9s %10s %11s %9s" % ("", "seconds", "peak RSS", "written", "vs copy"))
    for label, (secs, rss), written in rows:
        print("%-34s %9.2f %7.0f MiB %8.1f MB %8.2fx" % (label, secs, rss, written / 1e6,
                                                        secs / copy_secs if copy_secs else 0))
    print("\nsmelt Q4_K_M in one run vs llama-quantize alone:    %.2fx the time" % (q4[0] / lq[0]))
    print("smelt Q4_K_M in one run vs F16 export + quantize:   %.2fx the time" % (q4[0] / both[0]))
    print("smelt Q4_K_M + Q8_0 in one run vs F16 + quantize twice: %.2fx the time (%.1fx faster)"
          % (two[0] / chain[0], chain[0] / two[0]))
    if not args.keep:
        for o in (q4_out, two_out, f16_out, lq_out, copy_dir):
            shutil.rmtree(o, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: smelt's Q4_K_M export next to llama.cpp's llama-quantize path.

    /usr/bin/python3 tests/bench/bench_gguf_quant.py --smelt build/core/smelt
        --harness build/tests/llama/smelt-llama-harness
        [--workdir DIR] [--tiny] [--keep] [--runs 1] [--jobs N] [--simd LEVEL]

Default model: the synthetic ~1.1B-parameter bf16 llama of bench_gguf.py
(with its SentencePiece tokenizer and rank-16 adapter), cached in the
workdir. First smelt writes the merged model as an F16 GGUF (b1). Then,
one after another, each as a child process with a warm page cache:

  (a) quantizing that F16 GGUF: smelt with the file as its model (Types=
      q4_k_m, q8_0, and both in one run) next to smelt-llama-harness
      model-quantize F16.gguf out.gguf TYPE, which is
      llama_model_quantize() with its default parameters (all cores)
  (b) end to end, base + adapter: smelt's Q4_K_M, and Q4_K_M + Q8_0 in
      one run, next to the chain "F16 GGUF, then llama-quantize twice"
      (times added, peak RSS the largest)
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
        res = bm.measure([args.smelt, "run", rec, "--progress=none"] + jobs, env, args.runs, before)
        return res, out

    rows = []
    (f16, f16_out) = smelt_export("f16")
    f16_file = only_gguf(f16_out)
    rows.append(("(b1) smelt HF -> F16", f16, os.path.getsize(f16_file)))

    # (a) the F16 GGUF quantized: smelt with the file as its model, next
    # to llama_model_quantize() on the same file
    def smelt_requant(types):
        out = os.path.join(work, "out-requant-" + types)
        rec = os.path.join(work, "bench-requant-%s.smelt" % types)
        bg.recipe(rec, f16_file, None, out, types)

        def before():
            shutil.rmtree(out, ignore_errors=True)
            bm.warm_cache([f16_file])
        res = bm.measure([args.smelt, "run", rec, "--progress=none"] + jobs, env, args.runs, before)
        return res, out

    lq_out = os.path.join(work, "out-llama-quantize")
    os.makedirs(lq_out, exist_ok=True)

    def llama_quantize(ftype):
        path = os.path.join(lq_out, "model-%s.gguf" % ftype)

        def before():
            if os.path.exists(path):
                os.unlink(path)
            bm.warm_cache([f16_file])
        return bm.measure([args.harness, "model-quantize", f16_file, path, ftype], None,
                       args.runs, before), path

    (rq4, rq4_out) = smelt_requant("q4_k_m")
    rows.append(("(a1) smelt F16.gguf -> Q4_K_M", rq4, os.path.getsize(only_gguf(rq4_out))))
    (lq, lq_file) = llama_quantize("Q4_K_M")
    rows.append(("(a1') llama-quantize F16 -> Q4_K_M", lq, os.path.getsize(lq_file)))
    (rq8, rq8_out) = smelt_requant("q8_0")
    rows.append(("(a2) smelt F16.gguf -> Q8_0", rq8, os.path.getsize(only_gguf(rq8_out))))
    (lq8, lq8_file) = llama_quantize("Q8_0")
    rows.append(("(a2') llama-quantize F16 -> Q8_0", lq8, os.path.getsize(lq8_file)))
    (rq2, rq2_out) = smelt_requant("q4_k_m;q8_0")
    rows.append(("(a3) smelt F16.gguf -> both, one run", rq2, bm.dir_bytes(rq2_out)))
    lq2 = (lq[0] + lq8[0], max(lq[1], lq8[1]))
    rows.append(("(a3') llama-quantize twice", lq2,
                 os.path.getsize(lq_file) + os.path.getsize(lq8_file)))

    # (b) end to end from the Hugging Face model and adapter
    (q4, q4_out) = smelt_export("q4_k_m")
    rows.append(("(b2) smelt HF -> Q4_K_M", q4, os.path.getsize(only_gguf(q4_out))))
    (two, two_out) = smelt_export("q4_k_m;q8_0")
    rows.append(("(b3) smelt HF -> Q4_K_M + Q8_0", two, bm.dir_bytes(two_out)))
    chain = (f16[0] + lq[0] + lq8[0], max(f16[1], lq[1], lq8[1]))
    rows.append(("(b') F16 + quantize twice", chain,
                 os.path.getsize(lq_file) + os.path.getsize(lq8_file)))

    copy_dir = os.path.join(work, "out-copy")
    copy = bm.measure_copy(shards, copy_dir, args.runs)
    rows.append(("(c) copy of the base", copy, bm.dir_bytes(copy_dir)))

    copy_secs = copy[0]
    print("\nmodel: %s, %.2f GB of %s weights, adapter rank %d; %d cores, load %.2f %.2f %.2f%s" % (
        "tiny" if args.tiny else "1.1B llama", base_bytes / 1e9, params["dtype"], bm.ADAPTER["rank"],
        os.cpu_count() or 0, *os.getloadavg(),
        ", SMELT_SIMD=%s" % args.simd if args.simd else ""))
    print("%-37s %9s %10s %11s %9s" % ("", "seconds", "peak RSS", "written", "vs copy"))
    for label, (secs, rss), written in rows:
        print("%-37s %9.2f %7.0f MiB %8.1f MB %8.2fx" % (label, secs, rss, written / 1e6,
                                                        secs / copy_secs if copy_secs else 0))
    threads = "--jobs %d" % args.jobs if args.jobs else "%d threads" % (os.cpu_count() or 1)
    print("\nsmelt at %s; llama_model_quantize at its default (all %d cores)"
          % (threads, os.cpu_count() or 1))
    print("(a) F16 GGUF -> Q4_K_M:        smelt %.1fx faster than llama-quantize" % (lq[0] / rq4[0]))
    print("(a) F16 GGUF -> Q8_0:          smelt %.1fx faster than llama-quantize" % (lq8[0] / rq8[0]))
    print("(a) F16 GGUF -> both:          smelt %.1fx faster (one run vs two)" % (lq2[0] / rq2[0]))
    print("(b) HF + adapter -> both:      smelt %.1fx faster than F16 + quantize twice, "
          "peak RSS %.0f MiB" % (chain[0] / two[0], two[1]))
    if not args.keep:
        for o in (q4_out, two_out, f16_out, lq_out, copy_dir, rq4_out, rq8_out, rq2_out):
            shutil.rmtree(o, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

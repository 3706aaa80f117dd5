#!/usr/bin/python3
"""smelt's bitsandbytes 4-bit arithmetic against the numpy reference.

tests/reference/bnb4_ref.py was written from the published algorithm
(bitsandbytes' CUDA kernels as ../shared/reference/formats.md §2 describes
them), not from smelt's code. For NF4 and FP4, several block sizes, with and
without double quantization, on random and adversarial inputs (zeros,
constants, one huge outlier per block, tiny magnitudes, odd element counts,
partial last blocks, all-zero blocks among others), smelt-bnb4-codec's
bytes must equal the reference's: packed codes, absmax (float32 or 8-bit
codes), nested_absmax, the offset as Python's repr writes it; and smelt's
dequantization must equal the reference's bit for bit (the repr itself is
test_bnb4_repr.py's).

    test_bnb4_codec.py --codec SMELT_BNB4_CODEC --workdir DIR
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
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import bnb4_ref as ref  # noqa: E402


def inputs(rng):
    """(label, float32 array) pairs: what real weights look like, and what
    breaks quantizers."""
    cases = []
    cases.append(("normal 4096", (rng.standard_normal(4096) * 0.02).astype(np.float32)))
    cases.append(("normal 64x200 (blocks straddle rows)",
                  (rng.standard_normal(64 * 200) * 0.05).astype(np.float32)))
    cases.append(("odd 1001", rng.standard_normal(1001).astype(np.float32)))
    cases.append(("odd 3", np.array([0.5, -1.0, 0.25], np.float32)))
    cases.append(("zeros 512", np.zeros(512, np.float32)))
    z = (rng.standard_normal(1024) * 0.1).astype(np.float32)
    z[128:192] = 0.0
    z[1000:] = 0.0
    cases.append(("zero blocks among others", z))
    cases.append(("constant 640", np.full(640, 0.0371, np.float32)))
    cases.append(("constant negative 640", np.full(640, -3.5, np.float32)))
    o = (rng.standard_normal(64 * 40) * 0.01).astype(np.float32)
    o[::64] = 1000.0
    o[5::128] = -2000.0
    cases.append(("one huge outlier per block", o))
    cases.append(("tiny magnitudes", (rng.standard_normal(2048) * 1e-30).astype(np.float32)))
    cases.append(("huge magnitudes", (rng.standard_normal(2048) * 1e30).astype(np.float32)))
    u = rng.uniform(-1, 1, 64 * 300).astype(np.float32)
    cases.append(("uniform, 300 blocks (nested spans two 256-blocks)", u))
    # exact table values and thresholds scaled by a block absmax of 1:
    # ties must go to the lower code
    t = np.concatenate([ref.NF4, ref.NF4_THRESHOLDS, -ref.NF4_THRESHOLDS,
                        np.array([1.0, -1.0], np.float32)]).astype(np.float32)
    t = np.resize(t, 64 * 4)
    t[::64] = 1.0
    cases.append(("table values and thresholds", t))
    f = np.resize(np.concatenate([ref.FP4, np.array([0.29166667, 0.583333, 0.8333333, 0.4166667,
                                                      0.0859375, 0.20833333, 0.00260417],
                                                     np.float32)]), 64 * 2).astype(np.float32)
    f[::64] = 1.0
    cases.append(("FP4 values and decision points", f))
    # many blocks with equal absmax: nested blocks whose spread is zero
    e = np.tile(np.concatenate([[0.5], np.zeros(63)]).astype(np.float32), 600)
    cases.append(("600 blocks of equal absmax", e))
    return cases


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr))
    return p.stdout


def check_case(args, label, x, qtype, bs, nested):
    work = os.path.join(args.workdir, "case")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "in.f32")
    x.astype("<f4").tofile(src)
    run([args.codec, "quantize", qtype, str(bs), "nested" if nested else "plain", src, work])
    problems = []

    def got(name, dtype):
        return np.fromfile(os.path.join(work, name), dtype=dtype)

    packed, absmax = ref.quantize_4bit(x, qtype, bs)
    if not np.array_equal(got("packed.bin", np.uint8), packed):
        bad = np.nonzero(got("packed.bin", np.uint8) != packed)[0]
        problems.append("packed codes differ at %d bytes (first %d)" % (len(bad), bad[0]))
    if nested:
        codes, nested_absmax, offset = ref.double_quant(absmax)
        if not np.array_equal(got("absmax.bin", np.uint8), codes):
            problems.append("8-bit absmax codes differ")
        if got("nested_absmax.bin", np.uint32).tolist() != nested_absmax.view(np.uint32).tolist():
            problems.append("nested_absmax differs")
        with open(os.path.join(work, "offset.txt")) as f:
            text = f.read()
        if text != repr(float(offset)):
            problems.append("offset %s, reference %r" % (text, float(offset)))
        want = ref.dequantize(packed, codes, qtype, bs, len(x), "float32",
                              nested_absmax=nested_absmax, offset=offset)
    else:
        if got("absmax.bin", np.uint32).tolist() != absmax.view(np.uint32).tolist():
            problems.append("absmax differs")
        want = ref.dequantize(packed, absmax, qtype, bs, len(x), "float32")
    out = os.path.join(work, "out.f32")
    run([args.codec, "dequantize", qtype, str(bs), "nested" if nested else "plain",
         str(len(x)), work, out])
    mine = np.fromfile(out, dtype=np.uint32)
    want = np.asarray(want, np.float32).view(np.uint32)
    if mine.tolist() != want.tolist():
        problems.append("dequantized values differ at %d elements" % int(np.sum(mine != want)))
    return problems


def round_to(x, dtype):
    """x rounded to nearest-even in the 16-bit type, back in float32."""
    if dtype == "f16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float32)
    return ref.bf16_bits_to_f32(ref.f32_to_bf16_bits(x))


def check_rounded(args, label, x, qtype, bs, dtype):
    """smelt_bnb4_quantize_as: the reference quantizes the values rounded
    to the weight's 16-bit type; the first value that is not finite once
    rounded is reported instead."""
    work = os.path.join(args.workdir, "case-as")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "in.f32")
    x.astype("<f4").tofile(src)
    run([args.codec, "quantize-as", qtype, str(bs), dtype, src, work])
    with open(os.path.join(work, "first_bad.txt")) as f:
        first_bad = int(f.read())
    r = round_to(x, dtype)
    bad = np.nonzero(~np.isfinite(r))[0]
    if len(bad):
        return [] if first_bad == bad[0] else ["first bad value %d, expected %d" % (first_bad, bad[0])]
    if first_bad != -1:
        return ["reported value %d as not finite" % first_bad]
    packed, absmax = ref.quantize_4bit(r, qtype, bs)
    problems = []
    if not np.array_equal(np.fromfile(os.path.join(work, "packed.bin"), np.uint8), packed):
        problems.append("packed codes differ")
    if np.fromfile(os.path.join(work, "absmax.bin"), np.uint32).tolist() != absmax.view(np.uint32).tolist():
        problems.append("absmax differs")
    return problems


def rounded_inputs(rng, cases):
    """The codec's inputs plus values whose rounding matters: halfway
    cases of both types, and values that stop being finite."""
    out = [(label, x) for label, x in cases if np.all(np.isfinite(round_to(x, "f16")))]
    h = (rng.standard_normal(64 * 70) * 0.03).astype(np.float32)
    bits = h.view(np.uint32)
    bits[::3] = (bits[::3] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)  # bf16 ties
    bits[1::3] = (bits[1::3] & np.uint32(0xFFFFE000)) | np.uint32(0x1000)  # f16 ties
    out.append(("halfway values", h))
    out.append(("long odd 9001 (several chunks)", rng.standard_normal(9001).astype(np.float32)))
    for what, v in (("NaN", np.nan), ("infinity", -np.inf), ("70000 (f16 overflow)", 70000.0),
                    ("3.4e38 (bf16 overflow)", 3.4e38)):
        y = rng.standard_normal(64 * 100).astype(np.float32)
        y[5000] = v
        y[6000] = v
        out.append(("%s at 5000" % what, y))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--codec", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rng = np.random.default_rng(20261122)
    failures = checked = 0
    for label, x in inputs(rng):
        for qtype in ("nf4", "fp4"):
            for bs in (64, 128, 32, 4096):
                for nested in (False, True):
                    problems = check_case(args, label, x, qtype, bs, nested)
                    checked += 1
                    if problems:
                        failures += 1
                        print("FAIL %s %s bs=%d %s: %s" % (label, qtype, bs,
                                                           "nested" if nested else "plain",
                                                           "; ".join(problems)))
        print("ok   %s (%d elements)" % (label, len(x)))
    for label, x in rounded_inputs(rng, inputs(rng)):
        for qtype in ("nf4", "fp4"):
            for bs in (64, 256):
                for dtype in ("bf16", "f16"):
                    problems = check_rounded(args, label, x, qtype, bs, dtype)
                    checked += 1
                    if problems:
                        failures += 1
                        print("FAIL rounded to %s: %s %s bs=%d: %s" % (dtype, label, qtype, bs,
                                                                      "; ".join(problems)))
        print("ok   %s, rounded first (%d elements)" % (label, len(x)))
    print("%d cases, %d failed" % (checked, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""smelt's ggml row decoders (core/smelt-ggml-dequant.c) against ggml's own
dequantization, bit for bit.

For every type smelt writes, the rows of the encoder test's cases
(test_gguf_encode.py: random, adversarial, tie and extreme-magnitude
blocks) are quantized by ggml (`smelt-llama-harness quantize`), then
decoded by smelt-decode and by `smelt-llama-harness dequantize` (ggml's
to_float); the float32 outputs must have the same bits. Random bytes are
decoded too, so that every bit pattern of scales, minimums and packed
values is exercised, including ones no quantizer writes (fp16 NaN and
infinite scales, out-of-range six-bit scales).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_gguf_encode import TYPES, cases, run  # noqa: E402

BLOCK = {"f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34),
         "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24),
         "q2_K": (256, 84), "q3_K": (256, 110), "q4_K": (256, 144), "q5_K": (256, 176),
         "q6_K": (256, 210)}


def same_bits(a, b):
    """float32 arrays equal bit for bit, except that any NaN equals any NaN
    (ggml and smelt may carry different payloads through a product)"""
    a = np.frombuffer(a, np.float32)
    b = np.frombuffer(b, np.float32)
    if a.shape != b.shape:
        return False, 0
    nan = np.isnan(a) & np.isnan(b)
    diff = (a.view(np.uint32) != b.view(np.uint32)) & ~nan
    return not diff.any(), int(np.argmax(diff)) if diff.any() else -1


def check(args, t, data, rows, cols, label):
    ours = run([args.decode, t, str(rows), str(cols)], data)
    ref = run([args.harness, "dequantize", t, str(rows), str(cols)], data)
    ok, at = same_bits(ours, ref)
    if not ok:
        a = np.frombuffer(ours, np.float32)
        b = np.frombuffer(ref, np.float32)
        where = f"element {at}: smelt {a[at]!r}, ggml {b[at]!r}" if at >= 0 else "sizes differ"
        print(f"FAIL {t} {label} width {cols}: {where}")
    else:
        print(f"ok   {t} {label} width {cols} ({rows} rows)")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decode", required=True)
    ap.add_argument("--harness", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(20261123)
    total = ok = 0
    for n in (256, 4096):
        group = list(cases(rng, n))
        x = np.concatenate([c for _, c in group])
        rows = x.shape[0]
        for t in TYPES:
            src = x
            if t == "f16":      # ggml overflows to inf; keep to finite halves
                src = x[np.abs(x).max(axis=1) < 65504]
            q = run([args.harness, "quantize", t, str(src.shape[0]), str(n)], src.astype("<f4").tobytes())
            total += 1
            ok += check(args, t, q, src.shape[0], n, "quantized cases")
            block, nbytes = BLOCK[t]
            raw = rng.integers(0, 256, rows * n // block * nbytes, dtype=np.uint8).tobytes()
            total += 1
            ok += check(args, t, raw, rows, n, "random bytes")
    print(f"{ok}/{total} (type, width, input) combinations identical")
    if total < 50:
        sys.exit("too few cases ran")
    sys.exit(0 if ok == total else 1)


if __name__ == "__main__":
    main()

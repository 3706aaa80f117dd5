#!/usr/bin/python3
"""smelt's F32/F16/BF16/Q8_0 row encoders against ggml's own.

Each case is a float32 matrix; smelt-encode (smelt's encoder) and
`smelt-llama-harness quantize` (ggml_quantize_chunk from the llama.cpp
libraries of node-llama-cpp 3.22.1) must produce the same bytes. The cases
are random and adversarial: zeros, constants, exact rounding halves,
one huge outlier per block, tiny and subnormal magnitudes, values at the
edges of fp16's range and bf16 rounding ties.
"""
import argparse
import subprocess
import sys

import numpy as np


def run(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.decode()}")
    return p.stdout


def cases(rng):
    n = 256
    yield "random-normal", rng.standard_normal((8, n)).astype(np.float32) * 0.05
    yield "random-wide", (rng.standard_normal((8, n)) * np.exp(rng.uniform(-20, 10, (8, 1)))).astype(np.float32)
    yield "zeros", np.zeros((2, n), np.float32)
    yield "negative-zeros", -np.zeros((2, n), np.float32)
    yield "constant", np.full((2, n), 0.3, np.float32)
    yield "constant-negative", np.full((2, n), -7.25, np.float32)
    x = rng.standard_normal((4, n)).astype(np.float32) * 1e-3
    x[:, ::32] = 1e4                                   # one huge outlier per block
    yield "outlier-per-block", x
    yield "tiny", (rng.standard_normal((4, n)) * 1e-30).astype(np.float32)
    sub = np.frombuffer(rng.integers(1, 0x007fffff, 4 * n, dtype=np.uint32).astype(np.uint32).tobytes(),
                        np.float32).reshape(4, n).copy()
    yield "subnormal", sub
    # Q8_0 halves: amax 127 makes d = 1, so x.5 values round away from zero
    h = (rng.integers(-126, 126, (4, n)) + 0.5).astype(np.float32)
    h[:, ::32] = 127
    yield "q8-halves", h
    # fp16 edges: the largest finite half, the rounding boundary just below
    # 65520 (which rounds to inf and is refused by smelt, so not here),
    # half-way cases between halves and the smallest subnormal half
    e = np.array([65504, -65504, 65519.99, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08,
                  2.9802326e-08, 1.0009765625 / 2 + 1.0009765625 / 2, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
                  2048 + 1, 2048 + 3, 0.1, 1 / 3], np.float32)
    yield "f16-edges", np.resize(e, (2, n)).astype(np.float32)
    # bf16 ties: the low 16 bits exactly 0x8000 with even and odd kept bits
    bits = (rng.integers(0, 2 ** 15, 2 * n, dtype=np.uint32) << 16 | 0x8000).astype(np.uint32)
    yield "bf16-ties", np.frombuffer(bits.tobytes(), np.float32).reshape(2, n).copy()
    yield "large", (rng.standard_normal((2, n)) * 1e30).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encode", required=True)
    ap.add_argument("--harness", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(20261122)
    failures = 0
    checked = 0
    for name, x in cases(rng):
        assert np.all(np.isfinite(x)), name
        for t in ("f32", "f16", "bf16", "q8_0"):
            if t == "f16" and np.abs(x).max() >= 65520:
                continue          # smelt refuses to overflow fp16 to inf
            rows, cols = x.shape
            data = x.astype("<f4").tobytes()
            ours = run([args.encode, t, str(rows), str(cols)], data)
            ref = run([args.harness, "quantize", t, str(rows), str(cols)], data)
            checked += 1
            if ours != ref:
                failures += 1
                diff = next(i for i in range(min(len(ours), len(ref))) if ours[i] != ref[i]) \
                    if len(ours) == len(ref) else -1
                print(f"FAIL {name} {t}: {len(ours)} vs {len(ref)} bytes, first difference at {diff}")
            else:
                print(f"ok   {name} {t}: {len(ours)} bytes identical")
    print(f"{checked - failures}/{checked} identical")
    if checked < 40:
        sys.exit("too few cases ran")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

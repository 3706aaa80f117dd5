#!/usr/bin/python3
"""smelt's ggml row encoders against ggml's own, byte for byte.

Types: F32, F16, BF16, Q8_0 and the block quantizers Q4_0, Q4_1, Q5_0, Q5_1,
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (core/smelt-ggml-quants.c). smelt-encode
(smelt's encoder) and `smelt-llama-harness quantize` (ggml_quantize_chunk
without an importance matrix, from the llama.cpp libraries of
node-llama-cpp 3.22.1) must produce the same bytes.

The cases are random and adversarial, each in rows of 256 and of 4096
elements: zeros of both signs, constants, one huge outlier per 16 and per
32 elements, tiny, subnormal and huge magnitudes (±1e30, near FLT_MAX,
squares that overflow), values around ggml's 1e-15 "all zero" threshold,
grids of half-integers that put nearest_int and the truncating casts on
exact ties, sparse rows and sub-blocks whose scale quantizes to 0 (the
"keep the search's levels" paths), fp16 and bf16 edges, and many rows.

Quantization is row-independent (ggml splits rows across threads), so all
cases of one width go to each program in one matrix; a difference is
reported with the case and row it falls in.
"""
import argparse
import subprocess
import sys

import numpy as np

TYPES = ("f32", "f16", "bf16", "q8_0",
         "q4_0", "q4_1", "q5_0", "q5_1",
         "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")


def run(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.decode()}")
    return p.stdout


def f32(a):
    return np.asarray(a, dtype=np.float32)


def from_bits(bits, shape):
    return np.frombuffer(np.asarray(bits, np.uint32).tobytes(), np.float32).reshape(shape).copy()


def half_grid(rng, rows, n, span, scale, half_fraction=0.5):
    """Integers and half-integers in [-span, span], times a power of two:
    with a power-of-two block maximum the scales are powers of two, and the
    products land exactly on x.5, the ties of nearest_int (half to even)
    and the boundaries of the legacy types' truncating casts."""
    k = rng.integers(-span, span, (rows, n)).astype(np.float64)
    k += np.where(rng.random((rows, n)) < half_fraction, 0.5, 0.0)
    # pin the extremes of every 16-element sub-block, so that the block
    # maximum (or max - min) is exactly the span
    k[:, 0::16] = -span
    k[:, 1::16] = span
    return f32(k * scale)


def cases(rng, n):
    """(name, float32 matrix of shape (rows, n)) for rows of n elements"""
    yield "random-normal", f32(rng.standard_normal((8, n)) * 0.05)
    yield "random-laplace", f32(rng.laplace(0, 0.02, (8, n)))
    yield "random-uniform", f32(rng.uniform(-1, 1, (4, n)))
    yield "random-heavy-tail", f32(rng.standard_t(2, (8, n)) * 0.01)
    yield "random-wide", f32(rng.standard_normal((8, n)) * np.exp(rng.uniform(-20, 10, (8, 1))))
    # one scale per row from 1e-45 to 1e38: subnormal, fp16-subnormal,
    # fp16-overflowing scales and overflowing squares
    yield "random-extreme-scales", f32(rng.standard_normal((24, n)) * 10.0 ** rng.uniform(-45, 38, (24, 1)))
    yield "positive", f32(rng.uniform(1, 2, (4, n)))
    yield "negative", f32(-rng.uniform(1, 2, (4, n)))
    yield "shifted", f32(rng.standard_normal((4, n)) * 0.01 + 5)
    yield "ramp", np.tile(np.linspace(-3, 5, n, dtype=np.float32), (2, 1))

    yield "zeros", np.zeros((2, n), np.float32)
    yield "negative-zeros", -np.zeros((2, n), np.float32)
    yield "mixed-zeros", np.where(rng.random((4, n)) < 0.5, f32(0.0), f32(-0.0)).astype(np.float32)
    for c in (0.3, -7.25, 1.0, -1.0, 1e-20, 65504.0, 1e30, -1e30):
        yield f"constant({c:g})", np.full((2, n), c, np.float32)
    # a different constant in every 16 elements: max == min in every search
    yield "constant-per-16", np.repeat(f32(rng.standard_normal((4, n // 16))), 16, axis=1)

    for every in (16, 32):
        for big in (1e4, -1e4, 1e30):
            x = f32(rng.standard_normal((4, n)) * 1e-3)
            x[:, rng.integers(0, every)::every] = big
            yield f"outlier-per-{every}({big:g})", x
    # one outlier per row at a random place
    x = f32(rng.standard_normal((8, n)) * 0.02)
    x[np.arange(8), rng.integers(0, n, 8)] = f32(rng.choice([-1, 1], 8) * rng.uniform(5, 50, 8))
    yield "outlier-per-row", x

    yield "tiny", f32(rng.standard_normal((4, n)) * 1e-30)
    yield "subnormal", from_bits(rng.integers(1, 0x007fffff, 4 * n, dtype=np.uint32)
                                 | (rng.integers(0, 2, 4 * n, dtype=np.uint32) << 31), (4, n))
    # around GROUP_MAX_EPS = 1e-15, the K-quants' "all zero" threshold
    eps = f32(1e-15)
    e = np.array([eps, np.nextafter(eps, f32(0)), np.nextafter(eps, f32(1)), -eps], np.float32)
    x = f32(rng.standard_normal((8, n)) * 1e-16)
    x[np.arange(8) % 4 == 0, ::16] = e[0]
    x[np.arange(8) % 4 == 1, ::16] = e[1]
    x[np.arange(8) % 4 == 2, ::16] = e[2]
    x[np.arange(8) % 4 == 3, ::16] = e[3]
    yield "group-eps-edge", x
    # the same sub-blocks next to a loud one: their scales quantize to 0, so
    # the levels of their searches are stored, all 0 only below 1e-15
    x = x.copy()
    x[:, ::256] = f32(rng.choice([-1, 1], (8, n // 256)) * 0.5)
    yield "group-eps-keep", x
    yield "fp16-subnormal-scales", f32(rng.standard_normal((4, n)) * 1e-6)
    yield "fp16-overflow-scales", f32(rng.standard_normal((4, n)) * 1e6)
    yield "large", f32(rng.standard_normal((4, n)) * 1e30)
    yield "squares-overflow", f32(rng.standard_normal((4, n)) * 10.0 ** rng.uniform(18, 21, (4, n)))
    x = f32(rng.standard_normal((4, n)))
    x[:, ::7] = f32(3e38)
    x[:, 3::11] = f32(-3e38)
    yield "near-flt-max", x
    # huge and ordinary values in the same sub-blocks
    x = f32(rng.standard_normal((4, n)))
    x[:, ::5] *= f32(1e30)
    yield "mixed-huge", x

    for span, scale in ((3, 1.0), (4, 0.5), (8, 1.0), (15, 2.0), (16, 0.25), (31, 1.0),
                        (32, 1.0), (63, 0.125), (127, 1.0), (128, 4.0)):
        yield f"half-grid({span},{scale:g})", half_grid(rng, 4, n, span, scale)
    # ties of the legacy types: max = -8 (Q4_0) / -16 (Q5_0) gives d = 1
    for m in (8, 16):
        x = f32(rng.integers(-2 * m, 2 * m, (4, n)) / 2.0)
        x[:, ::32] = -m
        yield f"legacy-ties({m})", x

    # sparse rows: most sub-blocks all zero, the others not
    yield "sparse", f32(np.where(rng.random((8, n)) < 0.03, rng.standard_normal((8, n)), 0.0))
    # one loud 16-element sub-block per 256: the others' scales quantize to
    # 0 and keep the levels of their searches
    x = f32(rng.standard_normal((8, n)) * 1e-3)
    for r in range(8):
        for b in range(0, n, 256):
            s = b + 16 * rng.integers(0, 16)
            x[r, s:s + 16] *= f32(10.0 ** rng.uniform(3, 6))
    yield "dominant-sub-block", x
    # two values per row
    a, b = rng.standard_normal(2)
    yield "two-levels", f32(np.where(rng.random((4, n)) < 0.5, a, b))

    # Q8_0 halves: amax 127 makes d = 1, so x.5 values round away from zero
    h = f32(rng.integers(-126, 126, (4, n)) + 0.5)
    h[:, ::32] = 127
    yield "q8-halves", h
    # fp16 edges: the largest finite half, the rounding boundary just below
    # 65520 (which rounds to inf and is refused by smelt for f16), half-way
    # cases between halves and the smallest subnormal half
    e = np.array([65504, -65504, 65519.99, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08,
                  2.9802326e-08, 1.0009765625 / 2 + 1.0009765625 / 2, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
                  2048 + 1, 2048 + 3, 0.1, 1 / 3], np.float32)
    yield "f16-edges", np.resize(e, (2, n)).astype(np.float32)
    # bf16 ties: the low 16 bits exactly 0x8000 with even and odd kept bits
    bits = (rng.integers(0, 0x7f80, 2 * n, dtype=np.uint32) << 16 | 0x8000).astype(np.uint32)
    yield "bf16-ties", from_bits(bits, (2, n))

    yield "many-rows", f32(rng.standard_normal((512 if n == 256 else 64, n)) * 0.02)


def compare(args, t, group):
    """Runs both encoders on the cases of @group (one width) for type @t;
    returns (identical, checked) counts of cases."""
    if t == "f16":    # smelt refuses to overflow fp16 to inf
        group = [(name, x) for name, x in group if np.abs(x).max() < 65520]
    x = np.concatenate([x for _, x in group])
    rows, cols = x.shape
    data = x.astype("<f4").tobytes()
    ours = run([args.encode, t, str(rows), str(cols)], data)
    ref = run([args.harness, "quantize", t, str(rows), str(cols)], data)
    if len(ours) != len(ref) or len(ref) % rows:
        print(f"FAIL {t} width {cols}: {len(ours)} vs {len(ref)} bytes")
        return 0, len(group)
    row_bytes = len(ref) // rows
    a = np.frombuffer(ours, np.uint8).reshape(rows, row_bytes)
    b = np.frombuffer(ref, np.uint8).reshape(rows, row_bytes)
    identical = 0
    first = 0
    for name, c in group:
        sa, sb = a[first:first + len(c)], b[first:first + len(c)]
        if np.array_equal(sa, sb):
            identical += 1
        else:
            r, byte = np.argwhere(sa != sb)[0]
            print(f"FAIL {name} {t} width {cols}: row {r}, byte {byte}: "
                  f"smelt {sa[r, byte]:#04x}, ggml {sb[r, byte]:#04x} "
                  f"({int((sa != sb).any(axis=1).sum())}/{len(c)} rows differ)")
        first += len(c)
    print(f"{'ok  ' if identical == len(group) else 'FAIL'} {t} width {cols}: "
          f"{identical}/{len(group)} cases identical ({rows} rows, {len(ref)} bytes)")
    return identical, len(group)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encode", required=True)
    ap.add_argument("--harness", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(20261122)
    total = ok = 0
    for n in (256, 4096):
        group = list(cases(rng, n))
        for name, x in group:
            assert x.dtype == np.float32 and x.shape[1] == n and np.all(np.isfinite(x)), name
        for t in TYPES:
            i, c = compare(args, t, group)
            ok += i
            total += c
    print(f"{ok}/{total} (case, type, width) combinations identical")
    if total < 1000:
        sys.exit("too few cases ran")
    sys.exit(0 if ok == total else 1)


if __name__ == "__main__":
    main()

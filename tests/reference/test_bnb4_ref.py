#!/usr/bin/env python3
"""Self-test of bnb4_ref.py against shared/reference/formats.md 2.1-2.9:
tables, hand-worked codes, tie / zero / odd-length edge cases, round-trip
bounds, double quant, JSON / config literals and bf16 rounding.

    /usr/bin/python3 tests/reference/test_bnb4_ref.py     (exit 1 on failure)
"""

import importlib

try:  # numpy lives in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:  # e.g. a pyenv python3 first in PATH: use Debian's
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import json
import os
import sys
from fractions import Fraction

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bnb4_ref as R  # noqa: E402

f32 = np.float32
FAILS = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (("  " + detail) if detail else ""))
    if not ok:
        FAILS.append(name)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def ulps(a, b):
    """ulp distance of float32 arrays (sign-magnitude -> monotone ints)."""
    def key(x):
        i = bits(x).astype(np.int64)
        return np.where(i & 0x80000000, 0x80000000 - i, i)
    return np.abs(key(a) - key(b))


def codes_of(packed, n):
    q = np.empty(packed.size * 2, dtype=np.uint8)
    q[0::2], q[1::2] = packed >> 4, packed & 15
    return q[:n]


def test_tables():
    # 2.1 NF4 hex table
    nf4_hex = ("bf800000 bf3239b1 bf066b30 beca32a0 be91a24d be3d353f bdba7871 00000000 "
               "3da2faff 3e24cae3 3e7c04dd 3ead033a 3ee1a4b8 3f1007ab 3f3913b3 3f800000").split()
    check("NF4 = hex table 2.1", [f"{v:08x}" for v in bits(R.NF4)] == nf4_hex)
    check("NF4 decimal values 2.1", R.NF4[1] == f32(-0.6961928009986877)
          and R.NF4[8] == f32(0.07958029955625534) and R.NF4[14] == f32(0.7229568362236023))
    # 2.2 step 4: thresholds are the float32 midpoints (a+b)*0.5 in float32
    mid = (R.NF4[:-1] + R.NF4[1:]) * f32(0.5)
    check("NF4 thresholds = float32 midpoints of adjacent NF4", np.array_equal(bits(mid), bits(R.NF4_THRESHOLDS)))
    # 2.1 FP4: raw magnitudes / 12, rounded once to float32
    raw = [0, 0.0625, 8, 12, 4, 6, 2, 3]
    exp = np.array([r / 12 for r in raw], dtype=np.float32)
    check("FP4 codes 0..7 = raw/12", np.array_equal(bits(R.FP4[:8]), bits(exp)))
    check("FP4 hex 2.1", [f"{v:08x}" for v in bits(R.FP4[:8])] ==
          "00000000 3baaaaab 3f2aaaab 3f800000 3eaaaaab 3f000000 3e2aaaab 3e800000".split())
    check("FP4 codes 8..15 = negatives, code 8 = -0.0 (CUDA LUT)",
          np.array_equal(R.FP4[8:], -R.FP4[:8]) and bits(R.FP4[8:9])[0] == 0x80000000)
    check("FP4_QUANT_MAP code 8 = +0.0, rest = LUT",
          bits(R.FP4_QUANT_MAP[8:9])[0] == 0 and np.array_equal(np.delete(R.FP4_QUANT_MAP, 8), np.delete(R.FP4, 8)))
    # 2.2 step 5: the CUDA constants are the nearest float32 of their decimal
    # literal, and exactly five are not float32 midpoints.
    nearest = True
    for lit, c in zip(["0.29166667", "0.583333", "0.8333333", "0.4166667", "0.0859375", "0.20833333", "0.00260417"],
                      R._FP4_C.values()):
        d = Fraction(lit)
        nb = [np.nextafter(c, f32(-1)), c, np.nextafter(c, f32(2))]
        nearest &= min(nb, key=lambda v: abs(Fraction(float(v)) - d)) == c
    check("FP4 CUDA constants = float32(literal)", nearest)
    mags = np.sort(R.FP4[:8])
    mids = (mags[:-1] + mags[1:]) * f32(0.5)
    off = [int(ulps(np.array([c]), mids[np.argmin(np.abs(mids - c)):][:1])[0]) for c in R._FP4_C.values()]
    check("FP4: five CUDA constants are not exact midpoints (2.2)", sum(o != 0 for o in off) == 5, f"ulps off: {off}")


def build_dynamic_map(fma_linspace):
    """2.4 construction in float32: linspace(0.1, 1, 2^i+1), adjacent means,
    times 10^(i-6), both signs, + 0 and 1.0, sorted.  fma_linspace=True
    follows torch's CPU linspace (float32 step = (1f-0.1f)/(m-1); element k =
    start + step*k rounded once, i.e. FMA-contracted, the second half counted
    back from end); False uses np.linspace in float64 rounded to float32."""
    data = []
    for i in range(7):
        m = 2 ** i + 1
        if fma_linspace:
            s, e = f32(0.1), f32(1.0)
            step = f32((e - s) / f32(m - 1))
            b = np.array([f32(float(s) + float(step) * k) if k < m // 2
                          else f32(float(e) - float(step) * (m - 1 - k)) for k in range(m)], dtype=np.float32)
        else:
            b = np.linspace(0.1, 1.0, m).astype(np.float32)
        means = (b[:-1] + b[1:]) / f32(2)
        v = f32(10.0 ** (i - 6)) * means
        data += list(v) + list(-v)
    return np.array(sorted(data + [f32(0), f32(1)]), dtype=np.float32)


def test_dynamic_map():
    d = R.DYNAMIC_MAP
    check("dynamic map: 256 entries, strictly increasing", d.size == 256 and bool(np.all(np.diff(d) > 0)))
    check("dynamic map: [127]=0, [255]=1.0, [254]=0.99296874",
          d[127] == 0 and d[255] == 1 and d[254] == f32(0.99296874))
    check("dynamic map: [0] = -0.9929687 = -[254], no -1.0, mirror",
          abs(d[0] + 0.9929687) < 1e-7 and d[0] == -d[254] and not np.any(d == -1)
          and np.array_equal(d[:127], -d[128:255][::-1]))
    check("dynamic map: first positive 5.500000384e-07", f"{float(d[128]):.9e}" == "5.500000384e-07")
    for fma, label in ((True, "torch-CPU-style linspace (float32 step, FMA)"), (False, "np.linspace(float64)->float32")):
        u = ulps(build_dynamic_map(fma), d)
        hist = {int(k): int(c) for k, c in enumerate(np.bincount(u)) if c}
        print(f"     construction [{label}]: ulp histogram {{ulps: entries}} = {hist}")
        if fma:  # the published-table reproduction must be within 1 ulp
            check("dynamic map construction within 1 ulp of the hex table", int(u.max()) <= 1)


def test_quantize_hand():
    x = np.zeros(64, dtype=np.float32)
    x[:3] = [0.5, -1.0, 0.25]
    p, a = R.quantize_4bit(x, "nf4", 64)
    # absmax 1, s = x.  0.5: T0..T11 < 0.5 < T12=0.50166 -> 12; -1 -> 0;
    # 0.25: T9=0.2035 < 0.25 < T10=0.2920 -> 10; 0: T6 < 0 < T7 -> 7.
    check("NF4 hand block [0.5,-1,0.25,0..]", a.tolist() == [1.0] and p[:2].tolist() == [0xC0, 0xA7]
          and bool(np.all(p[2:] == 0x77)), " ".join(f"{v:02x}" for v in p[:3]))
    p, a = R.quantize_4bit(x, "fp4", 64)
    # 0.5: >.2917, !>.5833, >.4167 -> 101=5; -1: 8+011 = 11; 0.25: !>.2917,
    # >.0859, >.2083 -> 111=7; 0 -> 0.
    check("FP4 hand block [0.5,-1,0.25,0..]", p[:2].tolist() == [0x5B, 0x70] and bool(np.all(p[2:] == 0)),
          " ".join(f"{v:02x}" for v in p[:3]))
    # 2.2 step 3: s = x * fl(1/absmax), not x / absmax.  Find inputs where
    # the two land on different sides of an NF4 threshold and check the
    # module follows the multiply.
    cases = []
    for am in np.arange(3, 400, dtype=np.float32) / f32(3):
        inv = f32(1) / am
        for t in R.NF4_THRESHOLDS:
            x0 = f32(t * am)
            for xv in (np.nextafter(x0, f32(-9)), x0, np.nextafter(x0, f32(9))):
                sm, sd = xv * inv, xv / am
                if (sm > t) != (sd > t):
                    cases.append((am, xv, int(np.sum(sm > R.NF4_THRESHOLDS))))
    ok = len(cases) > 0
    for am, xv, code in cases:
        x = np.zeros(64, dtype=np.float32)
        x[0], x[1] = am, xv
        ok &= int(codes_of(R.quantize_4bit(x, "nf4", 64)[0], 2)[1]) == code
    check("NF4 uses x*(1/absmax), not x/absmax", ok, f"{len(cases)} distinguishing inputs")


def test_ties():
    ok = True
    for i, t in enumerate(R.NF4_THRESHOLDS):   # s == T[i] -> lower code i
        x = np.zeros(64, dtype=np.float32)
        x[0], x[1], x[2] = 1.0, t, np.nextafter(t, f32(2))
        q = codes_of(R.quantize_4bit(x, "nf4", 64)[0], 3)
        ok &= q.tolist() == [15, i, i + 1]
    check("NF4 ties: s == T[i] -> code i, next float up -> i+1 (all 15)", ok)
    ok = True
    # codes either side of each CUDA constant, read off the tree in 2.2
    lower = {"c002": 0b000, "c08": 0b001, "c20": 0b110, "c29": 0b111, "c41": 0b100, "c58": 0b101, "c83": 0b010}
    upper = {"c002": 0b001, "c08": 0b110, "c20": 0b111, "c29": 0b100, "c41": 0b101, "c58": 0b010, "c83": 0b011}
    for k, c in R._FP4_C.items():
        x = np.zeros(64, dtype=np.float32)
        x[0], x[1], x[2], x[3] = 1.0, c, np.nextafter(c, f32(2)), -c
        q = codes_of(R.quantize_4bit(x, "fp4", 64)[0], 4)
        ok &= q.tolist() == [3, lower[k], upper[k], 8 + lower[k]]
    check("FP4 ties: |s| == constant -> lower magnitude code (all 7, both signs)", ok)
    x = np.zeros(64, dtype=np.float32)
    x[0], x[1] = 1.0, -0.0
    check("FP4: -0.0 input -> code 0 (no sign)", codes_of(R.quantize_4bit(x, "fp4", 64)[0], 2).tolist() == [3, 0])


def test_zero_and_odd():
    x = np.zeros(130, dtype=np.float32)
    x[64:128] = np.linspace(-1, 1, 64)
    for qt in ("nf4", "fp4"):
        p, a = R.quantize_4bit(x, qt, 64)
        w = R.dequantize(p, a, qt, 64, x.size, "float32")
        check(f"{qt}: all-zero blocks -> bytes 0x00, absmax 0",
              a[0] == 0 and a[2] == 0 and bool(np.all(p[:32] == 0)) and bool(np.all(p[64:] == 0)))
        check(f"{qt}: zero block dequantizes to 0 (NF4 code 0 gives -0.0)",
              bool(np.all(w[:64] == 0)) and bool(np.all(np.signbit(w[:64]) == (qt == "nf4"))))
    x = np.array([0.5, -1.0, 0.25, 0.1, -0.2], dtype=np.float32)
    p, a = R.quantize_4bit(x, "nf4", 64)
    check("NF4 odd n: 3 bytes, pad nibble 7", p.size == 3 and (p[2] & 15) == 7, f"last byte {p[2]:02x}")
    p, a = R.quantize_4bit(x, "fp4", 64)
    check("FP4 odd n: pad nibble 0", p.size == 3 and (p[2] & 15) == 0, f"last byte {p[2]:02x}")
    x = np.zeros(67, dtype=np.float32)
    x[:64] = 1.0
    p, a = R.quantize_4bit(x, "nf4", 64)
    check("NF4 odd n, zero last block: pad nibble 0 (NaN path)", p.size == 34 and p[33] == 0 and a[1] == 0)


def nearest_ok(s, code, lut, slack):
    """lut[code] is (up to slack) a nearest table entry to s."""
    d = np.abs(lut[code].astype(np.float64) - s)
    best = np.min(np.abs(lut.astype(np.float64)[None, :] - s[:, None]), axis=1)
    return bool(np.all(d <= best + slack))


def test_roundtrip():
    rng = np.random.default_rng(1)
    for qt, lut in (("nf4", R.NF4), ("fp4", R.FP4)):
        gaps = np.diff(np.sort(lut))
        for bs in (32, 64, 128, 256, 4096):
            x = (rng.standard_normal(3 * bs + 37) * 0.02).astype(np.float32)
            x[5] = 0.0
            p, a = R.quantize_4bit(x, qt, bs)
            w = R.dequantize(p, a, qt, bs, x.size, "float32")
            am = a[np.arange(x.size) // bs].astype(np.float64)
            err = np.abs(w.astype(np.float64) - x)
            bound = am * gaps.max() / 2 + am * 1e-6
            s = (x * (f32(1) / a)[np.arange(x.size) // bs]).astype(np.float64)
            q = codes_of(p, x.size)
            ok = bool(np.all(err <= bound)) and nearest_ok(s, q, lut, 2e-6 if qt == "fp4" else 1.2e-7)
            ok &= a.size == -(-x.size // bs) and np.array_equal(a, np.array(
                [np.max(np.abs(x[i:i + bs])) for i in range(0, x.size, bs)], dtype=np.float32))
            check(f"{qt} bs={bs} n={x.size}: absmax, nearest code, |w-x| <= absmax*maxgap/2", ok,
                  f"max rel err {float(np.max(err / am)):.4f}")


def test_dynamic_search():
    d = R.DYNAMIC_MAP
    m = (d[127] + d[128]) * f32(0.5)
    q = R.dquantize_dynamic(np.array([m, -m, 1.0, -1.0, np.nan, 0.0, d[200], d[3]], dtype=np.float32))
    # hand-traced through the CUDA search (2.3): +mid(127,128) ends at pivot
    # 128 with x < val -> lower test not strict -> 128; -mid ends at 126 with
    # x > val -> upper test not strict -> 126.
    check("dQuantize literal: mid(127,128) -> 128, -mid -> 126, +-1 -> 255/0, NaN -> 0, exact -> itself",
          q.tolist() == [128, 126, 255, 0, 0, 127, 200, 3], str(q.tolist()))
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.uniform(-1, 1, 20000), rng.uniform(-1e-3, 1e-3, 20000)]).astype(np.float32)
    check("dQuantize picks a nearest map entry (40000 random)", nearest_ok(s.astype(np.float64),
          R.dquantize_dynamic(s), d, 1.2e-7))


def test_double_quant():
    rng = np.random.default_rng(3)
    absmax = (np.abs(rng.standard_normal(1000)) * 0.05 + 0.001).astype(np.float32)
    codes, a2, off = R.double_quant(absmax)
    seq = 0.0
    for v in absmax:
        seq += float(v)
    check("double quant: shapes, offset = f32(sequential f64 sum / nb)",
          codes.dtype == np.uint8 and codes.size == 1000 and a2.size == 4 and off == f32(seq / 1000)
          and isinstance(off, np.float32))
    # Sequential vs pairwise: [1, 2^-24, 14 x 2^-54].  In index order every
    # 2^-54 is lost against 1+2^-24 (< half an ulp), leaving the exact float32
    # tie (1+2^-24)/16 -> even -> 0.0625; a pairwise sum keeps them and rounds up.
    tie = np.array([1.0, 2.0 ** -24] + [2.0 ** -54] * 14, dtype=np.float32)
    pw = np.float32(np.sum(tie.astype(np.float64)) / 16)
    check("double quant: offset summed sequentially (constructed tie case)",
          R.double_quant(tie)[2] == f32(0.0625), f"np.sum (pairwise) would give {float(pw)!r}")
    ok = True
    for seed in range(20):  # a float32 sum would drift from these
        am = np.abs(np.random.default_rng(100 + seed).standard_normal(3000)).astype(np.float32)
        acc = 0.0
        for v in am:
            acc += float(v)
        ok &= R.double_quant(am)[2] == f32(acc / 3000)
    check("double quant: offset = Python-loop float64 mean (20 random nb=3000)", ok)
    a = absmax - off
    check("double quant: nested_absmax = max|absmax - offset| per 256",
          np.array_equal(a2, np.array([np.max(np.abs(a[i:i + 256])) for i in range(0, 1000, 256)], dtype=np.float32)))
    s = (a * (f32(1) / a2)[np.arange(1000) // 256]).astype(np.float64)
    i = codes.astype(np.int64)
    d = R.DYNAMIC_MAP.astype(np.float64)
    step = np.maximum(d[np.minimum(i + 1, 255)] - d[i], d[i] - d[np.maximum(i - 1, 0)])
    check("double quant: codes decode within one map step of s", bool(np.all(np.abs(d[i] - s) <= step)))
    absf = R.DYNAMIC_MAP[codes] * a2[np.arange(1000) // 256] + off
    g = float(np.max(np.diff(R.DYNAMIC_MAP)))
    check("double quant: |decoded absmax - absmax| <= absmax2*maxgap/2",
          bool(np.all(np.abs(absf.astype(np.float64) - absmax) <= a2[np.arange(1000) // 256] * g / 2 + 1e-7)))
    c1, a21, off1 = R.double_quant(np.array([0.37], dtype=np.float32))
    p = np.zeros(32, dtype=np.uint8)
    w = R.dequantize(p, c1, "nf4", 64, 64, "float32", a21, off1)
    check("double quant nb=1: code 0 (NaN path), absmax2 0, decodes to absmax exactly",
          c1.tolist() == [0] and a21.tolist() == [0.0] and off1 == f32(0.37) and bool(np.all(w == -f32(0.37))))


def test_json_config():
    js = R.quant_state_json("nf4", 64, "bfloat16", [4096, 4096], False)
    check("JSON non-nested literal (2.6)",
          js == b'{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096]}', js.decode())
    js = R.quant_state_json("nf4", 64, "bfloat16", (4096, 4096), True, f32(0.024703405797481537))
    check("JSON nested literal (2.6)", js == (b'{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", '
          b'"shape": [4096, 4096], "nested_blocksize": 256, "nested_dtype": "float32", '
          b'"nested_offset": 0.024703405797481537}'))
    js = R.quant_state_json("fp4", 128, "float16", [np.int64(3), 5], True, f32(1e-5))
    check("JSON repr of float32 offset 1e-5 (exponent form)", js.endswith(b'"nested_offset": 9.999999747378752e-06}'),
          js.decode())
    cfg = json.dumps({"quantization_config": R.quantization_config("nf4", True, "bfloat16", None)},
                     indent=2, sort_keys=True)
    exp = """{
  "quantization_config": {
    "_load_in_4bit": true,
    "_load_in_8bit": false,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_storage": "uint8",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": true,
    "llm_int8_enable_fp32_cpu_offload": false,
    "llm_int8_has_fp16_weight": false,
    "llm_int8_skip_modules": null,
    "llm_int8_threshold": 6.0,
    "load_in_4bit": true,
    "load_in_8bit": false,
    "quant_method": "bitsandbytes"
  }
}"""
    check("quantization_config = 2.9 literal", cfg == exp)
    c = R.quantization_config("fp4", False, "float16", ["lm_head", "model.layers.1.mlp"])
    check("quantization_config skip list / fp4 / no double", c["llm_int8_skip_modules"] == ["lm_head", "model.layers.1.mlp"]
          and c["bnb_4bit_quant_type"] == "fp4" and c["bnb_4bit_use_double_quant"] is False)


def test_bf16_and_dtypes():
    src = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0xBF808000, 0x7F7FFFFF,
                    0x7F7F7FFF, 0x00008000, 0x00018000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001],
                   dtype=np.uint32).view(np.float32)
    exp = [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0xBF80, 0x7F80, 0x7F7F, 0x0000, 0x0002, 0x7F80, 0xFF80]
    got = R.f32_to_bf16_bits(src)
    check("bf16 RNE: ties to even, above/below tie, overflow -> inf, subnormal ties",
          got[:11].tolist() == exp, " ".join(f"{v:04x}" for v in got))
    check("bf16 NaN stays NaN", bool(np.all(np.isnan(R.bf16_bits_to_f32(got[11:])))))
    check("bf16 -> f32 = bits << 16", R.bf16_bits_to_f32(np.array([0x3F80, 0xC040], dtype=np.uint16)).tolist() == [1.0, -3.0])
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(301) * 3).astype(np.float32)
    p, a = R.quantize_4bit(x, "nf4", 64)
    w32 = R.dequantize(p, a, "nf4", 64, 301, "float32")
    w16 = R.dequantize(p, a, "nf4", 64, 301, "float16")
    wbf = R.dequantize(p, a, "nf4", 64, 301, "bfloat16")
    check("dequant out dtypes: n values, f16 = astype, bf16 = RNE bits",
          w32.size == 301 and w16.dtype == np.float16 and np.array_equal(w16, w32.astype(np.float16))
          and wbf.dtype == np.uint16 and np.array_equal(wbf, R.f32_to_bf16_bits(w32)))
    check("dequant uses CUDA FP4 LUT (code 8 -> -0.0), not quant_map",
          np.signbit(R.dequantize(np.array([0x80], dtype=np.uint8), np.array([2.0], dtype=np.float32),
                                  "fp4", 64, 1, "float32"))[0])


def test_state():
    rng = np.random.default_rng(5)
    w = R.bf16_bits_to_f32(R.f32_to_bf16_bits((rng.standard_normal((6, 45)) * 0.03).astype(np.float32))).reshape(6, 45)
    n = w.size  # 270 -> nb 5 at bs 64
    st = R.linear4bit_state("model.layers.0.mlp.up_proj", w, "bfloat16")
    k = "model.layers.0.mlp.up_proj.weight"
    exp = [(k, "U8", [135, 1]), (k + ".absmax", "U8", [5]), (k + ".quant_map", "F32", [16]),
           (k + ".nested_absmax", "F32", [1]), (k + ".nested_quant_map", "F32", [256])]
    check("state (nested): keys, dtypes, shapes in 2.6 order",
          [e[:3] for e in st[:5]] == exp and st[5][0] == k + ".quant_state.bitsandbytes__nf4"
          and st[5][1] == "U8" and st[5][2] == [len(st[5][3])])
    check("state: byte sizes match shapes",
          all(len(b) == int(np.prod(s)) * (4 if dt == "F32" else 1) for _, dt, s, b in st))
    meta = json.loads(st[5][3])
    packed = np.frombuffer(st[0][3], dtype=np.uint8)
    codes = np.frombuffer(st[1][3], dtype=np.uint8)
    na = np.frombuffer(st[3][3], dtype="<f4")
    nm = np.frombuffer(st[4][3], dtype="<f4")
    out = R.dequantize(packed, codes, meta["quant_type"], meta["blocksize"], int(np.prod(meta["shape"])),
                       meta["dtype"], na, np.float32(meta["nested_offset"]), nm)
    p2, a2 = R.quantize_4bit(w.ravel(), "nf4", 64)
    c2, n2, o2 = R.double_quant(a2)
    check("state: JSON offset round-trips; bytes reload = direct dequant",
          meta["shape"] == [6, 45] and np.float32(meta["nested_offset"]) == o2 and np.array_equal(packed, p2)
          and np.array_equal(out, R.dequantize(p2, c2, "nf4", 64, n, "bfloat16", n2, o2)))
    wf = R.bf16_bits_to_f32(out)
    check("state: reloaded bf16 weight close to original",
          bool(np.all(np.abs(wf - w.ravel()) <= np.repeat(a2, 64)[:n] * 0.15)))
    st = R.linear4bit_state("x", w, "float32", "fp4", 128, False)
    check("state (fp4, plain): F32 absmax, FP4 stored quant_map (+0 at 8), __fp4, 4 entries",
          [e[:3] for e in st] == [("x.weight", "U8", [135, 1]), ("x.weight.absmax", "F32", [3]),
                                  ("x.weight.quant_map", "F32", [16]),
                                  ("x.weight.quant_state.bitsandbytes__fp4", "U8", [len(st[3][3])])]
          and st[2][3] == R.FP4_QUANT_MAP.astype("<f4").tobytes() and st[2][3][32:36] == b"\0\0\0\0"
          and json.loads(st[3][3]) == {"quant_type": "fp4", "blocksize": 128, "dtype": "float32", "shape": [6, 45]})


def main():
    for t in (test_tables, test_dynamic_map, test_quantize_hand, test_ties, test_zero_and_odd,
              test_roundtrip, test_dynamic_search, test_double_quant, test_json_config,
              test_bf16_and_dtypes, test_state):
        print(f"-- {t.__name__}")
        try:
            t()
        except Exception as e:  # a crash is a failure, keep going
            import traceback
            traceback.print_exc()
            check(t.__name__ + " raised", False, repr(e))
    print(f"{len(FAILS)} failure(s)" + (": " + ", ".join(FAILS) if FAILS else ""))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

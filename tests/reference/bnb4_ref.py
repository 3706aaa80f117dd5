#!/usr/bin/env python3
"""Independent reference for bitsandbytes 4-bit (NF4 / FP4) quantization,
written from the published algorithm (shared/reference/formats.md sections
2.1-2.9: the CUDA kernels kQuantizeBlockwise / dQuantizeNF4 / dQuantizeFP4 /
dQuantize<0>), not from smelt's C code.  numpy only, pure functions.

Conventions (all float arithmetic is float32 unless stated, one rounding per
operation, never fused, exactly as the CUDA kernels do):
* quantize: per block absmax = max|x|; inv = 1/absmax; s = x*inv (reciprocal
  then multiply, no clamping); NF4 code = #{T : s > T} (strict, ties go to the
  lower code, NaN -> 0); FP4 by the CUDA constant tree; even element in the
  high nibble.  An all-zero block gives inv = inf, 0*inf = NaN -> code 0
  (bytes 0x00), as CUDA does (2.2 "Edge cases").
* double quant (2.3): offset = float32(sequential float64 sum / nb);
  256-blocks of absmax - offset against the signed dynamic map with the
  literal CUDA binary search.
* dequant (2.5): nested absmax = map[code]*absmax2 then + offset (two
  roundings); w = LUT4[nibble]*absmax; rounded once to the output dtype.

Not modelled: NaN inputs to absmax (cub's Max reduction order), the CPU /
default torch backends (which differ on zero blocks and partial blocks).
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

import numpy as np

F32 = np.float32


def _hex_f32(words):
    """float32 array from big-endian-written hex bit patterns ("3f800000")."""
    return np.array([int(w, 16) for w in words], dtype=np.uint32).view(np.float32)


# --- 2.1 code tables -------------------------------------------------------

# NF4, index = code (sorted, no sign bit).
NF4 = _hex_f32("""bf800000 bf3239b1 bf066b30 beca32a0 be91a24d be3d353f bdba7871 00000000
                 3da2faff 3e24cae3 3e7c04dd 3ead033a 3ee1a4b8 3f1007ab 3f3913b3 3f800000""".split())

# FP4 magnitudes by the low 3 bits (raw 0, .0625, 8, 12, 4, 6, 2, 3 over 12).
_FP4_POS = _hex_f32("00000000 3baaaaab 3f2aaaab 3f800000 3eaaaaab 3f000000 3e2aaaab 3e800000".split())
# CUDA dequant LUT: bit 3 is the sign, so code 8 is -0.0.
FP4 = np.concatenate([_FP4_POS, -_FP4_POS]).astype(np.float32)
# The stored weight.quant_map: Python's literal -0 is the integer 0, so +0.0.
FP4_QUANT_MAP = FP4.copy()
FP4_QUANT_MAP[8] = F32(0.0)

# 2.2 step 4: NF4 decision thresholds (the float32 midpoints of NF4).
NF4_THRESHOLDS = _hex_f32("""bf591cd8 bf1c5270 beeb8480 beadea76 be703cec be0d38bc bd3a7871
                            3d22faff 3df64862 3e5067e0 3e9582d4 3ec753f9 3f006d04 3f248daf
                            3f5c89da""".split())

# 2.2 step 5: the CUDA dQuantizeFP4 constants (float literals, 'f' suffix);
# five are not exact midpoints, which is the point of using them.
_FP4_C = {k: F32(v) for k, v in dict(
    c29=0.29166667, c58=0.583333, c83=0.8333333, c41=0.4166667,
    c08=0.0859375, c20=0.20833333, c002=0.00260417).items()}

# --- 2.4 signed dynamic 8-bit map -----------------------------------------

_DYN_POS = _hex_f32("""
3513a3b7 365a1a94 370205ff 37b24206 38378034 388aefb3 38ba1f4b 3923d70b
398ce705 39c7e283 3a016f01 3a1eecc1 3a3c6a80 3a59e83e 3a7765ff 3aa7ef9d
3af1a9fc 3b1db22d 3b428f5c 3b676c8a 3b8624dd 3b989374 3bab020d 3bbd70a4
3bcfdf3b 3be24dd3 3bf4bc6a 3c039581 3c0ccccd 3c160418 3c1f3b64 3c3ae148
3c68f5c3 3c8b851f 3ca28f5d 3cb9999a 3cd0a3d7 3ce7ae15 3cfeb852 3d0ae148
3d166667 3d21eb85 3d2d70a3 3d38f5c3 3d447ae1 3d500000 3d5b851f 3d670a3d
3d728f5d 3d7e147b 3d84cccd 3d8a8f5d 3d9051eb 3d96147b 3d9bd70a 3da1999a
3da75c2a 3dad1eb8 3db2e148 3db8a3d7 3dbe6667 3dc428f7 3dc9eb85 3ddb3334
3df80000 3e0a6666 3e18cccd 3e273333 3e35999a 3e440000 3e526666 3e60cccd
3e6f3333 3e7d9999 3e860000 3e8d3334 3e946666 3e9b999a 3ea2cccc 3eaa0000
3eb13333 3eb86666 3ebf999a 3ec6cccc 3ece0000 3ed53333 3edc6666 3ee3999a
3eeacccc 3ef20000 3ef93332 3f003333 3f03cccc 3f076666 3f0b0000 3f0e999a
3f123334 3f15cccd 3f196666 3f1d0000 3f20999a 3f243334 3f27cccd 3f2b6666
3f2f0000 3f32999a 3f363334 3f39cccd 3f3d6666 3f410000 3f44999a 3f483333
3f4bcccd 3f4f6666 3f530000 3f56999a 3f5a3333 3f5dcccd 3f616666 3f650000
3f68999a 3f6c3333 3f6fcccd 3f736666 3f770000 3f7a999a 3f7e3333 3f800000""".split())
# index 128..255 = _DYN_POS, 127 = 0, 127-k = -value[127+k] (k = 1..127):
# the negatives mirror 128..254 only, so index 0 = -0.99296874 and no -1.0.
DYNAMIC_MAP = np.concatenate([-_DYN_POS[:127][::-1], [F32(0.0)], _DYN_POS]).astype(np.float32)
assert DYNAMIC_MAP.shape == (256,)

# --- bf16 helpers (section 5 item 3) ---------------------------------------


def f32_to_bf16_bits(a):
    """float32 -> bf16 bit patterns (uint16), round to nearest even.  NaN ->
    0x7FC0 (c10's canonical quiet NaN); overflow rounds to +-inf naturally."""
    b = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    r = np.where(np.isnan(np.asarray(a, dtype=np.float32)), 0x7FC0, r)
    return r.astype(np.uint16)


def bf16_bits_to_f32(bits):
    """bf16 bit patterns -> float32 (exact: bits << 16)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# --- 2.2 quantization -------------------------------------------------------


def _nf4_codes(s):
    # dQuantizeNF4: count of strict s > T.  NaN compares false -> 0.
    q = np.zeros(s.shape, dtype=np.uint8)
    for t in NF4_THRESHOLDS:
        q += (s > t)
    return q


def _fp4_codes(s):
    # dQuantizeFP4: sign bit for s < 0 (not -0.0, not NaN), tree on |s|.
    c = _FP4_C
    sign = np.where(s < 0, 8, 0).astype(np.uint8)
    a = np.abs(s)
    hi = np.where(a > c["c58"], np.where(a > c["c83"], 0b011, 0b010),
                  np.where(a > c["c41"], 0b101, 0b100))
    lo = np.where(a > c["c08"], np.where(a > c["c20"], 0b111, 0b110),
                  np.where(a > c["c002"], 0b001, 0b000))
    return (np.where(a > c["c29"], hi, lo) + sign).astype(np.uint8)


def _blocks(x, bs):
    """Pad x with +0.0 to whole blocks and reshape [nb, bs]; the pads change
    neither max|x| nor anything else (CUDA's BlockLoad pads with 0 too)."""
    n = x.size
    nb = -(-n // bs)
    p = np.zeros(nb * bs, dtype=np.float32)
    p[:n] = x
    return p.reshape(nb, bs)


def quantize_4bit(x, quant_type, blocksize):
    """-> (packed uint8[(n+1)//2], absmax float32[nb]).  2.2 steps 1-6."""
    x = np.asarray(x, dtype=np.float32).ravel()
    n = x.size
    blk = _blocks(x, blocksize)
    absmax = np.fmax.reduce(np.abs(blk), axis=1)        # fmaxf(fabsf(x))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = F32(1.0) / absmax                          # 0 -> +inf
        s = blk * inv[:, None]                           # 0*inf -> NaN -> code 0
    q = (_nf4_codes(s) if quant_type == "nf4" else _fp4_codes(s)).ravel()
    # Odd n: the pad nibble is the code of the 0.0 at index n, which lies in
    # the last block (n odd, blocksize even), i.e. already in q.
    q = q[:n + (n & 1)]
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8)
    return packed, absmax.astype(np.float32)


# --- 2.3 double quantization -----------------------------------------------


def dquantize_dynamic(x, code=DYNAMIC_MAP):
    """Literal vectorized port of CUDA dQuantize<0> (2.3): 7-step binary
    search then a float32 midpoint test; exact midpoints resolve to pivot."""
    x = np.asarray(x, dtype=np.float32)
    code = np.asarray(code, dtype=np.float32)
    pivot = np.full(x.shape, 127, dtype=np.int64)
    upper_pivot = np.full(x.shape, 255, dtype=np.int64)
    lower_pivot = np.zeros(x.shape, dtype=np.int64)
    lower = np.full(x.shape, -1.0, dtype=np.float32)
    upper = np.full(x.shape, 1.0, dtype=np.float32)
    val = code[pivot]
    for i in (64, 32, 16, 8, 4, 2, 1):
        gt = x > val
        lower_pivot = np.where(gt, pivot, lower_pivot)
        lower = np.where(gt, val, lower)
        upper_pivot = np.where(gt, upper_pivot, pivot)
        upper = np.where(gt, upper, val)
        pivot = np.where(gt, pivot + i, pivot - i)
        val = code[pivot]
    upper = np.where(upper_pivot == 255, code[255], upper)
    lower = np.where(lower_pivot == 0, code[0], lower)
    half = F32(0.5)
    gt = x > val
    r = np.where(gt,
                 np.where(x > (upper + val) * half, upper_pivot, pivot),
                 np.where(x < (lower + val) * half, lower_pivot, pivot))
    return r.astype(np.uint8)


def double_quant(absmax):
    """-> (codes uint8[nb], nested_absmax float32[ceil(nb/256)], offset f32)."""
    absmax = np.asarray(absmax, dtype=np.float32)
    nb = absmax.size
    # torch's mean is a tree reduction; 2.3 says any float32 offset is fine
    # as long as it is the one written.  Ours: sequential float64 sum / nb,
    # rounded once (C-reproducible; np.sum would be pairwise).
    offset = F32(np.cumsum(absmax, dtype=np.float64)[-1] / nb)
    a = absmax - offset
    blk = _blocks(a, 256)
    absmax2 = np.fmax.reduce(np.abs(blk), axis=1).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv2 = F32(1.0) / absmax2
        s = blk * inv2[:, None]        # 0*inf = NaN -> code 0 (e.g. nb == 1)
    codes = dquantize_dynamic(s).ravel()[:nb]
    return codes, absmax2, offset


# --- 2.5 dequantization ----------------------------------------------------


def dequantize(packed, absmax_or_codes, quant_type, blocksize, n, out_dtype,
               nested_absmax=None, offset=None, nested_map=DYNAMIC_MAP):
    """First n dequantized values: float32 / float16 arrays, or for
    "bfloat16" uint16 bit patterns (RNE)."""
    packed = np.asarray(packed, dtype=np.uint8).ravel()
    if nested_absmax is not None:
        codes = np.asarray(absmax_or_codes, dtype=np.uint8)
        nm = np.asarray(nested_map, dtype=np.float32)
        na = np.asarray(nested_absmax, dtype=np.float32)
        absf = nm[codes] * na[np.arange(codes.size) // 256]   # float32 mul
        absf = absf + F32(offset)                            # separate add
    else:
        absf = np.asarray(absmax_or_codes, dtype=np.float32)
    nib = np.empty(packed.size * 2, dtype=np.uint8)
    nib[0::2] = packed >> 4
    nib[1::2] = packed & 0xF
    nib = nib[:n]
    lut = NF4 if quant_type == "nf4" else FP4    # built-in table, not quant_map
    w = lut[nib] * absf[np.arange(n) // blocksize]
    if out_dtype == "float32":
        return w
    if out_dtype == "float16":
        return w.astype(np.float16)                 # IEEE RNE, overflow -> inf
    if out_dtype == "bfloat16":
        return f32_to_bf16_bits(w)
    raise ValueError(out_dtype)


# --- 2.6 serialized state ---------------------------------------------------


def quant_state_json(quant_type, blocksize, dtype_name, shape, nested, offset=None):
    """UTF-8 bytes of json.dumps(as_dict non-tensor items), key order of 2.6;
    default separators; nested_offset is the float32 value printed by repr."""
    d = {"quant_type": quant_type, "blocksize": int(blocksize),
         "dtype": dtype_name, "shape": [int(v) for v in shape]}
    if nested:
        d["nested_blocksize"] = 256
        d["nested_dtype"] = "float32"
        d["nested_offset"] = float(F32(offset))
    return json.dumps(d).encode("utf-8")


def linear4bit_state(prefix, w, dtype_name, quant_type="nf4", blocksize=64, double=True):
    """[(key, safetensors dtype, shape, raw little-endian bytes)] for one
    Linear4bit in state-dict order (2.6; no bias)."""
    w = np.asarray(w, dtype=np.float32)
    n = w.size
    packed, absmax = quantize_4bit(w.ravel(), quant_type, blocksize)
    nb = absmax.size
    k = prefix + ".weight"
    out = [(k, "U8", [(n + 1) // 2, 1], packed.tobytes())]
    qmap = NF4 if quant_type == "nf4" else FP4_QUANT_MAP
    if double:
        codes, absmax2, offset = double_quant(absmax)
        out.append((k + ".absmax", "U8", [nb], codes.tobytes()))
    else:
        offset = None
        out.append((k + ".absmax", "F32", [nb], absmax.astype("<f4").tobytes()))
    out.append((k + ".quant_map", "F32", [16], qmap.astype("<f4").tobytes()))
    if double:
        out.append((k + ".nested_absmax", "F32", [absmax2.size], absmax2.astype("<f4").tobytes()))
        out.append((k + ".nested_quant_map", "F32", [256], DYNAMIC_MAP.astype("<f4").tobytes()))
    js = quant_state_json(quant_type, blocksize, dtype_name, list(w.shape), double, offset)
    out.append((k + ".quant_state.bitsandbytes__" + quant_type, "U8", [len(js)], js))
    return out


# --- 2.9 config.json quantization_config ----------------------------------


def quantization_config(quant_type, double, compute_dtype, skip_modules):
    """BitsAndBytesConfig.to_dict() for a 4-bit model (dump with sort_keys)."""
    return {
        "_load_in_4bit": True,
        "_load_in_8bit": False,
        "bnb_4bit_compute_dtype": compute_dtype,
        "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": quant_type,
        "bnb_4bit_use_double_quant": bool(double),
        "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": False,
        "llm_int8_skip_modules": None if skip_modules is None else list(skip_modules),
        "llm_int8_threshold": 6.0,
        "load_in_4bit": True,
        "load_in_8bit": False,
        "quant_method": "bitsandbytes",
    }

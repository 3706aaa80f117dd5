#!/usr/bin/env python3
"""Independent forward pass of Hugging Face causal language models, written
from the transformers model definitions (modeling_llama.py, modeling_mistral.py,
modeling_qwen2.py, modeling_qwen3.py, modeling_gemma.py, modeling_gemma2.py,
modeling_gemma3.py, modeling_phi3.py and modeling_rope_utils.py), not from
llama.cpp or smelt.  It reads the ORIGINAL safetensors and merges the LoRA
adapters with tests/reference/merge_ref.py's math, and returns the logits
[n_tokens, vocab] of one token sequence (positions 0..n-1, no padding).

Precision.  Everything is computed in float64 from the float32 merged
weights.  transformers itself would run in the checkpoint dtype (bf16) or in
float32; llama.cpp runs in float32 with its own summation orders.  A float64
pass is the exact value of the model's formulas up to ~1e-15, so that the
difference to llama.cpp's float32 result (~1e-6 relative) is entirely
llama.cpp's rounding and the 1e-4 requirement of the GGUF test is tested with
a clean margin; a float32 reference would add its own 1e-6-level noise of
unknown sign.

Where transformers' result depends on the dtype it runs in, the float32
behaviour is taken (what llama.cpp's F32 path does too):
* Gemma embedding scale sqrt(hidden_size): float32 (in bf16 HF rounds it,
  e.g. sqrt(3072) = 55.4256 -> 55.5; the test models use hidden 64, where
  sqrt is 8 exactly and every dtype agrees).
* Gemma (1 + w) norm weights: 1.0 + w in float32, as GemmaRMSNorm and the
  GGUF converter both do.

Semantics implemented (HF):
* RMSNorm x / sqrt(mean(x^2) + eps) * w (llama, mistral, qwen2/3, phi3) or
  * (1 + w) (gemma, gemma2, gemma3, including gemma3's q_norm/k_norm).
* RoPE in the rotate-half layout on the first rotary_dim = head_dim *
  partial_rotary_factor dims of each head; rope_type default, linear,
  llama3, longrope (short factors while seq_len <= original_max_position_
  embeddings, long beyond; cos/sin scaled by the attention factor
  sqrt(1 + ln(max_pos/orig)/ln(orig))).  gemma3: sliding layers use
  rope_local_base_freq with default RoPE, full layers rope_theta with
  rope_scaling.
* Attention: GQA with kv head j serving query heads j*n_rep .. (j+1)*n_rep-1
  (repeat_kv), scale head_dim^-0.5 or query_pre_attn_scalar^-0.5 (gemma2/3),
  tanh soft-capping of the scores (gemma2), causal mask plus sliding window
  (key k visible from query q iff 0 <= q - k < sliding_window) on gemma2's
  even layers, gemma3's layer_types, mistral when sliding_window is set,
  qwen2/3 when use_sliding_window and layer >= max_window_layers, phi3 when
  sliding_window is set.
* MLP down(act(gate(x)) * up(x)); phi3's fused gate_up_proj is [gate; up].
  act: silu, or gelu_pytorch_tanh (gemma family).
* gemma family: embeddings * sqrt(hidden); gemma2/3 post-attention and
  pre/post-feedforward norms; final tanh soft-capping of the logits.
* Tied embeddings: lm_head = embed_tokens when tie_word_embeddings (the
  class default: gemma* true, others false) or when lm_head is absent.

Emulation switches for the GGUF test (all off by default = pure HF math):
* weight_type f16 / bf16 / q8_0: every 2-D weight rounded as the GGUF stores
  it (RNE to f16/bf16; Q8_0 per 32-block as quantize_row_q8_0_ref, F16 when
  the row length is not a multiple of 32); 1-D tensors stay float32.
* act_round: the input of every matrix product with such a weight rounded to
  the type llama.cpp's CPU backend converts activations to before the dot
  products (its vec_dot_type: F16 -> f16, BF16 -> bf16, Q8_0 -> Q8_0 blocks,
  the x86 quantize_row_q8_0: id = 127/amax, round half to even), and RMS
  norms in ggml's float32 arithmetic (ggml_rms_norm below: without it the
  first layer's Q8_0 inputs of bf16 checkpoints meet exact rounding ties).
* gelu="ggml": llama.cpp's CPU GELU, a lookup of the fp16-rounded input in a
  table of fp16-rounded gelu_tanh values (GGML_GELU_FP16 in ggml-cpu/vec.h),
  0 below -10 and the identity above 10.  It is 1e-3-relative coarse: gemma
  logits move by 1.4e-4..7.6e-4 with it, so a 1e-4 comparison needs it.
* noise_seed / noise_scale: every matrix product's output perturbed by
  noise_scale x its typical float32 summation error (2^-24 sqrt(sum of the
  squared products) N(0,1)).  The GGUF test uses it to estimate how far
  rounding-boundary flips (a float32 value on the other side of an fp16 /
  bf16 / Q8_0 / GELU-table step than the float64 one) can move the logits.

Measured against llama.cpp (the prebuilt libraries of the reference commit,
files converted independently with gguf-py), 11 families x 6 seeds: F32
files agree to <= 6e-7 (gemma*: <= 2e-4 with gelu="ggml", table-step flips);
F16/BF16/Q8_0 files agree with weight_type + act_round to ~1e-7 except for
flips, which stayed below 1.4x the noise_scale=4 estimate.

    hf_forward.py MODEL_DIR [--adapter DIR[:WEIGHT]]... --tokens 1,2,3
                  [--weight-type f32|f16|bf16|q8_0] [--act-round] [--gelu exact|ggml]
                  [--out FILE.f32]
    hf_forward.py --selftest [--workdir DIR]
"""

import importlib

try:  # numpy/torch live in Debian's /usr/bin/python3 only
    importlib.import_module('torch')
except ImportError:  # e.g. a pyenv python3 first in PATH: use Debian's
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import merge_ref  # noqa: E402

F64 = torch.float64

# ---------------------------------------------------------------------------
# configuration, with the defaults of the transformers config classes
# ---------------------------------------------------------------------------

#: model_type -> (family, defaults of its transformers config class)
ARCH_DEFAULTS = {
    "llama": ("llama", dict(rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False,
                            mlp_bias=False, tie_word_embeddings=False, hidden_act="silu")),
    "mistral": ("llama", dict(rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=4096,
                              tie_word_embeddings=False, hidden_act="silu")),
    "qwen2": ("qwen2", dict(rms_norm_eps=1e-6, rope_theta=10000.0, use_sliding_window=False,
                            sliding_window=4096, max_window_layers=28,
                            tie_word_embeddings=False, hidden_act="silu")),
    "qwen3": ("qwen3", dict(rms_norm_eps=1e-6, rope_theta=10000.0, head_dim=128,
                            attention_bias=False, use_sliding_window=False,
                            sliding_window=4096, max_window_layers=28,
                            tie_word_embeddings=False, hidden_act="silu")),
    "gemma": ("gemma", dict(rms_norm_eps=1e-6, rope_theta=10000.0, head_dim=256,
                            tie_word_embeddings=True, attention_bias=False,
                            hidden_activation=None, hidden_act="gelu_pytorch_tanh")),
    "gemma2": ("gemma2", dict(rms_norm_eps=1e-6, rope_theta=10000.0, head_dim=256,
                              query_pre_attn_scalar=256, sliding_window=4096,
                              final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                              tie_word_embeddings=True, attention_bias=False,
                              hidden_activation="gelu_pytorch_tanh")),
    "gemma3_text": ("gemma3", dict(rms_norm_eps=1e-6, rope_theta=1000000.0, head_dim=256,
                                   rope_local_base_freq=10000.0, query_pre_attn_scalar=256,
                                   sliding_window=4096, sliding_window_pattern=6,
                                   final_logit_softcapping=None, attn_logit_softcapping=None,
                                   tie_word_embeddings=True, attention_bias=False,
                                   hidden_activation="gelu_pytorch_tanh")),
    "phi3": ("phi3", dict(rms_norm_eps=1e-5, rope_theta=10000.0, partial_rotary_factor=1.0,
                          tie_word_embeddings=False, sliding_window=None,
                          original_max_position_embeddings=None, hidden_act="silu")),
}


class ArchConfig:
    """config.json read with the class defaults; the attributes the forward
    pass uses, plus `layer_window[i]`, `layer_rope[i]` (per-layer sliding
    window and RoPE parameters)."""

    def __init__(self, cfg):
        cfg = dict(cfg)
        if "text_config" in cfg:
            cfg = {**cfg, **cfg["text_config"]}
        mt = cfg.get("model_type")
        if mt not in ARCH_DEFAULTS:
            raise ValueError("model_type %r is not implemented (known: %s)"
                             % (mt, ", ".join(ARCH_DEFAULTS)))
        self.family, defaults = ARCH_DEFAULTS[mt]
        self.model_type = mt
        c = dict(defaults)
        c.update(cfg)        # an explicit null is None in transformers too
        self.raw = c
        self.hidden = int(c["hidden_size"])
        self.n_layer = int(c["num_hidden_layers"])
        self.n_head = int(c["num_attention_heads"])
        self.n_kv = int(c.get("num_key_value_heads") or self.n_head)
        self.inter = int(c["intermediate_size"])
        self.vocab = int(c["vocab_size"])
        self.eps = float(c["rms_norm_eps"])
        if self.family == "phi3":
            self.head_dim = self.hidden // self.n_head   # Phi3Attention ignores head_dim
        else:
            self.head_dim = int(c.get("head_dim") or self.hidden // self.n_head)
        self.tied = bool(c.get("tie_word_embeddings"))
        self.gemma = self.family in ("gemma", "gemma2", "gemma3")
        if self.gemma:
            act = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
        else:
            act = c.get("hidden_act", "silu")
        if act not in ("silu", "gelu_pytorch_tanh"):
            raise ValueError("activation %r is not implemented" % act)
        self.act = act
        self.attn_bias = bool(c.get("attention_bias")) if self.family == "llama" else False
        self.mlp_bias = bool(c.get("mlp_bias")) if self.family == "llama" else False
        self.qkv_bias = self.family == "qwen2"
        self.qk_norm = self.family in ("qwen3", "gemma3")
        self.post_norms = self.family in ("gemma2", "gemma3")
        if self.family in ("gemma2", "gemma3"):
            self.scaling = float(c["query_pre_attn_scalar"]) ** -0.5
        else:
            self.scaling = self.head_dim ** -0.5
        self.attn_softcap = c.get("attn_logit_softcapping") if self.family == "gemma2" else None
        self.final_softcap = (c.get("final_logit_softcapping")
                              if self.family in ("gemma2", "gemma3") else None)
        self.max_pos = int(c.get("max_position_embeddings") or 2048)
        self._layers(c)

    def _rope(self, theta, scaling, partial):
        """RoPE parameters of one layer kind (a dict)."""
        rot = int(self.head_dim * partial)
        r = {"theta": float(theta), "dim": rot, "type": "default"}
        if scaling:
            typ = scaling.get("rope_type", scaling.get("type", "default"))
            if typ == "su":
                typ = "longrope"
            r["type"] = typ
            r["scaling"] = dict(scaling)
            if typ not in ("default", "linear", "llama3", "longrope"):
                raise ValueError("rope_type %r is not implemented" % typ)
        return r

    def _layers(self, c):
        rope_params = c.get("rope_parameters")  # transformers >= 5 spelling
        scaling = c.get("rope_scaling")
        theta = c.get("rope_theta")
        if rope_params and "rope_theta" in rope_params:
            theta = rope_params["rope_theta"]
            scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        partial = float(c.get("partial_rotary_factor") or 1.0) if self.family == "phi3" else 1.0
        if scaling and self.family == "phi3" and "original_max_position_embeddings" in c:
            scaling = dict(scaling)
            scaling.setdefault("original_max_position_embeddings",
                               c["original_max_position_embeddings"])
        self.layer_window = []
        self.layer_rope = []
        n = self.n_layer
        if self.family == "gemma2":
            types = c.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else
                                             "full_attention" for i in range(n)]
        elif self.family == "gemma3":
            pattern = int(c.get("sliding_window_pattern") or 6)
            types = c.get("layer_types") or ["sliding_attention" if (i + 1) % pattern else
                                             "full_attention" for i in range(n)]
        elif self.family in ("qwen2", "qwen3"):
            on = c.get("use_sliding_window") and c.get("sliding_window") is not None
            types = ["sliding_attention" if on and i >= int(c["max_window_layers"]) else
                     "full_attention" for i in range(n)]
        else:  # llama/mistral/phi3: one window for all layers when set
            types = ["sliding_attention" if c.get("sliding_window") else "full_attention"] * n
        if self.family == "llama" and self.model_type == "llama":
            types = ["full_attention"] * n
        for i in range(n):
            sliding = types[i] == "sliding_attention"
            self.layer_window.append(int(c["sliding_window"]) if sliding else None)
            if self.family == "gemma3" and sliding:
                self.layer_rope.append(self._rope(c["rope_local_base_freq"], None, 1.0))
            else:
                self.layer_rope.append(self._rope(theta, scaling, partial))


# ---------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------

def rope_inv_freq(rope, seq_len, max_pos):
    """(inv_freq [dim/2] float64, attention_factor) as
    transformers.modeling_rope_utils computes them."""
    dim, base = rope["dim"], rope["theta"]
    exponents = torch.arange(0, dim, 2, dtype=F64) / dim
    inv = 1.0 / (base ** exponents)
    typ = rope["type"]
    s = rope.get("scaling", {})
    if typ == "default":
        return inv, 1.0
    if typ == "linear":
        return inv / float(s["factor"]), 1.0
    if typ == "llama3":
        factor = float(s["factor"])
        low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
        old = float(s["original_max_position_embeddings"])
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        out = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        return torch.where(medium, smoothed, out), 1.0
    if typ == "longrope":
        orig = s.get("original_max_position_embeddings")
        if orig:
            factor = max_pos / orig
        else:
            orig, factor = max_pos, float(s.get("factor") or 1.0)
        attn = s.get("attention_factor")
        if attn is None:
            attn = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = s["long_factor"] if seq_len > orig else s["short_factor"]
        ext = torch.tensor(ext, dtype=F64)
        if ext.numel() != dim // 2:
            raise ValueError("longrope factors: %d values for rotary dim %d" % (ext.numel(), dim))
        return 1.0 / (ext * base ** exponents), float(attn)
    raise ValueError(typ)


def apply_rope(x, positions, rope, seq_len, max_pos):
    """x [n, heads, head_dim]: rotate-half RoPE on the first rope["dim"] dims."""
    inv, attn = rope_inv_freq(rope, seq_len, max_pos)
    freqs = positions.to(F64)[:, None] * inv[None, :]            # [n, dim/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos = (emb.cos() * attn)[:, None, :]
    sin = (emb.sin() * attn)[:, None, :]
    rot = rope["dim"]
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xp], dim=-1)


# ---------------------------------------------------------------------------
# GGUF storage and llama.cpp activation rounding (emulation switches)
# ---------------------------------------------------------------------------

def round_f16(t):
    return t.to(torch.float32).to(torch.float16).to(t.dtype)


def round_bf16(t):
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


def round_q8_0(t, activation=False):
    """Quantize-dequantize the last dimension in blocks of 32 as ggml's Q8_0.

    Weights: quantize_row_q8_0_ref (d = amax/127, id = 1/d, roundf = half away
    from zero), float32 arithmetic.  Activations (activation=True): the x86
    SIMD quantize_row_q8_0 that converts matmul inputs (id = 127/amax, round
    half to even).  The scale is stored as fp16."""
    shape = t.shape
    x = t.to(torch.float32).reshape(-1, 32)
    amax = x.abs().amax(dim=1)
    d = amax / 127.0
    if activation:
        inv = torch.where(amax != 0, torch.tensor(127.0) / amax, torch.zeros_like(amax))
        q = torch.round(x * inv[:, None])                    # half to even
    else:
        inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
        v = x * inv[:, None]
        q = torch.sign(v) * torch.floor(v.abs() + 0.5)       # roundf
    d16 = d.to(torch.float16).to(torch.float32)
    return (q * d16[:, None]).reshape(shape).to(t.dtype)


WEIGHT_ROUND = {"f16": round_f16, "bf16": round_bf16, "q8_0": round_q8_0}


def ggml_rms_norm(x, w, eps):
    """ggml's CPU RMS norm in its float32 arithmetic: squares rounded to
    float, summed in double, mean and 1/sqrtf in float, (x * scale) * w in
    float.  Used with act_round: the first layer's input is then bit-exact
    (a dequantized embedding row times float32 norm weights), which matters
    for Q8_0, whose activation rounding is relative to the block maximum and
    meets exact ties when the norm weights have few significant bits (bf16
    checkpoints)."""
    x32 = x.to(torch.float32)
    total = (x32 * x32).to(F64).sum(dim=-1, keepdim=True)
    mean = (total / x.shape[-1]).to(torch.float32)
    scale = 1.0 / torch.sqrt(mean + torch.tensor(eps, dtype=torch.float32))
    return ((x32 * scale) * w.to(torch.float32)).to(x.dtype)


def storage_type(weight_type, row_len):
    """GGUF type of a 2-D weight of row length `row_len` under `weight_type`
    (the converter's Q8_0 -> F16 fallback for rows not a multiple of 32)."""
    if weight_type == "q8_0" and row_len % 32:
        return "f16"
    return weight_type


_GELU_TABLE = None


def ggml_gelu_table():
    """ggml_table_gelu_f16 rebuilt: for every fp16 bit pattern, fp16 of
    0.5*x*(1 + tanh(sqrt(2/pi)*x*(1 + 0.044715*x*x))) evaluated in float32
    in ggml_gelu_f32's order.  Returned as float64 values indexed by bits."""
    global _GELU_TABLE
    if _GELU_TABLE is None:
        bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        x = bits.view(np.float16).astype(np.float32)
        with np.errstate(all="ignore"):
            s2pi = np.float32(0.79788456080286535587989211986876)
            a = np.float32(0.044715)
            inner = s2pi * x * (np.float32(1.0) + a * x * x)
            g = np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner))
        _GELU_TABLE = torch.from_numpy(g.astype(np.float16).astype(np.float64))
    return _GELU_TABLE


def gelu_tanh(x):
    """gelu_pytorch_tanh (transformers' GELUTanh / PytorchGELUTanh)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_ggml(x):
    """llama.cpp CPU GELU (GGML_GELU_FP16): table lookup on fp16(x)."""
    table = ggml_gelu_table()
    bits = x.to(torch.float32).to(torch.float16).view(torch.int16).to(torch.int64) & 0xFFFF
    y = table[bits]
    y = torch.where(x <= -10.0, torch.zeros_like(x), y)
    return torch.where(x >= 10.0, x, y)


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------

class HFForward:
    """Logits of the HF model in `model_dir` with `adapters` [(dir, weight)]
    merged by merge_ref.

    weight_type: "f32" (the merged weights as they are), "f16", "bf16" or
    "q8_0" (every 2-D weight rounded as the GGUF stores it).  act_round:
    round matrix-product inputs as llama.cpp does for that weight type.
    gelu: "exact" (HF) or "ggml" (llama.cpp CPU table).
    ablate: set of feature names switched off, for the self-test's
    sensitivity check (see ABLATIONS)."""

    def __init__(self, model_dir, adapters=(), weight_type="f32", act_round=False,
                 gelu="exact", ablate=(), config_overrides=None, noise_seed=None,
                 noise_scale=1.0):
        if adapters:
            ref = merge_ref.reference_merge(model_dir, list(adapters))
            cfg = dict(ref.base_config)
            cfg.update(ref.config_changes)
            tensors = ref.tensors
        else:
            cfg, stored, _, _ = merge_ref.load_model_dir(model_dir)
            tensors = {k: v.to(torch.float32) for k, v in stored.items()}
        cfg.update(config_overrides or {})
        self.ablate = set(ablate)
        unknown = self.ablate - set(ABLATIONS)
        if unknown:
            raise ValueError("unknown ablations %s" % sorted(unknown))
        self.cfg = ArchConfig(cfg)
        self.weight_type = weight_type
        self.act_round = act_round
        self.gelu = gelu
        self.noise_scale = noise_scale
        self.noise = (None if noise_seed is None else
                      torch.Generator().manual_seed(int(noise_seed)))
        self.W = {}
        self.wtype = {}      # name -> GGUF storage type of 2-D weights
        for name, t in tensors.items():
            t = t.to(torch.float32)
            if t.dim() == 2 and weight_type != "f32":
                st = storage_type(weight_type, t.shape[1])
                t = WEIGHT_ROUND[st](t)
                self.wtype[name] = st
            elif t.dim() == 2:
                self.wtype[name] = "f32"
            if self.cfg.gemma and name.endswith("norm.weight"):
                # GemmaRMSNorm: output * (1.0 + weight.float()), in float32
                t = 1.0 + t if "norm_offset" not in self.ablate else t
            self.W[name] = t.to(F64)
        c = self.cfg
        self.embed = self.W["model.embed_tokens.weight"]
        if c.tied or "lm_head.weight" not in self.W or "tied" in self.ablate:
            self.lm_head_name = "model.embed_tokens.weight"
        else:
            self.lm_head_name = "lm_head.weight"
        if self.embed.shape[0] != c.vocab:
            raise ValueError("embedding rows %d != vocab_size %d" % (self.embed.shape[0], c.vocab))

    # -- building blocks --------------------------------------------------

    def linear(self, x, name, bias=None):
        """x @ W^T (+ bias), with llama.cpp's input rounding when asked."""
        w = self.W[name]
        st = self.wtype.get(name, "f32")
        if self.act_round and st != "f32":
            if st == "q8_0":
                x = round_q8_0(x, activation=True)
            else:
                x = WEIGHT_ROUND[st](x)
        y = x @ w.t()
        if self.noise is not None:
            # float32 dot-product rounding noise: u * sqrt(K) * rms of the
            # products, the typical error of a K-term float32 sum
            spread = torch.sqrt((x * x) @ (w * w).t())
            y = y + self.noise_scale * 2.0 ** -24 * spread * torch.randn(
                y.shape, generator=self.noise, dtype=F64)
        if bias is not None and bias in self.W:
            y = y + self.W[bias]
        return y

    def norm(self, x, name):
        if self.act_round:
            return ggml_rms_norm(x, self.W[name], self.cfg.eps)
        var = (x * x).mean(dim=-1, keepdim=True)
        return x / torch.sqrt(var + self.cfg.eps) * self.W[name]

    def act(self, x):
        if self.cfg.act == "silu":
            return x * torch.sigmoid(x)
        if "gelu_tanh" in self.ablate:
            return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
        return gelu_ggml(x) if self.gelu == "ggml" else gelu_tanh(x)

    def attention(self, h, i, positions, n):
        c = self.cfg
        p = "model.layers.%d.self_attn." % i
        hd, nh, nkv = c.head_dim, c.n_head, c.n_kv
        if c.family == "phi3":
            qkv = self.linear(h, p + "qkv_proj.weight")
            q = qkv[:, :nh * hd]
            k = qkv[:, nh * hd:(nh + nkv) * hd]
            v = qkv[:, (nh + nkv) * hd:]
        else:
            bias = c.qkv_bias or c.attn_bias
            if "bias" in self.ablate:
                bias = False
            q = self.linear(h, p + "q_proj.weight", p + "q_proj.bias" if bias else None)
            k = self.linear(h, p + "k_proj.weight", p + "k_proj.bias" if bias else None)
            v = self.linear(h, p + "v_proj.weight", p + "v_proj.bias" if bias else None)
        q = q.reshape(n, nh, hd)
        k = k.reshape(n, nkv, hd)
        v = v.reshape(n, nkv, hd)
        if c.qk_norm and "qk_norm" not in self.ablate:
            q = self.norm(q, p + "q_norm.weight")
            k = self.norm(k, p + "k_norm.weight")
        rope = dict(c.layer_rope[i])
        if "rope_scaling" in self.ablate:
            rope["type"] = "default"
        if "rope_local_base" in self.ablate and c.family == "gemma3":
            rope = dict(c.layer_rope[i], theta=c.raw["rope_theta"])
        if "partial_rotary" in self.ablate:
            rope["dim"] = hd
            rope["type"] = "default"
        q = apply_rope(q, positions, rope, n, c.max_pos)
        k = apply_rope(k, positions, rope, n, c.max_pos)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)                 # repeat_kv: kv j -> heads j*rep..
        v = v.repeat_interleave(rep, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) * c.scaling
        if c.attn_softcap and "attn_softcap" not in self.ablate:
            scores = torch.tanh(scores / c.attn_softcap) * c.attn_softcap
        qi = positions[:, None]
        ki = positions[None, :]
        allowed = ki <= qi
        window = c.layer_window[i]
        if window is not None and "sliding_window" not in self.ablate:
            allowed = allowed & (qi - ki < window)
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.einsum("hqk,khd->qhd", probs, v).reshape(n, nh * hd)
        return self.linear(out, p + "o_proj.weight", p + "o_proj.bias"
                           if c.attn_bias and "bias" not in self.ablate else None)

    def mlp(self, h, i):
        c = self.cfg
        p = "model.layers.%d.mlp." % i
        if c.family == "phi3":
            gu = self.linear(h, p + "gate_up_proj.weight")
            gate, up = gu[:, :c.inter], gu[:, c.inter:]
        else:
            b = c.mlp_bias
            gate = self.linear(h, p + "gate_proj.weight", p + "gate_proj.bias" if b else None)
            up = self.linear(h, p + "up_proj.weight", p + "up_proj.bias" if b else None)
        return self.linear(self.act(gate) * up, p + "down_proj.weight",
                           p + "down_proj.bias" if c.mlp_bias else None)

    # -- the pass -----------------------------------------------------------

    def hidden_states(self, tokens):
        """Final-norm hidden states [n, hidden]."""
        c = self.cfg
        tok = torch.as_tensor(list(tokens), dtype=torch.int64)
        if tok.numel() == 0 or int(tok.min()) < 0 or int(tok.max()) >= c.vocab:
            raise ValueError("token ids must be in [0, %d)" % c.vocab)
        n = tok.numel()
        positions = torch.arange(n)
        x = self.embed[tok]
        if c.gemma and "embed_scale" not in self.ablate:
            # HF: torch.tensor(hidden_size**0.5, dtype=hidden dtype); float32 here
            x = x * float(torch.tensor(c.hidden ** 0.5, dtype=torch.float32))
        for i in range(c.n_layer):
            p = "model.layers.%d." % i
            h = self.norm(x, p + "input_layernorm.weight")
            a = self.attention(h, i, positions, n)
            if c.post_norms and "post_norms" not in self.ablate:
                a = self.norm(a, p + "post_attention_layernorm.weight")
                x = x + a
                h = self.norm(x, p + "pre_feedforward_layernorm.weight")
                m = self.norm(self.mlp(h, i), p + "post_feedforward_layernorm.weight")
            else:
                x = x + a
                pre = ("pre_feedforward_layernorm" if c.post_norms
                       else "post_attention_layernorm")
                h = self.norm(x, p + pre + ".weight")
                m = self.mlp(h, i)
            x = x + m
        return self.norm(x, "model.norm.weight")

    def logits(self, tokens):
        """Logits [n_tokens, vocab] (float64) of positions 0..n-1."""
        c = self.cfg
        logits = self.linear(self.hidden_states(tokens), self.lm_head_name)
        if c.final_softcap and "final_softcap" not in self.ablate:
            logits = torch.tanh(logits / c.final_softcap) * c.final_softcap
        return logits


#: features the self-test switches off one at a time to show that each one
#: moves the logits (so an exporter that loses it fails the GGUF test)
ABLATIONS = {
    "lora": "no LoRA merged",
    "bias": "q/k/v(/o) biases dropped",
    "qk_norm": "q_norm/k_norm skipped",
    "norm_offset": "gemma norms used as w instead of 1 + w",
    "embed_scale": "gemma embeddings not scaled by sqrt(hidden)",
    "post_norms": "gemma2/3 post-attention/post-feedforward norms skipped",
    "attn_softcap": "attention soft-capping off",
    "final_softcap": "final logit soft-capping off",
    "sliding_window": "sliding window off",
    "rope_scaling": "rope_scaling ignored (plain RoPE)",
    "rope_local_base": "gemma3 sliding layers with rope_theta instead of rope_local_base_freq",
    "partial_rotary": "RoPE on the whole head (partial_rotary_factor ignored)",
    "gelu_tanh": "erf GELU instead of the tanh approximation",
    "tied": "output projection = token embedding although lm_head exists",
}


def relative_error(got, ref):
    """max |got - ref| / max |ref| over all positions and vocabulary entries:
    one number per comparison, normalised by the logit scale (elementwise
    relative errors explode on logits that happen to be near 0)."""
    got = torch.as_tensor(got, dtype=F64)
    ref = torch.as_tensor(ref, dtype=F64)
    return float((got - ref).abs().max() / ref.abs().max())


# ---------------------------------------------------------------------------
# a second, deliberately naive implementation for the self-test
# ---------------------------------------------------------------------------

def slow_logits(m, tokens):
    """Token-by-token decoding with an explicit KV cache, scalar RoPE
    formulas and per-head loops in numpy, from m's (merged, rounded)
    weights and config.  Shares nothing with HFForward's tensor code."""
    c = m.cfg
    W = {k: v.numpy() for k, v in m.W.items()}
    hd, nh, nkv = c.head_dim, c.n_head, c.n_kv
    rep = nh // nkv

    def rms(x, w):
        return x / math.sqrt(float(np.dot(x, x)) / x.size + c.eps) * w

    def act(x):
        if c.act == "silu":
            return x / (1.0 + np.exp(-x))
        if m.gelu == "ggml":
            return gelu_ggml(torch.from_numpy(x)).numpy()
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def rope_vec(vec, pos, rope, seq_len):
        inv, attn = rope_inv_freq(rope, seq_len, c.max_pos)
        out = vec.copy()
        half = rope["dim"] // 2
        for j in range(half):
            ang = pos * float(inv[j])
            cs, sn = math.cos(ang) * attn, math.sin(ang) * attn
            a, b = vec[j], vec[j + half]
            out[j] = a * cs - b * sn
            out[j + half] = b * cs + a * sn
        return out

    n = len(tokens)
    cache = [([], []) for _ in range(c.n_layer)]   # per layer: keys[pos][kvh], values
    out_logits = []
    for pos, t in enumerate(tokens):
        x = W["model.embed_tokens.weight"][t].copy()
        if c.gemma:
            x = x * float(np.float32(math.sqrt(c.hidden)))
        for i in range(c.n_layer):
            p = "model.layers.%d." % i
            h = rms(x, W[p + "input_layernorm.weight"])
            a = p + "self_attn."
            if c.family == "phi3":
                qkv = W[a + "qkv_proj.weight"] @ h
                qf, kf, vf = qkv[:nh * hd], qkv[nh * hd:(nh + nkv) * hd], qkv[(nh + nkv) * hd:]
            else:
                qf = W[a + "q_proj.weight"] @ h
                kf = W[a + "k_proj.weight"] @ h
                vf = W[a + "v_proj.weight"] @ h
                if c.qkv_bias or c.attn_bias:
                    qf = qf + W[a + "q_proj.bias"]
                    kf = kf + W[a + "k_proj.bias"]
                    vf = vf + W[a + "v_proj.bias"]
            rope = c.layer_rope[i]
            keys, vals = [], []
            for g in range(nkv):
                kv = kf[g * hd:(g + 1) * hd]
                if c.qk_norm:
                    kv = rms(kv, W[a + "k_norm.weight"])
                keys.append(rope_vec(kv, pos, rope, n))
                vals.append(vf[g * hd:(g + 1) * hd])
            cache[i][0].append(keys)
            cache[i][1].append(vals)
            window = c.layer_window[i]
            heads_out = []
            for head in range(nh):
                qv = qf[head * hd:(head + 1) * hd]
                if c.qk_norm:
                    qv = rms(qv, W[a + "q_norm.weight"])
                qv = rope_vec(qv, pos, rope, n)
                g = head // rep
                visible = [j for j in range(pos + 1) if window is None or pos - j < window]
                s = np.array([float(np.dot(qv, cache[i][0][j][g])) * c.scaling for j in visible])
                if c.attn_softcap:
                    s = np.tanh(s / c.attn_softcap) * c.attn_softcap
                e = np.exp(s - s.max())
                wts = e / e.sum()
                heads_out.append(sum(wt * cache[i][1][j][g] for wt, j in zip(wts, visible)))
            o = W[a + "o_proj.weight"] @ np.concatenate(heads_out)
            if c.attn_bias:
                o = o + W[a + "o_proj.bias"]
            if c.post_norms:
                o = rms(o, W[p + "post_attention_layernorm.weight"])
                x = x + o
                h = rms(x, W[p + "pre_feedforward_layernorm.weight"])
            else:
                x = x + o
                h = rms(x, W[p + "post_attention_layernorm.weight"])
            mp = p + "mlp."
            if c.family == "phi3":
                gu = W[mp + "gate_up_proj.weight"] @ h
                y = act(gu[:c.inter]) * gu[c.inter:]
            else:
                y = act(W[mp + "gate_proj.weight"] @ h) * (W[mp + "up_proj.weight"] @ h)
            y = W[mp + "down_proj.weight"] @ y
            if c.post_norms:
                y = rms(y, W[p + "post_feedforward_layernorm.weight"])
            x = x + y
        x = rms(x, W["model.norm.weight"])
        lg = W[m.lm_head_name] @ x
        if c.final_softcap:
            lg = np.tanh(lg / c.final_softcap) * c.final_softcap
        out_logits.append(lg)
    return np.stack(out_logits)


# ---------------------------------------------------------------------------
# self-test
# ---------------------------------------------------------------------------

#: ablations that apply to each generated family (gen_arch_models names)
FAMILY_ABLATIONS = {
    "llama": ["lora", "tied"],
    "llama3": ["lora", "rope_scaling"],
    "llama32": ["lora", "rope_scaling"],
    "mistral": ["lora", "tied"],
    "qwen2": ["lora", "bias"],
    "qwen3": ["lora", "qk_norm", "tied"],
    "gemma": ["lora", "norm_offset", "embed_scale"],
    "gemma2": ["lora", "norm_offset", "embed_scale", "post_norms", "attn_softcap",
               "final_softcap", "sliding_window"],
    "gemma3": ["lora", "norm_offset", "qk_norm", "post_norms", "sliding_window",
               "rope_scaling", "rope_local_base"],
    "phi3": ["lora", "tied"],
    "phi3-longrope": ["lora", "rope_scaling", "partial_rotary"],
}


def _gen():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "gen"))
    import gen_arch_models
    return gen_arch_models


def _check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def selftest(workdir, families=None):
    """Properties that could fail; see the individual checks."""
    ga = _gen()
    os.makedirs(workdir, exist_ok=True)
    torch.set_num_threads(1)

    # 1. rounding helpers against hand-computed values
    x = torch.tensor([1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 65520.0], dtype=F64)
    _check(round_f16(x).tolist() == [1.0, 1.0 + 2 * 2.0 ** -10, float("inf")], "f16 RNE")
    x = torch.tensor([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], dtype=F64)
    _check(round_bf16(x).tolist() == [1.0, 1.0 + 2.0 ** -6], "bf16 RNE")
    blk = torch.tensor([127.0] + [0.5] * 2 + [-1.5] + [0.0] * 28, dtype=F64)
    # d = 1, q = roundf(x): 0.5 -> 1, -1.5 -> -2 (away from zero); activation
    # rounding is half to even: 0.5 -> 0, -1.5 -> -2
    _check(round_q8_0(blk)[:4].tolist() == [127.0, 1.0, 1.0, -2.0], "q8_0 weight rounding")
    _check(round_q8_0(blk, activation=True)[:4].tolist() == [127.0, 0.0, 0.0, -2.0],
           "q8_0 activation rounding")
    blk = torch.tensor([0.3] * 31 + [-2.54], dtype=F64)
    d = float(np.float16(np.float32(2.54) / np.float32(127)))
    _check(abs(float(round_q8_0(blk)[0]) - 15 * d) < 1e-12, "q8_0 scale is fp16")
    g = gelu_ggml(torch.tensor([-12.0, -10.0, 0.0, 1.0, 10.0, 12.5], dtype=F64))
    _check(g[0] == 0 and g[1] == 0 and g[2] == 0 and g[4] == 10.0 and g[5] == 12.5,
           "ggml gelu edges")
    _check(float(g[3]) == float(np.float16(0.8411920070648193)), "ggml gelu(1) = fp16(0.84119)")
    xs = torch.linspace(-9.9, 9.9, 4001, dtype=F64)
    # fp16 input and output: error <= half an fp16 step of the output plus
    # the slope times half a step of the input
    diff = (gelu_ggml(xs) - gelu_tanh(xs)).abs()
    _check(float(diff.max()) <= 2.0 ** -8 and
           bool((diff <= 2.0 ** -11 * (gelu_tanh(xs).abs() + 1.2 * xs.abs()) + 1e-7).all()),
           "ggml gelu within fp16 precision of gelu_tanh")
    _check(float(diff.max()) > 1e-4, "ggml gelu differs measurably from gelu_tanh")

    # 2. RoPE: variants that must reduce to the default; llama3 against the
    #    converter's rope_factors formula (llama.cpp divides by those)
    base = {"theta": 500000.0, "dim": 32, "type": "default"}
    inv0, _ = rope_inv_freq(base, 8, 4096)
    for typ, s in (("linear", {"factor": 1.0}),
                   ("llama3", {"factor": 1.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
                   ("longrope", {"short_factor": [1.0] * 16, "long_factor": [3.0] * 16,
                                 "original_max_position_embeddings": 4096})):
        inv, attn = rope_inv_freq(dict(base, type=typ, scaling=s), 8, 4096)
        _check(torch.allclose(inv, inv0, rtol=1e-15) and attn == 1.0, "%s reduces" % typ)
    s = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 64}
    inv3, _ = rope_inv_freq(dict(base, type="llama3", scaling=s), 8, 4096)
    factors = []
    for fr in inv0.tolist():
        wl = 2 * math.pi / fr
        if wl < 16:
            factors.append(1.0)
        elif wl > 64:
            factors.append(8.0)
        else:
            sm = (64 / wl - 1) / 3
            factors.append(1 / ((1 - sm) / 8 + sm))
    _check(torch.allclose(inv3, inv0 / torch.tensor(factors, dtype=F64), rtol=1e-13),
           "llama3 inv_freq = default / rope_factors")
    _check(len(set(factors)) > 2, "llama3 test frequencies span all three bands")
    lr = dict(base, type="longrope", scaling={"short_factor": [2.0] * 16,
                                              "long_factor": [5.0] * 16,
                                              "original_max_position_embeddings": 16})
    inv_s, attn = rope_inv_freq(lr, 16, 64)
    inv_l, _ = rope_inv_freq(lr, 17, 64)
    _check(torch.allclose(inv_s, inv0 / 2) and torch.allclose(inv_l, inv0 / 5),
           "longrope short for seq_len <= orig, long beyond")
    _check(abs(attn - math.sqrt(1 + math.log(4) / math.log(16))) < 1e-15, "longrope attn factor")
    v = torch.randn(5, 3, 32, dtype=F64)
    r = apply_rope(v, torch.arange(5), base, 5, 4096)
    _check(torch.allclose(r.norm(dim=-1), v.norm(dim=-1)), "RoPE is a rotation")
    _check(torch.equal(r[0], v[0]), "RoPE at position 0 is the identity")

    fams = families or list(FAMILY_ABLATIONS)
    rows = []
    for fam in fams:
        model, adapter = ga.generate(os.path.join(workdir, fam), fam, seed=7)
        tokens = ga.prompt_tokens(model)
        adapters = [(adapter, 1.0)]
        m = HFForward(model, adapters)
        ref = m.logits(tokens)
        c = m.cfg
        _check(tuple(ref.shape) == (len(tokens), c.vocab), "%s: logits shape" % fam)
        _check(bool(torch.isfinite(ref).all()), "%s: non-finite logits" % fam)

        # 3. the naive token-by-token implementation agrees
        slow = slow_logits(m, tokens)
        e = relative_error(slow, ref)
        _check(e < 1e-12, "%s: batched vs token-by-token %.3g" % (fam, e))

        # 4. causal: later tokens do not change earlier logits
        t2 = list(tokens)
        t2[7:] = [tokens[1]] * (len(tokens) - 7)
        other = m.logits(t2)
        _check(relative_error(other[:7], ref[:7]) < 1e-13, "%s: not causal" % fam)
        _check(relative_error(other[7:], ref[7:]) > 1e-3, "%s: later logits unchanged" % fam)

        # 5. every feature the family has moves the logits by far more than
        #    the test's 1e-4 tolerance (so losing it in the export is caught)
        sens = {}
        for ab in FAMILY_ABLATIONS[fam]:
            alt = (HFForward(model) if ab == "lora" else HFForward(model, adapters, ablate=[ab]))
            sens[ab] = relative_error(alt.logits(tokens), ref)
            _check(sens[ab] > 1e-3, "%s: ablation %s changes logits by only %.2g"
                   % (fam, ab, sens[ab]))

        # 6. GGUF-type emulation: rounding moves the logits by a measurable
        #    amount, larger for coarser types
        q = {}
        for wt in ("f16", "bf16", "q8_0"):
            q[wt] = relative_error(HFForward(model, adapters, weight_type=wt,
                                             act_round=True).logits(tokens), ref)
        _check(1e-6 < q["f16"] < q["bf16"] and 1e-5 < q["q8_0"] < 0.1,
               "%s: rounding effects %s" % (fam, q))
        g = (relative_error(HFForward(model, adapters, gelu="ggml").logits(tokens), ref)
             if c.act != "silu" else 0.0)
        # ggml's float32 RMS norm changes nothing measurable, and float32
        # summation noise (4x) moves the logits far less than 1e-4: the
        # models are well conditioned, so a 1e-4 miss is not float32's fault
        f32emu = HFForward(model, adapters, act_round=True).logits(tokens)
        noisy = HFForward(model, adapters, act_round=True, noise_seed=1,
                          noise_scale=4.0).logits(tokens)
        _check(relative_error(f32emu, ref) < 1e-6, "%s: ggml_rms_norm" % fam)
        nz = relative_error(noisy, f32emu)
        _check(nz < 1e-5, "%s: float32 noise moves logits by %.3g" % (fam, nz))
        rows.append((fam, sens, q, g, nz))

    # 7. GQA: the same model written with n_kv = n_head (k/v rows repeated
    #    per query head) gives the same logits
    for fam in [f for f in ("llama3", "gemma", "phi3-longrope") if f in fams]:
        model = os.path.join(workdir, fam, "model")
        m = HFForward(model, [(os.path.join(workdir, fam, "adapter"), 1.0)])
        tokens = ga.prompt_tokens(model)
        mha = _as_mha(m)
        _check(mha.cfg.n_kv == mha.cfg.n_head and m.cfg.n_kv < m.cfg.n_head, "GQA setup")
        e = relative_error(mha.logits(tokens), m.logits(tokens))
        _check(e < 1e-13, "%s: GQA != MHA (%.3g)" % (fam, e))

    # 8. hand-computed case: one llama layer, one token (attention = v,
    #    RoPE at position 0 = identity)
    hand_model, _ = ga.generate(os.path.join(workdir, "hand"), "llama3", seed=7)
    m = HFForward(hand_model, config_overrides={"num_hidden_layers": 1})
    W = {k: v.numpy() for k, v in m.W.items()}
    tok = 5
    x = W["model.embed_tokens.weight"][tok]
    eps = m.cfg.eps

    def rn(v, w):
        return v / np.sqrt(np.mean(v * v) + eps) * w
    hd, rep = m.cfg.head_dim, m.cfg.n_head // m.cfg.n_kv     # GQA: 2 query heads per kv head
    h = rn(x, W["model.layers.0.input_layernorm.weight"])
    v = W["model.layers.0.self_attn.v_proj.weight"] @ h
    heads = [v[(hh // rep) * hd:(hh // rep + 1) * hd] for hh in range(m.cfg.n_head)]
    x1 = x + W["model.layers.0.self_attn.o_proj.weight"] @ np.concatenate(heads)
    h2 = rn(x1, W["model.layers.0.post_attention_layernorm.weight"])
    gte = W["model.layers.0.mlp.gate_proj.weight"] @ h2
    mlp = W["model.layers.0.mlp.down_proj.weight"] @ (
        gte / (1 + np.exp(-gte)) * (W["model.layers.0.mlp.up_proj.weight"] @ h2))
    want = W[m.lm_head_name] @ rn(x1 + mlp, W["model.norm.weight"])
    e = relative_error(m.logits([tok])[0], want)
    _check(e < 1e-13, "hand-computed one-layer case off by %.3g" % e)

    # 9. sliding window: a window covering the prompt changes nothing; the
    #    smallest window (1) makes each position attend only to itself
    if "gemma2" in fams:
        model = os.path.join(workdir, "gemma2", "model")
        tokens = ga.prompt_tokens(model)
        a = HFForward(model, config_overrides={"sliding_window": len(tokens)}).logits(tokens)
        b = HFForward(model, ablate=["sliding_window"]).logits(tokens)
        _check(relative_error(a, b) < 1e-14, "window >= prompt is not a no-op")
        w1 = HFForward(model, config_overrides={"sliding_window": 1,
                                                "layer_types": ["sliding_attention"] * 2,
                                                "attn_logit_softcapping": None})
        h = torch.randn(6, w1.cfg.hidden, dtype=F64)
        out = w1.attention(h, 0, torch.arange(6), 6)
        p = "model.layers.0.self_attn."
        vv = (h @ w1.W[p + "v_proj.weight"].t()).reshape(6, w1.cfg.n_kv, w1.cfg.head_dim)
        vv = vv.repeat_interleave(w1.cfg.n_head // w1.cfg.n_kv, dim=1).reshape(6, -1)
        _check(torch.allclose(out, vv @ w1.W[p + "o_proj.weight"].t(), rtol=1e-12),
               "window 1 must attend to the token itself only")

    print("relative_error = max|a - b| / max|b|")
    print("%-14s %s" % ("family", "ablation: change of the logits"))
    for fam, sens, q, g, nz in rows:
        print("%-14s %s" % (fam, ", ".join("%s %.3g" % kv for kv in sens.items())))
    print("\n%-14s %10s %10s %10s %10s %10s" % ("family", "F16", "BF16", "Q8_0", "ggml-gelu",
                                               "4x f32 ns"))
    for fam, sens, q, g, nz in rows:
        print("%-14s %10.3g %10.3g %10.3g %10.3g %10.3g"
              % (fam, q["f16"], q["bf16"], q["q8_0"], g, nz))
    print("hf_forward self-test ok (%d families)" % len(rows))


def _as_mha(m):
    """A copy of HFForward `m` whose k/v projections are expanded to one kv
    head per query head (rows of kv head j repeated for heads j*rep..)."""
    import copy
    c = m.cfg
    rep = c.n_head // c.n_kv
    mha = copy.copy(m)
    mha.cfg = copy.copy(c)
    mha.cfg.n_kv = c.n_head
    mha.W = dict(m.W)
    hd = c.head_dim

    def expand(w):
        parts = w.reshape(c.n_kv, hd, *w.shape[1:])
        return parts.repeat_interleave(rep, dim=0).reshape(c.n_head * hd, *w.shape[1:])
    for i in range(c.n_layer):
        p = "model.layers.%d.self_attn." % i
        if c.family == "phi3":
            w = m.W[p + "qkv_proj.weight"]
            q, k, v = w[:c.n_head * hd], w[c.n_head * hd:(c.n_head + c.n_kv) * hd], \
                w[(c.n_head + c.n_kv) * hd:]
            mha.W[p + "qkv_proj.weight"] = torch.cat([q, expand(k), expand(v)])
            continue
        for proj in ("k_proj", "v_proj"):
            mha.W[p + proj + ".weight"] = expand(m.W[p + proj + ".weight"])
            if p + proj + ".bias" in m.W:
                mha.W[p + proj + ".bias"] = expand(m.W[p + proj + ".bias"])
    return mha


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def main(argv=None):
    import argparse
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--adapter", action="append", default=[], help="DIR or DIR:WEIGHT")
    p.add_argument("--tokens", help="comma-separated token ids")
    p.add_argument("--weight-type", choices=["f32", "f16", "bf16", "q8_0"], default="f32")
    p.add_argument("--act-round", action="store_true")
    p.add_argument("--gelu", choices=["exact", "ggml"], default="exact")
    p.add_argument("--out", help="write float32 [n_tokens x n_vocab] here (raw, row-major)")
    p.add_argument("--selftest", action="store_true")
    p.add_argument("--family", action="append", default=[],
                   help="self-test only these families")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    if args.selftest:
        selftest(args.workdir or tempfile.mkdtemp(prefix="hf-forward-"), args.family or None)
        return 0
    if not args.model or not args.tokens:
        p.error("MODEL_DIR and --tokens are required")
    adapters = []
    for a in args.adapter:
        d, _, w = a.rpartition(":") if ":" in a else (a, "", "1.0")
        adapters.append((d, float(w)))
    m = HFForward(args.model, adapters, weight_type=args.weight_type,
                  act_round=args.act_round, gelu=args.gelu)
    logits = m.logits([int(t) for t in args.tokens.split(",")])
    if args.out:
        logits.to(torch.float32).numpy().tofile(args.out)
    else:
        np.set_printoptions(precision=5, linewidth=150)
        print(logits.numpy())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Independent reference for smelt's LoRA merge, written from the published
formulas (shared/reference/formats.md section 3.3), not from smelt's C code.
It also contains its own safetensors reader (no code shared with the test
generator in tests/gen or with smelt) and the comparison used by the tests.

Semantics implemented (what smelt is expected to do):

* Key mapping: strip "base_model.model.", drop the adapter-name component
  (".default" before a "." or at the end, as in raw state_dict dumps) and drop
  ".base_layer." ("q_proj.base_layer.bias" -> "q_proj.bias").
* r = number of rows of lora_A (lora_embedding_A).  alpha = alpha_pattern[K] for
  the first key K (dict order) with re.match(r"(.*\\.)?(K)$", module), else
  lora_alpha.  s = alpha / r, or alpha / sqrt(r) with use_rslora.  The
  per-adapter factor is float32(s * weight): computed in double, rounded once.
* Linear: delta = fl32(B @ A) (fp32 matmul) * factor (one fp32 multiply),
  transposed when fan_in_fan_out (weight stored [in, out], GPT-2 Conv1D).
  W' = W32 + delta; several adapters are applied in the listed order, each as a
  separate fp32 add onto the running fp32 result.
* Embedding: delta = (B @ A)^T * factor, B = lora_embedding_B [dim, r],
  A = lora_embedding_A [r, vocab].
* DoRA (Linear): W_eff = W + delta; norm = ||W_eff|| per output row (fp32);
  W' = (m / norm)[:, None] * W_eff (for fan_in_fan_out done in [out, in]
  orientation).  The "W" is the running merged weight (previous adapters
  included).  DoRA on an embedding (PEFT DoraEmbeddingLayer, magnitude
  [dim]): norm over the vocabulary per embedding dimension,
  W' = W_eff * (m / norm)[None, :].
* lora_B.bias: bias' = bias + lora_B.bias * factor.
* Full tensors saved in the adapter (bias="all"/"lora_only" biases,
  modules_to_save copies, saved/resized embedding matrices) replace the base
  tensor, before that adapter's LoRA deltas are applied.  When the embedding's
  row count changes, config vocab_size becomes the new row count.
* Tied base (no lm_head.weight in the checkpoint): if any adapter touches
  lm_head (LoRA or saved matrix) or the input embedding (LoRA or saved
  matrix), the output is untied: it has both the embedding and lm_head.weight,
  lm_head starting as a copy of the *base* embedding, and config
  tie_word_embeddings=false.  Exception (documented choice): a saved embedding
  matrix that is not a modules_to_save copy (i.e. save_embedding_layers, as
  after resize_token_embeddings) is the shared tensor, so it also replaces
  lm_head unless the same adapter saves lm_head too.  Untouched tied bases
  stay tied (no lm_head.weight in the output).
* Output: RNE to bf16/fp16 with torch's .to().

Run directly for a self-test on generated data:
    /usr/bin/python3 tests/reference/merge_ref.py --selftest
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

import json
import math
import os
import re
import struct
import sys

import torch

# ---------------------------------------------------------------------------
# safetensors reader (independent)
# ---------------------------------------------------------------------------

#: safetensors dtype -> (torch dtype, element bytes)
ST_TYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}

#: Rust Dtype enum, ascending; save_file sorts by it descending, then by name.
RUST_DTYPE_ORDER = ("BOOL F4 F6_E2M3 F6_E3M2 U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 F8_E4M3FNUZ "
                    "F8_E5M2FNUZ I16 U16 F16 BF16 I32 U32 F32 C64 F64 I64 U64").split()

#: output dtype spelled in recipes -> torch dtype and config.json name
OUT_DTYPES = {"bf16": (torch.bfloat16, "bfloat16"), "fp16": (torch.float16, "float16"),
              "f32": (torch.float32, "float32")}
TORCH_NAME = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


class SafetensorsFile:
    """A parsed and validated safetensors file.

    Attributes: path, header_len, header_bytes, entries (list of
    (name, dtype, shape, begin, end) in header order), metadata.
    Raises ValueError on any structural problem (the checks of the reference
    Rust reader: contiguous, fully indexed buffer, exact sizes and length).
    """

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.raw = bytearray(f.read())
        if len(self.raw) < 8:
            raise ValueError("%s: shorter than 8 bytes" % path)
        (n,) = struct.unpack_from("<Q", self.raw, 0)
        if n > 100_000_000 or 8 + n > len(self.raw):
            raise ValueError("%s: bad header length %d" % (path, n))
        self.header_len = n
        self.header_bytes = bytes(self.raw[8:8 + n])
        if not self.header_bytes.startswith(b"{"):
            raise ValueError("%s: header does not start with '{'" % path)
        pairs = json.loads(self.header_bytes.decode("utf-8"), object_pairs_hook=lambda p: p)
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError("%s: duplicate keys in header" % path)
        self.metadata = None
        self.entries = []
        for k, v in pairs:
            v = dict(v)
            if k == "__metadata__":
                self.metadata = v
                continue
            dtype = v["dtype"]
            if dtype not in ST_TYPES:
                raise ValueError("%s: %s: unsupported dtype %s" % (path, k, dtype))
            begin, end = v["data_offsets"]
            self.entries.append((k, dtype, list(v["shape"]), begin, end))
        pos = 0
        for k, dtype, shape, begin, end in sorted(self.entries, key=lambda e: (e[3], e[4])):
            numel = math.prod(shape)
            if begin != pos:
                raise ValueError("%s: %s starts at %d, expected %d (hole/overlap)"
                                 % (path, k, begin, pos))
            if end - begin != numel * ST_TYPES[dtype][1]:
                raise ValueError("%s: %s has %d bytes for shape %s %s"
                                 % (path, k, end - begin, shape, dtype))
            pos = end
        if 8 + n + pos != len(self.raw):
            raise ValueError("%s: file length %d != 8 + %d + %d"
                             % (path, len(self.raw), n, pos))

    def names(self):
        return [e[0] for e in self.entries]

    def tensor(self, name):
        """The tensor in its stored dtype (a view over the file bytes)."""
        for k, dtype, shape, begin, end in self.entries:
            if k == name:
                tdt, size = ST_TYPES[dtype]
                start = 8 + self.header_len + begin
                count = (end - begin) // size
                if count == 0:
                    return torch.empty(shape, dtype=tdt)
                return torch.frombuffer(self.raw, dtype=tdt, count=count,
                                        offset=start).reshape(shape)
        raise KeyError(name)

    def dtype_of(self, name):
        return next(e[1] for e in self.entries if e[0] == name)

    def tensors(self):
        return {k: self.tensor(k) for k in self.names()}


def expected_save_file_header(entries, metadata=None):
    """The header bytes safetensors.torch.save_file writes for `entries`
    [(name, dtype, shape)]: sort by dtype enum descending then name (bytewise),
    compact JSON (dtype, shape, data_offsets), __metadata__ first, spaces to a
    multiple of 8.  Built by hand, independently of json.dumps separators."""
    if metadata is None:
        metadata = {"format": "pt"}
    ordered = sorted(entries, key=lambda e: (-RUST_DTYPE_ORDER.index(e[1]), e[0].encode()))
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":{' + ",".join(
            "%s:%s" % (json.dumps(k), json.dumps(v)) for k, v in metadata.items()) + "}")
    off = 0
    for name, dtype, shape in ordered:
        nbytes = math.prod(shape) * ST_TYPES[dtype][1]
        parts.append('%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}'
                     % (json.dumps(name, ensure_ascii=False), dtype,
                        ",".join(str(d) for d in shape), off, off + nbytes))
        off += nbytes
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    return text + b" " * (-len(text) % 8)


def check_save_file_layout(st):
    """Problems (list of strings) if `st` is not laid out exactly as
    safetensors.torch.save_file would lay out the same tensors."""
    problems = []
    if st.metadata != {"format": "pt"}:
        problems.append("%s: __metadata__ is %r, want {'format': 'pt'}" % (st.path, st.metadata))
    if not st.header_bytes.startswith(b'{"__metadata__":'):
        problems.append("%s: __metadata__ is not the first header entry" % st.path)
    want = expected_save_file_header([(k, d, s) for k, d, s, _, _ in st.entries],
                                     st.metadata if st.metadata is not None else {"format": "pt"})
    if st.header_bytes != want:
        got = st.header_bytes
        i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                 min(len(got), len(want)))
        problems.append("%s: header differs from save_file layout at byte %d: got %r want %r"
                        % (st.path, i, got[max(0, i - 40):i + 40], want[max(0, i - 40):i + 40]))
    return problems


def load_model_dir(model_dir):
    """Read a HF model directory: (config dict, {name: tensor in stored dtype},
    {name: file name}, [SafetensorsFile...])."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            wm = json.load(f)["weight_map"]
        files = sorted(set(wm.values()))
    else:
        files = ["model.safetensors"]
    tensors, where, sts = {}, {}, []
    for fn in files:
        st = SafetensorsFile(os.path.join(model_dir, fn))
        sts.append(st)
        for k in st.names():
            if k in tensors:
                raise ValueError("%s in two shards" % k)
            tensors[k] = st.tensor(k)
            where[k] = fn
    return config, tensors, where, sts


# ---------------------------------------------------------------------------
# reference merge
# ---------------------------------------------------------------------------

def canonical_adapter_key(key):
    """Adapter key -> key relative to the base model, adapter name and
    .base_layer removed."""
    if key.startswith("base_model.model."):
        key = key[len("base_model.model."):]
    key = re.sub(r"\.default(?=\.|$)", "", key)
    return key.replace(".base_layer.", ".")


LORA_SUFFIXES = [(".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_B.bias", "B_bias"),
                 (".lora_embedding_A", "EA"), (".lora_embedding_B", "EB"),
                 (".lora_magnitude_vector.weight", "M"), (".lora_magnitude_vector", "M")]


def split_adapter(tensors):
    """Group adapter tensors: ({module: {part: tensor}}, {base name: tensor})."""
    lora, full = {}, {}
    for key, t in tensors.items():
        k = canonical_adapter_key(key)
        for suffix, part in LORA_SUFFIXES:
            if k.endswith(suffix):
                lora.setdefault(k[:-len(suffix)], {})[part] = t
                break
        else:
            full[k] = t
    return lora, full


def alpha_for(module, cfg):
    """alpha_pattern resolution (PEFT get_pattern_key), else lora_alpha."""
    for k, v in (cfg.get("alpha_pattern") or {}).items():
        if re.match(r"(.*\.)?(%s)$" % k, module):
            return v
    return cfg["lora_alpha"]


def lora_factor(module, r, cfg, weight):
    """float32(s * weight), s = alpha/r or alpha/sqrt(r), in double then rounded once."""
    alpha = float(alpha_for(module, cfg))
    s = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    return torch.tensor(s * float(weight), dtype=torch.float64).to(torch.float32)


def embedding_name(names):
    """The input embedding tensor name of a llama/gpt2-style checkpoint."""
    for cand in ("model.embed_tokens.weight", "transformer.wte.weight", "embed_tokens.weight"):
        if cand in names:
            return cand
    raise ValueError("no input embedding in the base")


class RefResult:
    """Reference merge result.

    tensors: {name: float32 tensor before output rounding}
    config_changes: {config key: expected value} (keys not listed must be unchanged)
    tied: whether the output stays tied (no lm_head.weight)
    """

    def __init__(self, model_dir, base_config, tensors, config_changes, base_dtype):
        self.model_dir = model_dir
        self.base_config = base_config
        self.tensors = tensors
        self.config_changes = config_changes
        self.base_dtype = base_dtype


def reference_merge(model_dir, adapters):
    """Merge [(adapter_dir, weight), ...] into the model at `model_dir`.

    Returns a RefResult (float32 tensors, expected config changes)."""
    config, base, _, _ = load_model_dir(model_dir)
    dtypes = {t.dtype for t in base.values()}
    base_dtype = next(iter(dtypes)) if len(dtypes) == 1 else torch.float32
    W = {k: v.to(torch.float32).clone() for k, v in base.items()}
    embed = embedding_name(W)
    changes = {}

    loaded = []
    for adir, weight in adapters:
        with open(os.path.join(adir, "adapter_config.json")) as f:
            acfg = json.load(f)
        if acfg.get("peft_type", "LORA") != "LORA":
            raise ValueError("reference only merges LORA adapters")
        st = SafetensorsFile(os.path.join(adir, "adapter_model.safetensors"))
        lora, full = split_adapter(st.tensors())
        loaded.append((acfg, lora, full, weight))

    embed_module = embed[:-len(".weight")]
    tied = "lm_head.weight" not in W
    if tied:
        touches = any("lm_head" in lora or "lm_head.weight" in full
                      or embed_module in lora or embed in full
                      for _, lora, full, _ in loaded)
        if touches:
            W["lm_head.weight"] = W[embed].clone()
            changes["tie_word_embeddings"] = False

    for acfg, lora, full, weight in loaded:
        fan_in_fan_out = bool(acfg.get("fan_in_fan_out"))
        mts = acfg.get("modules_to_save") or []
        emb_is_mts_copy = any(embed_module == m or embed_module.endswith("." + m) for m in mts)
        # 1. full tensors replace base tensors
        for name, t in full.items():
            if name not in W:
                raise ValueError("adapter tensor %s has no base tensor" % name)
            if t.shape != W[name].shape and name not in (embed, "lm_head.weight"):
                raise ValueError("adapter tensor %s has shape %s, base %s"
                                 % (name, list(t.shape), list(W[name].shape)))
            W[name] = t.to(torch.float32).clone()
        if (tied and embed in full and "lm_head.weight" not in full
                and not emb_is_mts_copy):
            # saved embedding layer = the shared (possibly resized) tensor
            W["lm_head.weight"] = full[embed].to(torch.float32).clone()
        # 2. LoRA deltas
        for module, parts in lora.items():
            wname = module + ".weight"
            if wname not in W:
                raise ValueError("LoRA module %s has no base weight" % module)
            if "EA" in parts or "EB" in parts:
                A = parts["EA"].to(torch.float32)
                B = parts["EB"].to(torch.float32)
                factor = lora_factor(module, A.shape[0], acfg, weight)
                delta = torch.matmul(B, A).t() * factor
                w_eff = W[wname] + delta                  # [vocab, dim]
                if "M" in parts:
                    # DoraEmbeddingLayer: norm per embedding dimension (over
                    # the vocabulary), factor applied per column
                    m = parts["M"].to(torch.float32)
                    norm = torch.linalg.norm(w_eff, dim=0)
                    w_eff = w_eff * (m / norm)[None, :]
                W[wname] = w_eff
                continue
            A = parts["A"].to(torch.float32)
            B = parts["B"].to(torch.float32)
            factor = lora_factor(module, A.shape[0], acfg, weight)
            delta = torch.matmul(B, A) * factor          # [out, in]
            fifo = fan_in_fan_out and module != "lm_head"
            w = W[wname].t() if fifo else W[wname]      # [out, in] view
            if w.shape != delta.shape:
                raise ValueError("%s: delta %s vs weight %s"
                                 % (module, list(delta.shape), list(w.shape)))
            w_eff = w + delta
            if "M" in parts:
                m = parts["M"].to(torch.float32)
                norm = torch.linalg.norm(w_eff, dim=1)
                w_eff = (m / norm)[:, None] * w_eff
            W[wname] = (w_eff.t() if fifo else w_eff).contiguous()
            if "B_bias" in parts:
                bname = module + ".bias"
                if bname not in W:
                    raise ValueError("lora_B.bias for %s, but the base has no bias" % module)
                W[bname] = W[bname] + parts["B_bias"].to(torch.float32) * factor

    vocab = W[embed].shape[0]
    vocab_key = "vocab_size"
    if config.get(vocab_key) != vocab:
        changes[vocab_key] = vocab
    if "lm_head.weight" in W and W["lm_head.weight"].shape[0] != vocab:
        raise ValueError("lm_head rows %d != embedding rows %d"
                         % (W["lm_head.weight"].shape[0], vocab))
    return RefResult(model_dir, config, W, changes, base_dtype)


# ---------------------------------------------------------------------------
# comparison with smelt's merged16 output
# ---------------------------------------------------------------------------

def ordered_bits(t):
    """Map float tensors to integers whose difference is the distance in ulps."""
    if t.dtype in (torch.bfloat16, torch.float16):
        b = t.view(torch.int16).to(torch.int64)
        return torch.where(b < 0, -(b & 0x7FFF), b)
    if t.dtype == torch.float32:
        b = t.view(torch.int32).to(torch.int64)
        return torch.where(b < 0, -(b & 0x7FFFFFFF), b)
    raise ValueError("unsupported dtype %s" % t.dtype)


class CompareReport:
    """Outcome of compare(): ok, errors, max_ulp, n_one_ulp, n_elements."""

    def __init__(self):
        self.errors = []
        self.notes = []
        self.max_ulp = 0
        self.n_one_ulp = 0
        self.n_elements = 0

    @property
    def ok(self):
        return not self.errors

    def summary(self):
        return "max ulp %d, %d of %d elements 1 ulp" % (self.max_ulp, self.n_one_ulp,
                                                        self.n_elements)


def read_output_dir(out_dir, report, max_shard_size=None):
    """Read smelt's merged16 output, checking the safetensors layout of every
    file and the index.  Returns {name: tensor}."""
    index_path = os.path.join(out_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index_path):
        text = open(index_path, encoding="utf-8").read()
        index = json.loads(text)
        if json.dumps(index, indent=2, sort_keys=True) + "\n" != text:
            report.errors.append("index json is not json.dumps(indent=2, sort_keys=True)+'\\n'")
        keys = list(json.loads(text, object_pairs_hook=lambda p: p))
        wm_pairs = dict(keys).get("weight_map", [])
        names = [k for k, _ in wm_pairs]
        if names != sorted(names):
            report.errors.append("index weight_map is not sorted")
        wm = dict(wm_pairs)
        files = sorted(set(wm.values()))
        n = len(files)
        want_files = ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]
        if files != want_files:
            report.errors.append("shard names %s, want %s" % (files, want_files))
        if os.path.exists(os.path.join(out_dir, "model.safetensors")):
            report.errors.append("both model.safetensors and an index")
        total = 0
        for fn in files:
            st = SafetensorsFile(os.path.join(out_dir, fn))
            report.errors += check_save_file_layout(st)
            shard_bytes = 0
            for k, dtype, shape, begin, end in st.entries:
                if wm.get(k) != fn:
                    report.errors.append("%s is in %s but the index says %s" % (k, fn, wm.get(k)))
                tensors[k] = st.tensor(k)
                shard_bytes += end - begin
            if max_shard_size and shard_bytes > max_shard_size and len(st.entries) > 1:
                report.errors.append("%s has %d bytes > MaxShardSize %d"
                                     % (fn, shard_bytes, max_shard_size))
            total += shard_bytes
        missing = set(wm) - set(tensors)
        if missing:
            report.errors.append("index lists tensors not in shards: %s" % sorted(missing)[:5])
        if index.get("metadata", {}).get("total_size") != total:
            report.errors.append("index total_size %s != sum of tensor bytes %d"
                                 % (index.get("metadata", {}).get("total_size"), total))
        report.notes.append("%d shards" % n)
    else:
        st = SafetensorsFile(os.path.join(out_dir, "model.safetensors"))
        report.errors += check_save_file_layout(st)
        tensors = st.tensors()
    return tensors


def compare(smelt_out_dir, ref, dtype, max_shard_size=None, max_one_ulp_fraction=0.01):
    """Compare smelt's merged16 output directory with a RefResult.

    dtype: "bf16", "fp16" or "auto" (the base dtype).  Every element must equal
    the RNE-rounded reference or be exactly 1 ulp away; the fraction of 1-ulp
    elements must stay under max_one_ulp_fraction.  Also checks config.json,
    the copied generation_config/tokenizer files and the file layout.
    Returns a CompareReport.
    """
    report = CompareReport()
    if dtype == "auto":
        out_dtype = ref.base_dtype
    else:
        out_dtype = OUT_DTYPES[dtype][0]
    try:
        got = read_output_dir(smelt_out_dir, report, max_shard_size)
    except (OSError, ValueError) as e:
        report.errors.append("cannot read output: %s" % e)
        return report

    if set(got) != set(ref.tensors):
        report.errors.append("tensor names differ: missing %s, unexpected %s"
                             % (sorted(set(ref.tensors) - set(got))[:8],
                                sorted(set(got) - set(ref.tensors))[:8]))
    for name in sorted(set(got) & set(ref.tensors)):
        g, r32 = got[name], ref.tensors[name]
        if list(g.shape) != list(r32.shape):
            report.errors.append("%s: shape %s, want %s" % (name, list(g.shape), list(r32.shape)))
            continue
        if g.dtype != out_dtype:
            report.errors.append("%s: dtype %s, want %s" % (name, g.dtype, out_dtype))
            continue
        want = r32.to(out_dtype)
        diff = (ordered_bits(g) - ordered_bits(want)).abs()
        nan_mismatch = (torch.isnan(g.float()) != torch.isnan(want.float())).sum().item()
        n1 = int((diff == 1).sum().item())
        mx = int(diff.max().item()) if diff.numel() else 0
        report.n_elements += diff.numel()
        report.n_one_ulp += n1
        report.max_ulp = max(report.max_ulp, mx)
        if mx > 1 or nan_mismatch:
            idx = int(diff.flatten().argmax().item())
            report.errors.append("%s: %d elements > 1 ulp off (max %d ulp; at flat index %d "
                                 "got %r want %r, fp32 reference %r)"
                                 % (name, int((diff > 1).sum().item()), mx, idx,
                                    g.flatten()[idx].item(), want.flatten()[idx].item(),
                                    r32.flatten()[idx].item()))
    if report.n_elements and report.n_one_ulp > max_one_ulp_fraction * report.n_elements:
        report.errors.append("too many 1-ulp differences: %d of %d"
                             % (report.n_one_ulp, report.n_elements))

    compare_config(smelt_out_dir, ref, TORCH_NAME[out_dtype], report)
    for fn in ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json"):
        src = os.path.join(ref.model_dir, fn)
        dst = os.path.join(smelt_out_dir, fn)
        if os.path.exists(src):
            if not os.path.exists(dst):
                report.errors.append("%s not copied" % fn)
            elif open(src, "rb").read() != open(dst, "rb").read():
                report.errors.append("%s differs from the base's" % fn)
    leftovers = [f for f in os.listdir(smelt_out_dir) if f.endswith(".partial")]
    if leftovers:
        report.errors.append("partial files left: %s" % leftovers)
    return report


def compare_config(out_dir, ref, torch_dtype_name, report):
    """config.json: torch_dtype set, quantization_config removed, vocab_size /
    tie_word_embeddings as the reference expects, all other keys unchanged."""
    try:
        with open(os.path.join(out_dir, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        report.errors.append("config.json: %s" % e)
        return
    want = dict(ref.base_config)
    want.pop("quantization_config", None)
    want["torch_dtype"] = torch_dtype_name
    want.update(ref.config_changes)
    if "quantization_config" in cfg:
        report.errors.append("config.json still has quantization_config")
    for k, v in want.items():
        if k not in cfg:
            report.errors.append("config.json lacks %s" % k)
        elif cfg[k] != v:
            report.errors.append("config.json %s = %r, want %r" % (k, cfg[k], v))
    extra = sorted(set(cfg) - set(want))
    if extra:
        report.notes.append("config.json added keys %s" % extra)


# ---------------------------------------------------------------------------
# self-test: the reference against a hand-written merge on generated data
# ---------------------------------------------------------------------------

def _selftest(workdir):
    """Generate a few cases with tests/gen, check the generator's safetensors
    with this reader, and check reference_merge against itself written out."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "gen"))
    import gen_tiny_model as gen  # only for data; no code shared with the reference
    os.makedirs(workdir, exist_ok=True)
    m = gen.generate_model(os.path.join(workdir, "m"), dtype="bf16", shards=3, seed=3)
    _, base, _, sts = load_model_dir(m)
    for st in sts:
        probs = check_save_file_layout(st)
        assert not probs, probs
    a = gen.generate_adapter(os.path.join(workdir, "a"), m, seed=4, dora=True, lora_bias=False)
    st = SafetensorsFile(os.path.join(a, "adapter_model.safetensors"))
    assert not check_save_file_layout(st)
    ref = reference_merge(m, [(a, 1.0)])
    # hand check one module the long way (double precision)
    mod = "model.layers.1.self_attn.v_proj"
    A = st.tensor("base_model.model.%s.lora_A.weight" % mod).double()
    B = st.tensor("base_model.model.%s.lora_B.weight" % mod).double()
    mag = st.tensor("base_model.model.%s.lora_magnitude_vector" % mod).double()
    W = base[mod + ".weight"].double()
    weff = W + (B @ A) * (16 / A.shape[0])
    want = (mag / weff.norm(dim=1))[:, None] * weff
    err = (ref.tensors[mod + ".weight"].double() - want).abs().max().item()
    assert err < 1e-5, err
    # write the rounded reference in smelt's output shape and compare to itself
    out = os.path.join(workdir, "out")
    os.makedirs(out, exist_ok=True)
    rounded = {k: v.to(torch.bfloat16) for k, v in ref.tensors.items()}
    entries = [(k, "BF16", list(v.shape)) for k, v in rounded.items()]
    header = expected_save_file_header(entries)
    order = sorted(entries, key=lambda e: e[0].encode())
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for k, _, _ in order:
            f.write(rounded[k].contiguous().view(torch.int16).numpy().tobytes())
    cfg = dict(ref.base_config)
    cfg["torch_dtype"] = "bfloat16"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    import shutil
    for fn in ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json"):
        shutil.copyfile(os.path.join(m, fn), os.path.join(out, fn))
    rep = compare(out, ref, "bf16")
    assert rep.ok and rep.max_ulp == 0, rep.errors
    # a 1-ulp nudge is tolerated, a 2-ulp one is not
    k = "model.layers.0.mlp.up_proj.weight"
    bumped = dict(rounded)
    for step, ok in ((1, True), (2, False)):
        t = rounded[k].clone().view(torch.int16)
        t[0, 0] += step
        bumped[k] = t.view(torch.bfloat16)
        with open(os.path.join(out, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            for name, _, _ in order:
                f.write(bumped[name].contiguous().view(torch.int16).numpy().tobytes())
        rep = compare(out, ref, "bf16")
        assert rep.ok == ok, (step, rep.errors)
    print("merge_ref self-test ok")


if __name__ == "__main__":
    import argparse
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--selftest", action="store_true")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    if args.selftest:
        _selftest(args.workdir or tempfile.mkdtemp(prefix="merge-ref-"))
    else:
        p.print_help()

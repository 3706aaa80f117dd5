#!/usr/bin/env python3
"""Deterministic generator of tiny Hugging Face models, PEFT LoRA adapters and
smelt recipes, for smelt's tests and benchmarks.

Everything is seeded (numpy Generator(PCG64(seed))): the same arguments give
byte-identical files.  Only numpy is needed (no torch, no safetensors package).

Subcommands:

  model OUT --arch llama|gpt2 --dtype bf16|fp16|f32 [--layers 2] [--hidden 64]
        [--intermediate 160] [--heads 4] [--kv-heads 2] [--vocab 384] [--tie]
        [--attention-bias] [--shards N] [--seed S]
  adapter OUT --base MODELDIR [--rank 8] [--alpha 16] [--targets q_proj,...]
        [--dtype f32|bf16|fp16] [--rslora] [--dora] [--fan-in-fan-out]
        [--embedding-lora] [--lm-head-lora] [--lora-bias] [--bias none|all|lora_only]
        [--modules-to-save lm_head,embed_tokens] [--resize-vocab N]
        [--rank-pattern q_proj=4,...] [--alpha-pattern v_proj=32,...]
        [--keep-adapter-name] [--save-embedding-layers] [--peft-type X]
        [--init-lora-weights pissa] [--layer-replication] [--seed S]
  recipe OUT.smelt --model DIR [--adapter DIR]... [--weights 1.0,0.5]
        --export NAME:FORMAT:DEST_DIR[:Key=Val,...]...
  demo OUT_DIR
  selftest

Run with /usr/bin/python3 (Debian's python3-numpy).
"""

import importlib

try:  # numpy/torch live in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:  # e.g. a pyenv python3 first in PATH: use Debian's
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import argparse
import json
import os
import re
import struct
import sys
import zlib

import numpy as np

# ---------------------------------------------------------------------------
# dtypes and rounding
# ---------------------------------------------------------------------------

#: safetensors dtype name -> element size in bytes (only what we write/read)
DTYPE_SIZE = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4,
              "I16": 2, "U16": 2, "U8": 1, "I8": 1, "BOOL": 1}

#: safetensors' Dtype enum order (tensor.rs), ascending.  The writer sorts by
#: this order *descending*, then by name.
DTYPE_ENUM_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2",
                    "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",
                    "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64",
                    "I64", "U64"]

#: CLI spelling -> safetensors dtype
CLI_DTYPES = {"f32": "F32", "bf16": "BF16", "fp16": "F16"}

#: safetensors dtype -> config.json torch_dtype
TORCH_DTYPE_NAME = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}

#: numpy storage dtype for each safetensors dtype (BF16 is kept as raw bits)
NP_STORAGE = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16,
              "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "U16": np.uint16, "U8": np.uint8, "I8": np.int8,
              "BOOL": np.bool_}


def f32_to_bf16_bits(x):
    """Round float32 values to bfloat16 with round-to-nearest-even.

    Returns a uint16 array of bf16 bit patterns.  NaN becomes a quiet NaN
    with the same sign (0x7FC0 / 0xFFC0), infinities stay infinities.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lsb) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        sign = ((bits >> 16) & 0x8000).astype(np.uint16)
        rounded = np.where(nan, sign | np.uint16(0x7FC0), rounded)
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b):
    """Widen bf16 bit patterns (uint16) to float32 exactly."""
    b = np.ascontiguousarray(b, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


def to_storage(x, dtype):
    """Round float32 values to the storage array of safetensors dtype `dtype`
    (RNE for BF16 and F16; numpy's float16 cast is RNE)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return np.ascontiguousarray(x)
    if dtype == "F16":
        return np.ascontiguousarray(x.astype(np.float16))
    if dtype == "BF16":
        return f32_to_bf16_bits(x)
    raise ValueError("unsupported dtype %s" % dtype)


def storage_to_f32(arr, dtype):
    """Widen a storage array (see to_storage) to float32 exactly."""
    if dtype == "BF16":
        return bf16_bits_to_f32(arr)
    return np.asarray(arr).astype(np.float32)


# ---------------------------------------------------------------------------
# safetensors writer / reader (the generator's own; the reference has another)
# ---------------------------------------------------------------------------

class Entry:
    """One tensor to write: name, safetensors dtype, shape and data.

    `data` is either a numpy storage array (see to_storage) or a callable
    returning an iterable of numpy arrays whose concatenated bytes are the
    tensor data (used to stream large tensors without materializing them).
    """

    def __init__(self, name, dtype, shape, data):
        self.name = name
        self.dtype = dtype
        self.shape = [int(d) for d in shape]
        self.data = data

    @property
    def nbytes(self):
        n = DTYPE_SIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n

    def chunks(self):
        """Yield the tensor's data as contiguous numpy arrays."""
        if callable(self.data):
            yield from self.data()
        else:
            yield np.ascontiguousarray(self.data)


def entry_from_array(name, dtype, arr):
    """Entry for a storage array, taking the shape from the array."""
    return Entry(name, dtype, arr.shape, arr)


def safetensors_layout(entries, metadata=None):
    """Lay tensors out as safetensors.torch.save_file does.

    Sorted by dtype (enum order) descending then by name, offsets contiguous,
    compact JSON with "__metadata__" first, header padded with spaces to a
    multiple of 8.  Returns (header_bytes, sorted_entries).
    """
    if metadata is None:
        metadata = {"format": "pt"}
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names")
    ordered = sorted(entries, key=lambda e: (-DTYPE_ENUM_ORDER.index(e.dtype),
                                             e.name.encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for e in ordered:
        header[e.name] = {"dtype": e.dtype, "shape": e.shape,
                          "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return raw, ordered


def write_safetensors(path, entries, metadata=None):
    """Write `entries` (list of Entry) to a safetensors file at `path`."""
    header, ordered = safetensors_layout(entries, metadata)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for e in ordered:
            written = 0
            for chunk in e.chunks():
                chunk = np.ascontiguousarray(chunk)
                if chunk.dtype.byteorder == ">":
                    raise ValueError("big-endian data")
                f.write(memoryview(chunk).cast("B"))
                written += chunk.nbytes
            if written != e.nbytes:
                raise ValueError("%s: wrote %d bytes, expected %d"
                                 % (e.name, written, e.nbytes))


def read_safetensors_header(path):
    """Return (header dict without __metadata__, data start offset)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    return header, 8 + n


def read_safetensors(path, names=None):
    """Read tensors of a safetensors file as {name: (dtype, storage array)}."""
    header, start = read_safetensors_header(path)
    out = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        dtype = info["dtype"]
        begin, end = info["data_offsets"]
        count = (end - begin) // DTYPE_SIZE[dtype]
        arr = np.fromfile(path, dtype=NP_STORAGE[dtype], count=count, offset=start + begin)
        out[name] = (dtype, arr.reshape(info["shape"]))
    return out


class ModelFiles:
    """Index of a model directory's tensors: name -> (file, dtype, shape)."""

    def __init__(self, model_dir):
        self.dir = model_dir
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        index = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.tensors = {}
        for fn in files:
            path = os.path.join(model_dir, fn)
            header, _ = read_safetensors_header(path)
            for name, info in header.items():
                self.tensors[name] = (path, info["dtype"], info["shape"])

    def shape(self, name):
        return list(self.tensors[name][2])

    def dtype(self, name):
        return self.tensors[name][1]

    def f32(self, name):
        """The tensor widened to float32."""
        path, dtype, _ = self.tensors[name]
        return storage_to_f32(read_safetensors(path, {name})[name][1], dtype)


# ---------------------------------------------------------------------------
# tokenizer files
# ---------------------------------------------------------------------------

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
ADDED_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def make_bpe_vocab(vocab_size, seed):
    """A byte-level BPE vocabulary of exactly `vocab_size` tokens.

    ids 0..2 are <unk>, <s>, </s>; then the 256 byte tokens; then merges;
    the added special tokens take the last ids.  Returns (vocab dict for the
    model, merges list, added token list [(id, content)]).
    """
    fixed = len(SPECIAL_TOKENS) + 256 + len(ADDED_SPECIAL_TOKENS)
    if vocab_size < fixed:
        raise SystemExit("vocab must be at least %d" % fixed)
    vocab = {}
    for t in SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    b2u = bytes_to_unicode()
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    # merges: breadth-first "piece + seed character" over a seeded permutation
    # of the lowercase letters and the space marker (fast, always unique)
    rng = np.random.Generator(np.random.PCG64(seed + 7919))
    seeds = [b2u[c] for c in b"abcdefghijklmnopqrstuvwxyz "]
    seeds = [seeds[i] for i in rng.permutation(len(seeds))]
    merges = []
    n_merges = vocab_size - fixed
    level = seeds
    while len(merges) < n_merges:
        nxt = []
        for a in level:
            for b in seeds:
                if len(merges) == n_merges:
                    break
                vocab[a + b] = len(vocab)
                merges.append("%s %s" % (a, b))
                nxt.append(a + b)
        level = nxt
    added = [(len(vocab) + k, t) for k, t in enumerate(ADDED_SPECIAL_TOKENS)]
    return vocab, merges, added


def added_token_json(tid, content):
    """tokenizers' AddedToken serialization."""
    return {"id": tid, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True}


def write_tokenizer(out, vocab_size, seed):
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    vocab, merges, added = make_bpe_vocab(vocab_size, seed)
    specials = [(vocab[t], t) for t in SPECIAL_TOKENS] + added
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token_json(i, t) for i, t in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, indent=2, ensure_ascii=False)
    decoder = {}
    for i, t in specials:
        d = added_token_json(i, t)
        del d["id"]
        decoder[str(i)] = d
    tcfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": list(ADDED_SPECIAL_TOKENS),
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "extra_special_tokens": {},
        "legacy": False,
        "model_max_length": 2048,
        "pad_token": None,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tcfg, f, indent=2, ensure_ascii=False)
        f.write("\n")

    def tokdict(t):
        return {"content": t, "lstrip": False, "normalized": False,
                "rstrip": False, "single_word": False}
    stm = {"additional_special_tokens": [tokdict(t) for t in ADDED_SPECIAL_TOKENS],
           "bos_token": tokdict("<s>"), "eos_token": tokdict("</s>"),
           "unk_token": tokdict("<unk>")}
    with open(os.path.join(out, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(stm, f, indent=2, ensure_ascii=False)
        f.write("\n")


TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------


def dump_hf_json(path, obj):
    """json.dumps(indent=2, sort_keys=True) + "\\n", as transformers writes configs."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def llama_config(a, dtype):
    """A realistic LlamaForCausalLM config.json dict."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": bool(a.attention_bias),
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": a.hidden // a.heads,
        "hidden_act": "silu",
        "hidden_size": a.hidden,
        "initializer_range": 0.02,
        "intermediate_size": a.intermediate,
        "max_position_embeddings": 2048,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": a.heads,
        "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": bool(a.tie),
        "torch_dtype": TORCH_DTYPE_NAME[dtype],
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": a.vocab,
    }


def gpt2_config(a, dtype):
    """A realistic GPT2LMHeadModel config.json dict (tied: no lm_head in the file,
    and like the real gpt2 config no explicit tie_word_embeddings key)."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 1,
        "embd_pdrop": 0.1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": 1024,
        "n_embd": a.hidden,
        "n_head": a.heads,
        "n_inner": None,
        "n_layer": a.layers,
        "n_positions": 1024,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": TORCH_DTYPE_NAME[dtype],
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": a.vocab,
    }


def model_tensor_specs(a):
    """Tensor list in state-dict (module registration) order.

    Returns [(name, shape, kind)] with kind in matrix|norm|bias.
    """
    specs = []
    h, v = a.hidden, a.vocab
    if a.arch == "llama":
        hd = h // a.heads
        q_out, kv_out = a.heads * hd, a.kv_heads * hd
        specs.append(("model.embed_tokens.weight", [v, h], "matrix"))
        for i in range(a.layers):
            p = "model.layers.%d." % i
            for proj, shape in (("q_proj", [q_out, h]), ("k_proj", [kv_out, h]),
                                ("v_proj", [kv_out, h]), ("o_proj", [h, q_out])):
                specs.append((p + "self_attn.%s.weight" % proj, shape, "matrix"))
                if a.attention_bias:
                    # transformers' LlamaAttention uses bias=attention_bias for
                    # q, k, v *and* o.
                    specs.append((p + "self_attn.%s.bias" % proj, [shape[0]], "bias"))
            specs.append((p + "mlp.gate_proj.weight", [a.intermediate, h], "matrix"))
            specs.append((p + "mlp.up_proj.weight", [a.intermediate, h], "matrix"))
            specs.append((p + "mlp.down_proj.weight", [h, a.intermediate], "matrix"))
            specs.append((p + "input_layernorm.weight", [h], "norm"))
            specs.append((p + "post_attention_layernorm.weight", [h], "norm"))
        specs.append(("model.norm.weight", [h], "norm"))
        if not a.tie:
            specs.append(("lm_head.weight", [v, h], "matrix"))
    elif a.arch == "gpt2":
        inner = 4 * h
        specs.append(("transformer.wte.weight", [v, h], "matrix"))
        specs.append(("transformer.wpe.weight", [1024, h], "matrix"))
        for i in range(a.layers):
            p = "transformer.h.%d." % i
            specs += [
                (p + "ln_1.weight", [h], "norm"), (p + "ln_1.bias", [h], "bias"),
                # Conv1D: weight is [in, out]
                (p + "attn.c_attn.weight", [h, 3 * h], "matrix"),
                (p + "attn.c_attn.bias", [3 * h], "bias"),
                (p + "attn.c_proj.weight", [h, h], "matrix"),
                (p + "attn.c_proj.bias", [h], "bias"),
                (p + "ln_2.weight", [h], "norm"), (p + "ln_2.bias", [h], "bias"),
                (p + "mlp.c_fc.weight", [h, inner], "matrix"),
                (p + "mlp.c_fc.bias", [inner], "bias"),
                (p + "mlp.c_proj.weight", [inner, h], "matrix"),
                (p + "mlp.c_proj.bias", [h], "bias"),
            ]
        specs += [("transformer.ln_f.weight", [h], "norm"),
                  ("transformer.ln_f.bias", [h], "bias")]
    else:
        raise SystemExit("unknown arch %s" % a.arch)
    return specs


def random_values(rng, shape, kind):
    """float32 values for a tensor kind: N(0, 0.02) matrices/biases, norms ~1."""
    if kind == "norm":
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


class BlockFill:
    """Fast plausible weights for big models: one random block (default 32 Mi
    elements = 64 MiB as bf16) reused with a per-tensor offset.  No copies:
    the writer gets slices of the block."""

    def __init__(self, dtype, seed, elements=32 * 1024 * 1024):
        rng = np.random.Generator(np.random.PCG64(seed))
        self.block = to_storage(0.02 * rng.standard_normal(elements, dtype=np.float32), dtype)

    def producer(self, name, numel):
        """A callable yielding `numel` elements starting at a name-derived offset."""
        block = self.block
        n = block.size
        start = (zlib.crc32(name.encode()) * 2654435761) % n

        def gen():
            pos, left = start, numel
            while left:
                take = min(left, n - pos)
                yield block[pos:pos + take]
                left -= take
                pos = 0
        return gen


def split_shards(sizes, n_shards):
    """Split tensors (in order) into n_shards contiguous groups of about equal
    bytes.  Returns the list of start indices of each shard."""
    n = len(sizes)
    if n_shards < 1 or n_shards > n:
        raise SystemExit("cannot split %d tensors into %d shards" % (n, n_shards))
    total = sum(sizes)
    starts = [0]
    acc = 0
    for i, s in enumerate(sizes):
        k = len(starts)
        if k < n_shards and i > starts[-1] and acc >= total * k / n_shards:
            starts.append(i)
        acc += s
    # not enough cut points (a huge last tensor): cut at the end
    while len(starts) < n_shards:
        starts.append(None)
    for k in range(n_shards - 1, 0, -1):
        limit = n - (n_shards - k)
        if starts[k] is None or starts[k] > limit:
            starts[k] = limit
        if starts[k] <= starts[k - 1]:
            starts[k - 1] = starts[k] - 1
    return starts


def write_model_weights(out, entries, shards):
    """Write entries (state-dict order) as model.safetensors or N shards + index."""
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), entries)
        return
    starts = split_shards([e.nbytes for e in entries], shards) + [len(entries)]
    weight_map = {}
    for k in range(shards):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        group = entries[starts[k]:starts[k + 1]]
        write_safetensors(os.path.join(out, fn), group)
        for e in group:
            weight_map[e.name] = fn
    index = {"metadata": {"total_size": sum(e.nbytes for e in entries)},
             "weight_map": weight_map}
    dump_hf_json(os.path.join(out, "model.safetensors.index.json"), index)


def generate_model(out, arch="llama", dtype="bf16", layers=2, hidden=64,
                   intermediate=160, heads=4, kv_heads=2, vocab=384, tie=False,
                   attention_bias=False, shards=1, seed=0, fill="random"):
    """Write a complete tiny HF model directory to `out`.

    fill="random" draws every value from the seeded generator; fill="block"
    uses BlockFill (fast, for benchmark-sized models).
    """
    a = argparse.Namespace(arch=arch, layers=layers, hidden=hidden,
                           intermediate=intermediate, heads=heads, kv_heads=kv_heads,
                           vocab=vocab, tie=tie or arch == "gpt2",
                           attention_bias=attention_bias)
    st_dtype = CLI_DTYPES[dtype]
    if arch == "llama" and hidden % heads:
        raise SystemExit("hidden must be a multiple of heads")
    os.makedirs(out, exist_ok=True)
    config = llama_config(a, st_dtype) if arch == "llama" else gpt2_config(a, st_dtype)
    dump_hf_json(os.path.join(out, "config.json"), config)
    gen_cfg = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
               "transformers_version": "4.46.3"}
    if arch == "llama":
        gen_cfg.update({"do_sample": True, "temperature": 0.6, "top_p": 0.9,
                        "max_length": 2048})
    dump_hf_json(os.path.join(out, "generation_config.json"), gen_cfg)
    write_tokenizer(out, vocab, seed)

    rng = np.random.Generator(np.random.PCG64(seed))
    block = BlockFill(st_dtype, seed) if fill == "block" else None
    entries = []
    for name, shape, kind in model_tensor_specs(a):
        numel = int(np.prod(shape))
        if block is not None and kind == "matrix":
            entries.append(Entry(name, st_dtype, shape, block.producer(name, numel)))
        else:
            entries.append(Entry(name, st_dtype, shape,
                                 to_storage(random_values(rng, shape, kind), st_dtype)))
    write_model_weights(out, entries, shards)
    return out


# ---------------------------------------------------------------------------
# adapter
# ---------------------------------------------------------------------------

def pattern_key(pattern_keys, module):
    """PEFT's get_pattern_key: first key K (dict order) with
    re.match(r"(.*\\.)?(K)$", module), else None."""
    for k in pattern_keys:
        if re.match(r"(.*\.)?(%s)$" % k, module):
            return k
    return None


def parse_kv_list(text, conv):
    """Parse "a=1,b=2" into an ordered dict with converted values."""
    out = {}
    if not text:
        return out
    for item in text.split(","):
        k, _, v = item.partition("=")
        out[k.strip()] = conv(v)
    return out


def num(text):
    """int if integral text, else float (keeps JSON ints ints)."""
    f = float(text)
    return int(f) if f == int(f) and "." not in text else f


def module_matches(module, targets):
    """PEFT list target matching: exact name or '.'-separated suffix."""
    return any(module == t or module.endswith("." + t) for t in targets)


def adapter_default_config(base_dir):
    """All the fields PEFT 0.17's LoraConfig.to_dict() writes, with defaults."""
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": base_dir,
        "bias": "none",
        "corda_config": None,
        "eva_config": None,
        "exclude_modules": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": 16,
        "lora_bias": False,
        "lora_dropout": 0.05,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "peft_version": "0.17.1",
        "qalora_group_size": 16,
        "r": 8,
        "rank_pattern": {},
        "revision": None,
        "target_modules": [],
        "target_parameters": None,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": None,
        "use_dora": False,
        "use_qalora": False,
        "use_rslora": False,
    }


def generate_adapter(out, base, rank=8, alpha=16,
                     targets=("q_proj", "k_proj", "v_proj", "o_proj",
                              "gate_proj", "up_proj", "down_proj"),
                     dtype="f32", rslora=False, dora=False, fan_in_fan_out=False,
                     embedding_lora=False, lm_head_lora=False, lora_bias=False,
                     bias="none", modules_to_save=None, resize_vocab=None,
                     rank_pattern=None, alpha_pattern=None, keep_adapter_name=False,
                     save_embedding_layers=False, peft_type="LORA",
                     init_lora_weights=True, layer_replication=False, seed=1,
                     scale=0.05, base_name=None):
    """Write a PEFT LoRA adapter directory for the model at `base`.

    Key names follow what PEFT's save_pretrained writes (formats.md 3.2).
    A and B are N(0, scale) so deltas are visible after 16-bit rounding.
    """
    rank_pattern = dict(rank_pattern or {})
    alpha_pattern = dict(alpha_pattern or {})
    st_dtype = CLI_DTYPES[dtype]
    mf = ModelFiles(base)
    cfg = mf.config
    is_gpt2 = cfg.get("model_type") == "gpt2"
    embed_mod = "transformer.wte" if is_gpt2 else "model.embed_tokens"
    embed_short = "wte" if is_gpt2 else "embed_tokens"
    tied = "lm_head.weight" not in mf.tensors
    rng = np.random.Generator(np.random.PCG64(seed))

    targets = list(targets)
    if embedding_lora and embed_short not in targets:
        targets.append(embed_short)
    if lm_head_lora and "lm_head" not in targets:
        targets.append("lm_head")

    # modules with a 2-D weight, in checkpoint order; tied lm_head is virtual
    modules = [n[:-len(".weight")] for n in mf.tensors
               if n.endswith(".weight") and len(mf.shape(n)) == 2]
    if tied:
        modules.append("lm_head")

    def weight_shape(module):
        if module == "lm_head" and tied:
            return mf.shape(embed_mod + ".weight")
        return mf.shape(module + ".weight")

    def weight_f32(module):
        if module == "lm_head" and tied:
            return mf.f32(embed_mod + ".weight")
        return mf.f32(module + ".weight")

    vocab = weight_shape(embed_mod)[0]
    new_vocab = resize_vocab if resize_vocab else vocab

    def key(module, suffix):
        return "base_model.model.%s.%s" % (module, suffix)

    def named(suffix):
        """Insert the adapter name like a raw state_dict dump would."""
        if not keep_adapter_name:
            return suffix
        return {"lora_A.weight": "lora_A.default.weight",
                "lora_B.weight": "lora_B.default.weight",
                "lora_B.bias": "lora_B.default.bias",
                "lora_embedding_A": "lora_embedding_A.default",
                "lora_embedding_B": "lora_embedding_B.default",
                "lora_magnitude_vector": "lora_magnitude_vector.default.weight"}[suffix]

    def lora_normal(shape):
        return to_storage(scale * rng.standard_normal(shape, dtype=np.float32), st_dtype)

    tensors = {}
    targeted = [m for m in modules if module_matches(m, targets)]
    if not targeted:
        raise SystemExit("no module of the base matches %s" % targets)
    targeted_set = set(targeted)

    # saved embedding layers (resized vocab, or embeddings targeted with
    # --save-embedding-layers): frozen base params, stored in the base dtype
    emb_layers = []
    if resize_vocab or (save_embedding_layers and embed_mod in targeted_set):
        emb_layers.append(embed_mod)
    if ((resize_vocab and not tied)
            or (save_embedding_layers and "lm_head" in targeted_set)):
        emb_layers.append("lm_head")
    for m in emb_layers:
        base_w = weight_f32(m)
        base_dtype = mf.dtype(embed_mod + ".weight")
        if new_vocab != vocab:
            keep = min(vocab, new_vocab)
            extra = 0.02 * rng.standard_normal((new_vocab - keep, base_w.shape[1]),
                                               dtype=np.float32)
            base_w = np.concatenate([base_w[:keep], extra]).astype(np.float32)
        suffix = "base_layer.weight" if m in targeted_set else "weight"
        tensors[key(m, suffix)] = (base_dtype, to_storage(base_w, base_dtype))

    for m in targeted:
        r = rank_pattern.get(pattern_key(rank_pattern, m), rank)
        if m == embed_mod:
            tensors[key(m, named("lora_embedding_A"))] = (st_dtype, lora_normal([r, new_vocab]))
            tensors[key(m, named("lora_embedding_B"))] = (st_dtype,
                                                           lora_normal([weight_shape(m)[1], r]))
            if dora:
                # DoraEmbeddingLayer: one magnitude per embedding dimension
                # (column norms of the [vocab, dim] weight)
                w = weight_f32(m)
                norm = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0))
                mag = norm * (1.0 + 0.05 * rng.standard_normal(norm.shape))
                tensors[key(m, named("lora_magnitude_vector"))] = (st_dtype,
                                                                    to_storage(mag, st_dtype))
            continue
        shape = weight_shape(m)
        if m == "lm_head":
            shape = [new_vocab, shape[1]]
        if fan_in_fan_out and m != "lm_head":
            fan_in, fan_out = shape[0], shape[1]
        else:
            fan_out, fan_in = shape[0], shape[1]
        tensors[key(m, named("lora_A.weight"))] = (st_dtype, lora_normal([r, fan_in]))
        tensors[key(m, named("lora_B.weight"))] = (st_dtype, lora_normal([fan_out, r]))
        if lora_bias:
            tensors[key(m, named("lora_B.bias"))] = (st_dtype, lora_normal([fan_out]))
        if dora:
            w = weight_f32(m)
            if fan_in_fan_out and m != "lm_head":
                w = w.T
            norm = np.sqrt((w.astype(np.float64) ** 2).sum(axis=1))
            mag = norm * (1.0 + 0.05 * rng.standard_normal(norm.shape))
            tensors[key(m, named("lora_magnitude_vector"))] = (st_dtype,
                                                                to_storage(mag, st_dtype))

    # bias="all": every bias of the model; "lora_only": biases of targeted modules
    if bias in ("all", "lora_only"):
        for n in mf.tensors:
            if not n.endswith(".bias"):
                continue
            m = n[:-len(".bias")]
            if m in targeted_set:
                k = key(m, "base_layer.bias")
            elif bias == "all":
                k = key(m, "bias")
            else:
                continue
            val = mf.f32(n) + 0.01 * rng.standard_normal(mf.shape(n), dtype=np.float32)
            tensors[k] = (st_dtype, to_storage(val, st_dtype))

    # modules_to_save: trained full copies of the listed modules
    for short in modules_to_save or []:
        matched = [m for m in modules if module_matches(m, [short])]
        if not matched:
            raise SystemExit("modules_to_save %s matches nothing" % short)
        for m in matched:
            w = weight_f32(m)
            val = w + 0.01 * rng.standard_normal(w.shape, dtype=np.float32)
            tensors[key(m, "weight")] = (st_dtype, to_storage(val, st_dtype))
            if m + ".bias" in mf.tensors:
                b = mf.f32(m + ".bias")
                tensors[key(m, "bias")] = (st_dtype, to_storage(
                    b + 0.01 * rng.standard_normal(b.shape, dtype=np.float32), st_dtype))

    os.makedirs(out, exist_ok=True)
    acfg = adapter_default_config(base_name or base)
    acfg.update({
        "alpha_pattern": alpha_pattern,
        "bias": bias,
        "fan_in_fan_out": bool(fan_in_fan_out),
        "init_lora_weights": init_lora_weights,
        "layer_replication": ([[0, 1], [0, 2]] if layer_replication else None),
        "lora_alpha": alpha,
        "lora_bias": bool(lora_bias),
        "modules_to_save": list(modules_to_save) if modules_to_save else None,
        "peft_type": peft_type,
        "r": rank,
        "rank_pattern": rank_pattern,
        "target_modules": targets,
        "use_dora": bool(dora),
        "use_rslora": bool(rslora),
    })
    with open(os.path.join(out, "adapter_config.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(acfg, indent=2, sort_keys=True))
    write_safetensors(os.path.join(out, "adapter_model.safetensors"),
                      [entry_from_array(k, d, a) for k, (d, a) in tensors.items()])
    return out


# ---------------------------------------------------------------------------
# recipe
# ---------------------------------------------------------------------------

def parse_export(spec):
    """NAME:FORMAT:DEST_DIR[:Key=Val,...] -> (name, format, dest, {key: val})."""
    parts = spec.split(":", 3)
    if len(parts) < 3:
        raise SystemExit("bad --export %r (NAME:FORMAT:DEST_DIR[:Key=Val,...])" % spec)
    opts = {}
    if len(parts) == 4 and parts[3]:
        for item in parts[3].split(","):
            k, _, v = item.partition("=")
            opts[k] = v
    return parts[0], parts[1], parts[2], opts


def write_recipe(path, model, adapters=(), weights=None, exports=(), name=None):
    """Write a smelt recipe key file.

    `exports` is a list of (name, format, dest_dir, {key: value}); each export
    gets its own localfs destination "<name>-out" with Overwrite=true.
    """
    name = name or os.path.splitext(os.path.basename(path))[0]
    lines = ["[Recipe]", "Name=%s" % name, "", "[Source]", "Model=%s" % model]
    if adapters:
        lines.append("Adapters=%s" % ";".join(adapters))
    if weights:
        lines.append("AdapterWeights=%s" % ";".join(repr(float(w)) for w in weights))
    lines.append("")
    for ename, fmt, dest, opts in exports:
        lines += ["[Destination %s-out]" % ename, "Plugin=localfs", "Path=%s" % dest,
                  "Overwrite=true", ""]
        lines += ["[Export %s]" % ename, "Format=%s" % fmt, "Destination=%s-out" % ename]
        lines += ["%s=%s" % (k, v) for k, v in opts.items()]
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


# ---------------------------------------------------------------------------
# demo and CLI
# ---------------------------------------------------------------------------

def generate_demo(out):
    """The bundled demo: out/model (llama bf16, 2 shards) and out/adapter."""
    generate_model(os.path.join(out, "model"), arch="llama", dtype="bf16", layers=2,
                   hidden=64, intermediate=160, heads=4, kv_heads=2, vocab=384,
                   shards=2, seed=0)
    generate_adapter(os.path.join(out, "adapter"), os.path.join(out, "model"),
                     rank=8, alpha=16, seed=1, base_name="smelt-demo/tiny-llama")


def selftest():
    """Determinism, write/read round trip and RNE checks (no smelt needed)."""
    import filecmp
    import tempfile
    # RNE: ties to even, carries into the exponent, NaN stays NaN
    x = np.array([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20,
                  -2.0 ** -130, np.inf, np.nan, 3.4028235e38], dtype=np.float32)
    want = [0x3F80, 0x3F82, 0x3F81, 0x8008, 0x7F80, 0x7FC0, 0x7F80]
    got = f32_to_bf16_bits(x).tolist()
    assert got == want, [hex(v) for v in got]
    with tempfile.TemporaryDirectory() as tmp:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        generate_demo(a)
        generate_demo(b)
        for sub in ("model", "adapter"):
            names = sorted(os.listdir(os.path.join(a, sub)))
            match, mismatch, errors = filecmp.cmpfiles(os.path.join(a, sub),
                                                       os.path.join(b, sub), names,
                                                       shallow=False)
            assert not mismatch and not errors, (mismatch, errors)
        mf = ModelFiles(os.path.join(a, "model"))
        spec = argparse.Namespace(arch="llama", layers=2, hidden=64, intermediate=160,
                                  heads=4, kv_heads=2, vocab=384, tie=False,
                                  attention_bias=False)
        for name, shape, _ in model_tensor_specs(spec):
            assert mf.shape(name) == shape, name
        with open(os.path.join(a, "model", "model.safetensors.index.json")) as f:
            index = json.load(f)
        total = sum(int(np.prod(mf.shape(n))) * 2 for n in mf.tensors)
        assert index["metadata"]["total_size"] == total
        tok = json.load(open(os.path.join(a, "model", "tokenizer.json")))
        assert len(tok["model"]["vocab"]) + 2 == 384
    print("gen_tiny_model self-test ok")


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("model", help="write a tiny HF model directory")
    m.add_argument("out")
    m.add_argument("--arch", choices=["llama", "gpt2"], default="llama")
    m.add_argument("--dtype", choices=sorted(CLI_DTYPES), default="bf16")
    m.add_argument("--layers", type=int, default=2)
    m.add_argument("--hidden", type=int, default=64)
    m.add_argument("--intermediate", type=int, default=160)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--kv-heads", type=int, default=2)
    m.add_argument("--vocab", type=int, default=384)
    m.add_argument("--tie", action="store_true")
    m.add_argument("--attention-bias", action="store_true")
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--fill", choices=["random", "block"], default="random",
                   help="block: fast reused random block (benchmarks)")

    a = sub.add_parser("adapter", help="write a PEFT LoRA adapter directory")
    a.add_argument("out")
    a.add_argument("--base", required=True)
    a.add_argument("--rank", type=int, default=8)
    a.add_argument("--alpha", type=num, default=16)
    a.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    a.add_argument("--dtype", choices=sorted(CLI_DTYPES), default="f32")
    a.add_argument("--rslora", action="store_true")
    a.add_argument("--dora", action="store_true")
    a.add_argument("--fan-in-fan-out", action="store_true")
    a.add_argument("--embedding-lora", action="store_true")
    a.add_argument("--lm-head-lora", action="store_true")
    a.add_argument("--lora-bias", action="store_true")
    a.add_argument("--bias", choices=["none", "all", "lora_only"], default="none")
    a.add_argument("--modules-to-save", default="")
    a.add_argument("--resize-vocab", type=int, default=None)
    a.add_argument("--rank-pattern", default="")
    a.add_argument("--alpha-pattern", default="")
    a.add_argument("--keep-adapter-name", action="store_true")
    a.add_argument("--save-embedding-layers", action="store_true",
                   help="also save targeted embedding layers' base weights (PEFT 'auto')")
    a.add_argument("--peft-type", default="LORA")
    a.add_argument("--init-lora-weights", default="true")
    a.add_argument("--layer-replication", action="store_true")
    a.add_argument("--scale", type=float, default=0.05)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--base-name", default=None,
                   help="base_model_name_or_path to record (default: --base as given)")

    r = sub.add_parser("recipe", help="write a smelt recipe")
    r.add_argument("out")
    r.add_argument("--model", required=True)
    r.add_argument("--adapter", action="append", default=[])
    r.add_argument("--weights", default="")
    r.add_argument("--name", default=None)
    r.add_argument("--export", action="append", default=[], required=True)

    d = sub.add_parser("demo", help="write the bundled demo model and adapter")
    d.add_argument("out")

    sub.add_parser("selftest", help="check determinism and rounding")

    args = p.parse_args(argv)
    if args.cmd == "model":
        generate_model(args.out, arch=args.arch, dtype=args.dtype, layers=args.layers,
                       hidden=args.hidden, intermediate=args.intermediate, heads=args.heads,
                       kv_heads=args.kv_heads, vocab=args.vocab, tie=args.tie,
                       attention_bias=args.attention_bias, shards=args.shards,
                       seed=args.seed, fill=args.fill)
    elif args.cmd == "adapter":
        init = args.init_lora_weights
        init = {"true": True, "false": False}.get(init.lower(), init)
        generate_adapter(
            args.out, args.base, rank=args.rank, alpha=args.alpha,
            targets=[t for t in args.targets.split(",") if t], dtype=args.dtype,
            rslora=args.rslora, dora=args.dora, fan_in_fan_out=args.fan_in_fan_out,
            embedding_lora=args.embedding_lora, lm_head_lora=args.lm_head_lora,
            lora_bias=args.lora_bias, bias=args.bias,
            modules_to_save=[m for m in args.modules_to_save.split(",") if m],
            resize_vocab=args.resize_vocab,
            rank_pattern=parse_kv_list(args.rank_pattern, int),
            alpha_pattern=parse_kv_list(args.alpha_pattern, num),
            keep_adapter_name=args.keep_adapter_name,
            save_embedding_layers=args.save_embedding_layers, peft_type=args.peft_type,
            init_lora_weights=init, layer_replication=args.layer_replication,
            seed=args.seed, scale=args.scale, base_name=args.base_name)
    elif args.cmd == "recipe":
        weights = [float(w) for w in args.weights.split(",") if w] or None
        write_recipe(args.out, args.model, args.adapter, weights,
                     [parse_export(e) for e in args.export], name=args.name)
    elif args.cmd == "demo":
        generate_demo(args.out)
    elif args.cmd == "selftest":
        selftest()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tiny deterministic Hugging Face models of several architectures, with a
SentencePiece tokenizer and a PEFT LoRA adapter, for smelt's GGUF tests.

    gen_arch_models.py OUTDIR FAMILY [--seed N] [--vocab N] [--tokenizer-dir DIR]
                       [--set KEY=VALUE]...
    gen_arch_models.py --list
    gen_arch_models.py --selftest

writes OUTDIR/model (config.json with the keys the real checkpoints of that
class carry, model.safetensors in bf16 or f32, tokenizer.model,
tokenizer_config.json, special_tokens_map.json, generation_config.json) and
OUTDIR/adapter (a PEFT LoRA adapter on the attention and MLP projections).

Families (FAMILIES below): llama (Llama 2 style), llama3 (Llama 3.1 style:
rope_scaling llama3, GQA), llama32 (Llama 3.2 style: tied embeddings), mistral
(MistralForCausalLM with an explicit head_dim, as Mistral-Nemo), qwen2 (q/k/v
biases, tied), qwen3 (q_norm/k_norm, head_dim != hidden/heads), gemma, gemma2
(soft-capping, pre/post norms, sliding window), gemma3 (Gemma3ForCausalLM,
gemma3_text: q/k norms, local/global RoPE bases, linear RoPE scaling on the
global layers), phi3 (fused qkv_proj/gate_up_proj), phi3-longrope (Phi-4-mini
style: partial rotary, GQA, longrope short/long factors, tied).

Shapes are small (hidden 64..128, 2..6 layers) with every row length a
multiple of 32 so that Q8_0 applies to every matrix.  Weights are large enough
that each architectural detail moves the logits well beyond 1e-4 (the
reference's self-test checks that), and the LoRA delta is ~20 % of the weight.

--set overrides a key of the family (hidden=256, layers=16, kv_heads=2, …;
the value is read as JSON, else kept as a string), e.g. for shapes whose rows
split into 256-blocks or not; any_rows=true allows rows that are not a
multiple of 32.

The safetensors writer, the adapter writer and the recipe writer are the ones
of gen_tiny_model.py (imported, not copied).  Only numpy is needed.
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

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tiny_model as gen  # noqa: E402

# ---------------------------------------------------------------------------
# the families
# ---------------------------------------------------------------------------

#: keys common to every family (override per family):
#:   cls, model_type, hidden, layers, heads, kv_heads, head_dim (None: hidden/heads),
#:   inter, vocab (embedding rows), pad (rows beyond the tokenizer), dtype,
#:   tie, tok (tokenizer layout: llama | gemma | phi3), qk_gain (scale of q/k
#:   projections, to make attention sharp where soft-capping must matter)
FAMILIES = {
    "llama": dict(cls="LlamaForCausalLM", model_type="llama", hidden=128, layers=2,
                  heads=4, kv_heads=4, inter=256, vocab=384, dtype="bf16", tie=False,
                  rope_theta=10000.0, rms_eps=1e-5, max_pos=4096),
    "llama3": dict(cls="LlamaForCausalLM", model_type="llama", hidden=128, layers=2,
                   heads=4, kv_heads=2, inter=256, vocab=416, dtype="f32", tie=False,
                   rope_theta=500000.0, rms_eps=1e-5, max_pos=131072,
                   # original_max_position_embeddings is tiny on purpose: with
                   # 8192 the scaled frequencies would not move a 12-token prompt
                   rope_scaling={"factor": 8.0, "high_freq_factor": 4.0,
                                 "low_freq_factor": 1.0,
                                 "original_max_position_embeddings": 64,
                                 "rope_type": "llama3"}),
    "llama32": dict(cls="LlamaForCausalLM", model_type="llama", hidden=64, layers=2,
                    heads=4, kv_heads=1, inter=192, vocab=384, dtype="bf16", tie=True,
                    rope_theta=500000.0, rms_eps=1e-5, max_pos=131072,
                    rope_scaling={"factor": 32.0, "high_freq_factor": 4.0,
                                  "low_freq_factor": 1.0,
                                  "original_max_position_embeddings": 48,
                                  "rope_type": "llama3"}),
    "mistral": dict(cls="MistralForCausalLM", model_type="mistral", hidden=128, layers=2,
                    heads=4, kv_heads=2, head_dim=64, inter=256, vocab=384, pad=24,
                    dtype="bf16", tie=False, rope_theta=1000000.0, rms_eps=1e-5,
                    max_pos=131072),
    "qwen2": dict(cls="Qwen2ForCausalLM", model_type="qwen2", hidden=64, layers=2,
                  heads=4, kv_heads=2, inter=160, vocab=352, dtype="bf16", tie=True,
                  rope_theta=1000000.0, rms_eps=1e-6, max_pos=32768),
    "qwen3": dict(cls="Qwen3ForCausalLM", model_type="qwen3", hidden=128, layers=2,
                  heads=4, kv_heads=2, head_dim=64, inter=256, vocab=384, pad=8,
                  dtype="f32", tie=False, rope_theta=1000000.0, rms_eps=1e-6,
                  max_pos=40960),
    "gemma": dict(cls="GemmaForCausalLM", model_type="gemma", hidden=64, layers=2,
                  heads=4, kv_heads=1, head_dim=32, inter=192, vocab=448, dtype="bf16",
                  tie=True, tok="gemma", rope_theta=10000.0, rms_eps=1e-6, max_pos=8192),
    "gemma2": dict(cls="Gemma2ForCausalLM", model_type="gemma2", hidden=64, layers=2,
                   heads=4, kv_heads=2, head_dim=32, inter=128, vocab=448, dtype="f32",
                   tie=True, tok="gemma", rope_theta=10000.0, rms_eps=1e-6, max_pos=8192,
                   sliding_window=4, attn_softcap=50.0, final_softcap=30.0,
                   qk_gain=4.0, lm_gain=3.0),
    "gemma3": dict(cls="Gemma3ForCausalLM", model_type="gemma3_text", hidden=64,
                   layers=6, heads=4, kv_heads=1, head_dim=32, inter=128, vocab=448,
                   dtype="bf16", tie=True, tok="gemma", rope_theta=1000000.0,
                   rope_local_theta=10000.0, rms_eps=1e-6, max_pos=32768,
                   sliding_window=4, sliding_window_pattern=6,
                   rope_scaling={"factor": 8.0, "rope_type": "linear"}),
    "phi3": dict(cls="Phi3ForCausalLM", model_type="phi3", hidden=128, layers=2, heads=4,
                 kv_heads=4, inter=256, vocab=384, pad=22, dtype="bf16", tie=False,
                 tok="phi3", rope_theta=10000.0, rms_eps=1e-5, max_pos=4096,
                 orig_max_pos=4096, sliding_window=2047),
    "phi3-longrope": dict(cls="Phi3ForCausalLM", model_type="phi3", hidden=128, layers=2,
                          heads=4, kv_heads=2, inter=256, vocab=416, pad=24, dtype="f32",
                          tie=True, tok="phi3", rope_theta=10000.0, rms_eps=1e-5,
                          max_pos=131072, orig_max_pos=4096, sliding_window=262144,
                          partial_rotary=0.75, longrope=True),
}

DEFAULTS = dict(head_dim=None, pad=0, tok="llama", qk_gain=1.0, lm_gain=1.0,
                rope_scaling=None, any_rows=False)

#: LoRA targets: every attention and MLP projection
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


def family_spec(name, vocab=None, overrides=None):
    """The family's parameters with defaults filled in (a dict); `overrides`
    replaces keys of the family (see --set)."""
    if name not in FAMILIES:
        raise SystemExit("unknown family %r (known: %s)" % (name, ", ".join(FAMILIES)))
    f = dict(DEFAULTS)
    f.update(FAMILIES[name])
    for key in (overrides or {}):
        if key not in f:
            raise SystemExit("--set %s: not a key of family %s" % (key, name))
    f.update(overrides or {})
    f["name"] = name
    if vocab is not None:
        f["vocab"] = int(vocab)
    if f["head_dim"] is None:
        f["head_dim"] = f["hidden"] // f["heads"]
    if f["heads"] % f["kv_heads"]:
        raise SystemExit("%s: heads must be a multiple of kv_heads" % name)
    return f


def is_gemma(f):
    return f["model_type"] in ("gemma", "gemma2", "gemma3_text")


def is_phi3(f):
    return f["model_type"] == "phi3"


# ---------------------------------------------------------------------------
# SentencePiece tokenizer.model (protobuf written by hand)
# ---------------------------------------------------------------------------

#: sentencepiece_model.proto SentencePiece.Type
SP_NORMAL, SP_UNKNOWN, SP_CONTROL, SP_USER_DEFINED, SP_UNUSED, SP_BYTE = 1, 2, 3, 4, 5, 6
SP_TYPE_NAMES = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED",
                 6: "BYTE"}


def _varint(n):
    """Protobuf base-128 varint of a non-negative int (negative int32 as 10 bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num, value):
    return _varint(num << 3 | 0) + _varint(value)


def _field_bytes(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _field_float(num, value):
    return _varint(num << 3 | 5) + struct.pack("<f", value)


def spm_model_bytes(pieces, bos_id, eos_id, unk_id, pad_id=-1):
    """A ModelProto for `pieces` [(text, score, type)]: BPE model with
    byte_fallback (as Llama's and Gemma's), identity normalizer with a dummy
    prefix.  The special ids are also named by their pieces (the
    sentencepiece library finds bos/eos/unk/pad by *_piece)."""
    out = bytearray()
    for text, score, typ in pieces:
        p = _field_bytes(1, text.encode("utf-8")) + _field_float(2, score)
        if typ != SP_NORMAL:  # NORMAL is the default and is not written
            p += _field_varint(3, typ)
        out += _field_bytes(1, p)
    trainer = (_field_varint(3, 2)                      # model_type = BPE
               + _field_varint(4, len(pieces))          # vocab_size
               + _field_varint(35, 1)                   # byte_fallback
               + _field_varint(40, unk_id) + _field_varint(41, bos_id)
               + _field_varint(42, eos_id) + _field_varint(43, pad_id)
               + _field_bytes(45, pieces[unk_id][0].encode("utf-8"))    # unk_piece
               + _field_bytes(46, pieces[bos_id][0].encode("utf-8"))    # bos_piece
               + _field_bytes(47, pieces[eos_id][0].encode("utf-8")))   # eos_piece
    if pad_id >= 0:
        trainer += _field_bytes(48, pieces[pad_id][0].encode("utf-8"))  # pad_piece
    normalizer = (_field_bytes(1, b"identity") + _field_varint(3, 1)   # add_dummy_prefix
                  + _field_varint(4, 0))                # remove_extra_whitespaces = false
    out += _field_bytes(2, trainer) + _field_bytes(3, normalizer)
    return bytes(out)


def parse_spm_pieces(data):
    """[(text, score, type)] of a tokenizer.model (independent small parser:
    only ModelProto field 1 is decoded)."""
    def varint(buf, pos):
        shift = result = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7

    def fields(buf):
        pos = 0
        while pos < len(buf):
            key, pos = varint(buf, pos)
            num, wire = key >> 3, key & 7
            if wire == 0:
                val, pos = varint(buf, pos)
            elif wire == 2:
                n, pos = varint(buf, pos)
                val, pos = buf[pos:pos + n], pos + n
            elif wire == 5:
                val, pos = buf[pos:pos + 4], pos + 4
            elif wire == 1:
                val, pos = buf[pos:pos + 8], pos + 8
            else:
                raise ValueError("unsupported wire type %d" % wire)
            yield num, wire, val

    pieces = []
    for num, wire, val in fields(data):
        if num != 1 or wire != 2:
            continue
        text, score, typ = "", 0.0, SP_NORMAL
        for n2, w2, v2 in fields(val):
            if n2 == 1:
                text = bytes(v2).decode("utf-8")
            elif n2 == 2:
                score = struct.unpack("<f", bytes(v2))[0]
            elif n2 == 3:
                typ = v2
        pieces.append((text, score, typ))
    return pieces


def normal_pieces(count, taken):
    """`count` distinct SentencePiece-looking word pieces ("▁a", "ab", ...),
    none in `taken`, deterministic."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    out = []
    seen = set(taken)
    level = [""]
    while len(out) < count:
        nxt = []
        for stem in level:
            for ch in letters:
                for w in ("\u2581" + stem + ch, stem + ch):
                    if w not in seen and len(out) < count:
                        seen.add(w)
                        out.append(w)
                nxt.append(stem + ch)
        level = nxt
    return out


def byte_pieces():
    return ["<0x%02X>" % b for b in range(256)]


def tokenizer_layout(f):
    """The tokenizer of family `f`: (pieces [(text, score, type)], added
    [(id, text, special)] beyond the pieces (phi3), special token ids dict)."""
    rows = f["vocab"]
    if f["tok"] == "gemma":
        # Gemma's layout: <pad> <eos> <bos> <unk> <mask> <2mass> [@BOS@],
        # <unused0..98>, <start_of_turn>=106, <end_of_turn>=107, then bytes
        head = [("<pad>", 0.0, SP_CONTROL), ("<eos>", 0.0, SP_CONTROL),
                ("<bos>", 0.0, SP_CONTROL), ("<unk>", 0.0, SP_UNKNOWN),
                ("<mask>", 0.0, SP_USER_DEFINED), ("<2mass>", 0.0, SP_USER_DEFINED),
                ("[@BOS@]", 0.0, SP_USER_DEFINED)]
        head += [("<unused%d>" % i, 0.0, SP_USER_DEFINED) for i in range(99)]
        head += [("<start_of_turn>", 0.0, SP_USER_DEFINED),
                 ("<end_of_turn>", 0.0, SP_USER_DEFINED)]
        assert head[106][0] == "<start_of_turn>"
        ids = {"pad": 0, "eos": 1, "bos": 2, "unk": 3, "start_of_turn": 106,
               "end_of_turn": 107}
    else:
        head = [("<unk>", 0.0, SP_UNKNOWN), ("<s>", 0.0, SP_CONTROL),
                ("</s>", 0.0, SP_CONTROL)]
        ids = {"unk": 0, "bos": 1, "eos": 2}
    head += [(b, 0.0, SP_BYTE) for b in byte_pieces()]
    added = []
    if f["tok"] == "phi3":
        # Phi-3: tokenizer.model is Llama 2's; chat tokens are added tokens
        # past the pieces (tokenizer_config added_tokens_decoder)
        names = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|system|>",
                 "<|end|>", "<|placeholder2|>", "<|user|>", "<|placeholder3|>"]
        n_pieces = rows - f["pad"] - len(names)
        added = [(n_pieces + i, t, t in ("<|endoftext|>", "<|end|>"))
                 for i, t in enumerate(names)]
        ids["eos"] = n_pieces            # <|endoftext|>, as Phi-3's config.json
        ids["end"] = n_pieces + 4
    else:
        n_pieces = rows - f["pad"]
    if n_pieces < len(head) + 16:
        raise SystemExit("%s: vocab %d too small (need at least %d rows)"
                         % (f["name"], rows, len(head) + 16 + rows - n_pieces))
    words = ["\u2581"] + normal_pieces(n_pieces - len(head) - 1, [p[0] for p in head])
    # scores as a trained BPE model has them: decreasing with the rank
    pieces = head + [(w, -float(i), SP_NORMAL) for i, w in enumerate(words)]
    return pieces, added, ids


def _added_token(content, special=True):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def write_tokenizer(out, f):
    """tokenizer.model, tokenizer_config.json and special_tokens_map.json for
    family `f`.  Returns the special ids."""
    pieces, added, ids = tokenizer_layout(f)
    with open(os.path.join(out, "tokenizer.model"), "wb") as fp:
        fp.write(spm_model_bytes(pieces, ids["bos"], ids["eos"] if f["tok"] != "phi3" else 2,
                                 ids["unk"], ids.get("pad", -1)))
    decoder = {}
    if f["tok"] == "gemma":
        for i in (0, 1, 2, 3):
            decoder[str(i)] = _added_token(pieces[i][0])
        decoder["4"] = _added_token("<mask>", special=False)
        decoder["106"] = _added_token("<start_of_turn>")
        decoder["107"] = _added_token("<end_of_turn>")
        tcfg = {"add_bos_token": True, "add_eos_token": False,
                "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                "unk_token": "<unk>", "tokenizer_class": "GemmaTokenizer",
                "chat_template": (
                    "{{ bos_token }}{% for message in messages %}"
                    "{{ '<start_of_turn>' + message['role'] + '\n' + message['content']"
                    " + '<end_of_turn>\n' }}{% endfor %}"
                    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")}
        stm = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
               "unk_token": "<unk>",
               "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}
    else:
        for i in (0, 1, 2):
            decoder[str(i)] = _added_token(pieces[i][0])
        for tid, text, special in added:
            decoder[str(tid)] = _added_token(text, special=special)
        eos = "<|endoftext|>" if f["tok"] == "phi3" else "</s>"
        tcfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                "eos_token": eos, "pad_token": None, "unk_token": "<unk>",
                "tokenizer_class": "LlamaTokenizer", "legacy": False,
                "sp_model_kwargs": {}, "spaces_between_special_tokens": False}
        if f["tok"] == "phi3":
            tcfg["chat_template"] = (
                "{% for message in messages %}{{ '<|' + message['role'] + '|>\n'"
                " + message['content'] + '<|end|>\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
        stm = {"bos_token": "<s>", "eos_token": eos, "unk_token": "<unk>"}
    tcfg.update({"added_tokens_decoder": decoder, "clean_up_tokenization_spaces": False,
                 "model_max_length": f["max_pos"]})
    gen.dump_hf_json(os.path.join(out, "tokenizer_config.json"), tcfg)
    gen.dump_hf_json(os.path.join(out, "special_tokens_map.json"), stm)
    return ids


def copy_tokenizer(out, src):
    """Copy the tokenizer files of another model directory."""
    names = ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
             "tokenizer.json", "added_tokens.json"]
    if not os.path.exists(os.path.join(src, "tokenizer.model")):
        raise SystemExit("%s has no tokenizer.model" % src)
    for n in names:
        if os.path.exists(os.path.join(src, n)):
            shutil.copyfile(os.path.join(src, n), os.path.join(out, n))


def tokenizer_rows(src):
    """Rows an embedding needs for the tokenizer in `src`: pieces of
    tokenizer.model and ids of tokenizer_config added tokens."""
    with open(os.path.join(src, "tokenizer.model"), "rb") as fp:
        n = len(parse_spm_pieces(fp.read()))
    cfg_path = os.path.join(src, "tokenizer_config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as fp:
            dec = json.load(fp).get("added_tokens_decoder", {})
        n = max([n] + [int(k) + 1 for k in dec])
    return n


# ---------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------

def make_config(f, ids):
    """config.json of family `f` (the keys its transformers class writes)."""
    torch_dtype = gen.TORCH_DTYPE_NAME[gen.CLI_DTYPES[f["dtype"]]]
    c = {
        "architectures": [f["cls"]],
        "attention_dropout": 0.0,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "hidden_size": f["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": f["inter"],
        "max_position_embeddings": f["max_pos"],
        "model_type": f["model_type"],
        "num_attention_heads": f["heads"],
        "num_hidden_layers": f["layers"],
        "num_key_value_heads": f["kv_heads"],
        "rms_norm_eps": f["rms_eps"],
        "rope_theta": f["rope_theta"],
        "tie_word_embeddings": f["tie"],
        "torch_dtype": torch_dtype,
        "transformers_version": "4.53.2",
        "use_cache": True,
        "vocab_size": f["vocab"],
    }
    mt = f["model_type"]
    if mt in ("llama", "mistral"):
        c.update({"hidden_act": "silu", "head_dim": f["head_dim"],
                  "rope_scaling": f["rope_scaling"]})
        if mt == "llama":
            c.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
        else:
            c["sliding_window"] = None
    elif mt in ("qwen2", "qwen3"):
        c.update({"hidden_act": "silu", "max_window_layers": f["layers"],
                  "rope_scaling": None, "sliding_window": None,
                  "use_sliding_window": False})
        if mt == "qwen3":
            c.update({"attention_bias": False, "head_dim": f["head_dim"]})
    elif is_gemma(f):
        c.update({"attention_bias": False, "head_dim": f["head_dim"],
                  "hidden_act": "gelu_pytorch_tanh",
                  "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": ids["pad"]})
        if mt == "gemma2":
            c.update({"attn_logit_softcapping": f["attn_softcap"],
                      "final_logit_softcapping": f["final_softcap"],
                      "query_pre_attn_scalar": f["head_dim"],
                      "sliding_window": f["sliding_window"], "cache_implementation": "hybrid"})
        if mt == "gemma3_text":
            pattern = f["sliding_window_pattern"]
            c.update({"attn_logit_softcapping": None, "final_logit_softcapping": None,
                      # llama.cpp scales queries by 1/sqrt(head_dim): keep
                      # query_pre_attn_scalar == head_dim as the 1B/4B/12B models do
                      "query_pre_attn_scalar": f["head_dim"],
                      "rope_local_base_freq": f["rope_local_theta"],
                      "rope_scaling": f["rope_scaling"],
                      "sliding_window": f["sliding_window"],
                      "sliding_window_pattern": pattern,
                      "layer_types": ["sliding_attention" if (i + 1) % pattern else
                                      "full_attention" for i in range(f["layers"])],
                      "cache_implementation": "hybrid"})
    elif is_phi3(f):
        c.update({"hidden_act": "silu", "embd_pdrop": 0.0, "resid_pdrop": 0.0,
                  "original_max_position_embeddings": f["orig_max_pos"],
                  "pad_token_id": ids["eos"], "rope_scaling": None,
                  "sliding_window": f["sliding_window"]})
        if f.get("partial_rotary"):
            c["partial_rotary_factor"] = f["partial_rotary"]
        if f.get("longrope"):
            n = int(f["head_dim"] * f.get("partial_rotary", 1.0)) // 2
            # short factors are what a short prompt uses (HF: seq_len <=
            # original_max_position_embeddings; llama.cpp: n_ctx <= the same);
            # make them far from 1 so that they matter
            c["rope_scaling"] = {
                "type": "longrope",
                "short_factor": [round(1.0 + 0.35 * i, 4) for i in range(n)],
                "long_factor": [round(2.0 + 1.5 * i, 4) for i in range(n)]}
    return c


# ---------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------

def tensor_specs(f):
    """[(name, shape, kind)] in state-dict order; kind: embed, matrix, norm,
    bias, qk (q/k projections, scaled by qk_gain), lm_head."""
    h, v, hd = f["hidden"], f["vocab"], f["head_dim"]
    q_out, kv_out = f["heads"] * hd, f["kv_heads"] * hd
    mt = f["model_type"]
    specs = [("model.embed_tokens.weight", [v, h], "embed")]
    for i in range(f["layers"]):
        p = "model.layers.%d." % i
        if is_phi3(f):
            specs += [(p + "self_attn.o_proj.weight", [h, q_out], "matrix"),
                      (p + "self_attn.qkv_proj.weight", [q_out + 2 * kv_out, h], "matrix"),
                      (p + "mlp.gate_up_proj.weight", [2 * f["inter"], h], "matrix"),
                      (p + "mlp.down_proj.weight", [h, f["inter"]], "matrix")]
        else:
            specs += [(p + "self_attn.q_proj.weight", [q_out, h], "qk"),
                      (p + "self_attn.k_proj.weight", [kv_out, h], "qk"),
                      (p + "self_attn.v_proj.weight", [kv_out, h], "matrix"),
                      (p + "self_attn.o_proj.weight", [h, q_out], "matrix")]
            if mt == "qwen2":
                specs += [(p + "self_attn.q_proj.bias", [q_out], "bias"),
                          (p + "self_attn.k_proj.bias", [kv_out], "bias"),
                          (p + "self_attn.v_proj.bias", [kv_out], "bias")]
            if mt in ("qwen3", "gemma3_text"):
                specs += [(p + "self_attn.q_norm.weight", [hd], "norm"),
                          (p + "self_attn.k_norm.weight", [hd], "norm")]
            specs += [(p + "mlp.gate_proj.weight", [f["inter"], h], "matrix"),
                      (p + "mlp.up_proj.weight", [f["inter"], h], "matrix"),
                      (p + "mlp.down_proj.weight", [h, f["inter"]], "matrix")]
        specs += [(p + "input_layernorm.weight", [h], "norm"),
                  (p + "post_attention_layernorm.weight", [h], "norm")]
        if mt in ("gemma2", "gemma3_text"):
            specs += [(p + "pre_feedforward_layernorm.weight", [h], "norm"),
                      (p + "post_feedforward_layernorm.weight", [h], "norm")]
    specs.append(("model.norm.weight", [h], "norm"))
    if not f["tie"]:
        specs.append(("lm_head.weight", [v, h], "lm_head"))
    for name, shape, kind in specs:
        if len(shape) == 2 and shape[1] % 32 and not f["any_rows"]:
            raise SystemExit("%s: %s rows of %d are not a multiple of 32"
                             % (f["name"], name, shape[1]))
    return specs


def tensor_values(rng, f, shape, kind):
    """float32 values: matrices N(0, 1/fan_in) (gain-scaled), embeddings and
    lm_head N(0, 0.1), biases N(0, 0.1), norms around 1 (gemma stores w with
    the effective weight 1 + w, so its norms are N(0, 0.1))."""
    if kind == "norm":
        base = 0.0 if is_gemma(f) else 1.0
        return (base + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if kind == "bias":
        std = 0.1
    elif kind == "embed":
        std = 0.1
    elif kind == "lm_head":
        std = 0.1 * f["lm_gain"]
    else:
        std = (f["qk_gain"] if kind == "qk" else 1.0) / np.sqrt(shape[1])
    if kind == "embed" and f["tie"]:
        std *= f["lm_gain"]
    return (std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------
# model + adapter
# ---------------------------------------------------------------------------

def generate(outdir, family, seed=0, vocab=None, tokenizer_dir=None, rank=8, alpha=16,
             overrides=None):
    """Write OUTDIR/model and OUTDIR/adapter for `family` (with `overrides`
    of its keys, see --set).

    Returns (model_dir, adapter_dir)."""
    if tokenizer_dir and vocab is None:
        vocab = tokenizer_rows(tokenizer_dir)
    f = family_spec(family, vocab, overrides)
    model = os.path.join(outdir, "model")
    os.makedirs(model, exist_ok=True)
    if tokenizer_dir:
        copy_tokenizer(model, tokenizer_dir)
        ids = _ids_from_tokenizer_dir(tokenizer_dir, {"pad": 0} if is_gemma(f) else {})
        if tokenizer_rows(tokenizer_dir) > f["vocab"]:
            raise SystemExit("--vocab %d is smaller than the tokenizer" % f["vocab"])
    else:
        ids = write_tokenizer(model, f)
    config = make_config(f, ids)
    gen.dump_hf_json(os.path.join(model, "config.json"), config)
    gcfg = {"_from_model_config": True, "bos_token_id": ids["bos"],
            "eos_token_id": ids["eos"], "transformers_version": config["transformers_version"]}
    if "pad" in ids:
        gcfg["pad_token_id"] = ids["pad"]
    gen.dump_hf_json(os.path.join(model, "generation_config.json"), gcfg)

    st_dtype = gen.CLI_DTYPES[f["dtype"]]
    rng = np.random.Generator(np.random.PCG64(seed))
    entries = [gen.entry_from_array(name, st_dtype,
                                    gen.to_storage(tensor_values(rng, f, shape, kind), st_dtype))
               for name, shape, kind in tensor_specs(f)]
    gen.write_model_weights(model, entries, 1)

    targets = PHI3_TARGETS if is_phi3(f) else LLAMA_TARGETS
    adapter = gen.generate_adapter(os.path.join(outdir, "adapter"), model, rank=rank,
                                   alpha=alpha, targets=targets, seed=seed + 1000,
                                   base_name="smelt-test/tiny-%s" % family)
    return model, adapter


def _ids_from_tokenizer_dir(src, fallback):
    """bos/eos/unk/pad ids of a copied tokenizer: the tokenizer_config
    strings looked up in tokenizer.model, else the family defaults."""
    with open(os.path.join(src, "tokenizer.model"), "rb") as fp:
        index = {t: i for i, (t, _, _) in enumerate(parse_spm_pieces(fp.read()))}
    ids = dict(fallback)
    try:
        with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as fp:
            tcfg = json.load(fp)
    except OSError:
        tcfg = {}
    for key in ("bos", "eos", "unk", "pad"):
        tok = tcfg.get(key + "_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str) and tok in index:
            ids[key] = index[tok]
    ids.setdefault("bos", 1)
    ids.setdefault("eos", 2)
    ids.setdefault("unk", 0)
    return ids


def prompt_tokens(model_dir, n=12, seed=5):
    """A deterministic short prompt for `model_dir`: BOS then n-1 ordinary
    pieces (NORMAL or BYTE, never control/unused/padding rows)."""
    with open(os.path.join(model_dir, "config.json")) as fp:
        cfg = json.load(fp)
    with open(os.path.join(model_dir, "tokenizer.model"), "rb") as fp:
        pieces = parse_spm_pieces(fp.read())
    ok = [i for i, (_, _, t) in enumerate(pieces) if t in (SP_NORMAL, SP_BYTE)]
    rng = np.random.Generator(np.random.PCG64(seed))
    body = [ok[int(k)] for k in rng.integers(0, len(ok), n - 1)]
    return [int(cfg["bos_token_id"])] + body


# ---------------------------------------------------------------------------
# self-test and CLI
# ---------------------------------------------------------------------------

def selftest():
    """Determinism, tokenizer round trip, shapes and adapter targets."""
    import filecmp
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for fam in FAMILIES:
            a = generate(os.path.join(tmp, "a", fam), fam, seed=3)
            b = generate(os.path.join(tmp, "b", fam), fam, seed=3)
            for x, y in zip(a, b):
                names = sorted(os.listdir(x))
                _, mismatch, errors = filecmp.cmpfiles(x, y, names, shallow=False)
                assert not mismatch and not errors, (fam, mismatch, errors)
            f = family_spec(fam)
            model, adapter = a
            cfg = json.load(open(os.path.join(model, "config.json")))
            assert cfg["vocab_size"] == f["vocab"]
            mf = gen.ModelFiles(model)
            for name, shape, _ in tensor_specs(f):
                assert mf.shape(name) == shape, (fam, name)
                assert mf.dtype(name) == gen.CLI_DTYPES[f["dtype"]]
            assert ("lm_head.weight" in mf.tensors) == (not f["tie"]), fam
            # tokenizer: parse back, special ids and types in place
            pieces = parse_spm_pieces(open(os.path.join(model, "tokenizer.model"), "rb").read())
            want, added, ids = tokenizer_layout(f)
            assert [(t, ty) for t, _, ty in pieces] == [(t, ty) for t, _, ty in want], fam
            assert len({t for t, _, _ in pieces}) == len(pieces), "duplicate pieces"
            assert len(pieces) + len(added) + f["pad"] == f["vocab"], fam
            assert pieces[ids["unk"]][2] == SP_UNKNOWN
            assert pieces[ids["bos"]][2] == SP_CONTROL
            assert sum(1 for p in pieces if p[2] == SP_BYTE) == 256
            assert pieces[pieces.index(("<0x0A>", 0.0, SP_BYTE))][0] == "<0x0A>"
            if f["tok"] == "gemma":
                assert pieces[106][0] == "<start_of_turn>" and pieces[107][0] == "<end_of_turn>"
            tcfg = json.load(open(os.path.join(model, "tokenizer_config.json")))
            for k in tcfg["added_tokens_decoder"]:
                assert int(k) < f["vocab"]
            # adapter: every target of every layer, A [r, in], B [out, r]
            st = gen.read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
            targets = PHI3_TARGETS if is_phi3(f) else LLAMA_TARGETS
            assert len(st) == 2 * len(targets) * f["layers"], (fam, len(st))
            for i in range(f["layers"]):
                for t in targets:
                    sub = "mlp" if t in ("gate_proj", "up_proj", "down_proj",
                                         "gate_up_proj") else "self_attn"
                    mod = "model.layers.%d.%s.%s" % (i, sub, t)
                    A = st["base_model.model.%s.lora_A.weight" % mod][1]
                    B = st["base_model.model.%s.lora_B.weight" % mod][1]
                    assert list(A.shape) == [8, mf.shape(mod + ".weight")[1]]
                    assert list(B.shape) == [mf.shape(mod + ".weight")[0], 8]
            toks = prompt_tokens(model)
            assert toks[0] == cfg["bos_token_id"] and len(set(toks)) > 6
            assert all(pieces[t][2] in (SP_NORMAL, SP_BYTE) for t in toks[1:])
        # the hand-written protobuf against the sentencepiece library, when
        # Debian's python3-sentencepiece happens to be installed
        try:
            import sentencepiece
        except ImportError:
            print("(python3-sentencepiece not installed: protobuf checked by the own parser only)")
        else:
            for fam in ("llama", "gemma", "phi3"):
                sp = sentencepiece.SentencePieceProcessor()
                sp.LoadFromFile(os.path.join(tmp, "a", fam, "model", "tokenizer.model"))
                want, _, ids = tokenizer_layout(family_spec(fam))
                assert sp.vocab_size() == len(want)
                for i, (t, s, ty) in enumerate(want):
                    assert sp.IdToPiece(i) == t and sp.GetScore(i) == s, (fam, i)
                    assert sp.IsByte(i) == (ty == SP_BYTE)
                    assert sp.IsControl(i) == (ty == SP_CONTROL)
                    assert sp.IsUnknown(i) == (ty == SP_UNKNOWN)
                assert sp.bos_id() == ids["bos"] and sp.unk_id() == ids["unk"]
                # byte fallback: a character with no piece becomes byte pieces
                enc = [sp.IdToPiece(i) for i in sp.EncodeAsIds("hello \u00e9")]
                assert enc[-3:] == ["\u2581", "<0xC3>", "<0xA9>"], enc
                assert sp.DecodeIds(sp.EncodeAsIds("hello \u00e9")) == "hello \u00e9"
            print("tokenizer.model accepted by sentencepiece %s" % sentencepiece.__version__)
    print("gen_arch_models self-test ok (%d families)" % len(FAMILIES))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", nargs="?")
    p.add_argument("family", nargs="?", choices=sorted(FAMILIES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=None,
                   help="embedding rows (config vocab_size); default per family")
    p.add_argument("--tokenizer-dir", default=None,
                   help="copy tokenizer.model and friends from this directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the family (VALUE read as JSON), e.g. hidden=256")
    p.add_argument("--list", action="store_true", help="list the families")
    p.add_argument("--selftest", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name in FAMILIES:
            f = family_spec(name)
            print("%-14s %-18s hidden %d, %d layers, heads %d/%d, head_dim %d, %s%s"
                  % (name, f["cls"], f["hidden"], f["layers"], f["heads"], f["kv_heads"],
                     f["head_dim"], f["dtype"], ", tied" if f["tie"] else ""))
        return 0
    if args.selftest:
        selftest()
        return 0
    if not args.outdir or not args.family:
        p.error("OUTDIR and FAMILY are required")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error("--set %s: expected KEY=VALUE" % item)
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    model, adapter = generate(args.outdir, args.family, seed=args.seed, vocab=args.vocab,
                              tokenizer_dir=args.tokenizer_dir, overrides=overrides)
    print(model)
    print(adapter)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""gguf-quant Adapter=true: the recipe's PEFT adapters as llama.cpp LoRA
adapter GGUFs, checked with llama.cpp itself.

    test_gguf_lora_adapter.py --smelt BUILD/core/smelt
                              --harness BUILD/tests/llama/smelt-llama-harness
                              --workdir DIR [--case NAME]... [--list]

For tiny models of tests/gen/gen_arch_models.py, smelt writes the base
model alone as an F32 GGUF, the model with the adapters merged as an F32
GGUF (Adapter=false, the export test_gguf_logits.py checks against an
independent PyTorch forward pass), and the adapters as LoRA GGUFs
(Adapter=true, Types=f32;f16;bf16;q8_0).  Then, per case:

  logits   llama.cpp (the prebuilt libraries, smelt-llama-harness) loads the
           F32 adapter with llama_adapter_lora_init on top of the base GGUF;
           its logits for a 12-token prompt equal the merged GGUF's within
           err <= 1e-4, with err(a, b) = max|a - b| / max|b| over positions x
           vocabulary (the metric of test_gguf_logits.py).  The adapter must
           matter: err(base alone, merged) >= 0.05.  The F16/BF16/Q8_0
           adapters must load and move the logits most of the way: err <=
           0.1 x err(base alone, merged).
  keys     read back by llama.cpp's gguf reader (harness dump):
           general.architecture = the base's, general.type = adapter,
           adapter.type = lora, adapter.lora.alpha, general.quantization_
           version in convert_lora_to_gguf.py's order, and no
           general.file_type and no tokenizer or hyperparameter key.
  tensors  every module of every adapter as <gguf name>.lora_a / .lora_b
           with llama.cpp's shapes (lora_a ne [in, r], lora_b ne [r, out];
           token_embd flipped: lora_a ne [r, n_vocab], lora_b ne [r, n_embd]).
           The F32 file against numpy, from the adapter's safetensors: lora_a
           equals lora_A (token_embd: lora_embedding_A transposed) exactly;
           (alpha / r) x lora_b equals the PEFT delta's factor s x lora_B
           (s = alpha/r, alpha/sqrt(r) with rsLoRA, alpha_pattern and
           rank_pattern applied, times AdapterWeights; several adapters
           side by side in rank order), with the rows of Q and K permuted as
           in gguf.md 3.2 for llama-arch models, within 1e-6; where no factor
           needs folding, lora_b is lora_B bit for bit and alpha is the one
           that makes alpha / r = s (rsLoRA: lora_alpha x sqrt(r)).
           The F16/BF16/Q8_0 files: every tensor is, byte for byte, what
           ggml_quantize_chunk makes of the F32 file's values, in the
           converter's type (Q8_0 tensors whose rows do not split into 32
           are F16).
  refusals DoRA, a Types entry llama.cpp adapters cannot hold, MaxFileSize,
           an embedding LoRA on a tied model (llama.cpp would abort in the
           output matmul), lm_head LoRA on a tied model, lora_B biases, a
           trained modules_to_save copy, and a recipe without adapters: smelt
           exits non-zero, names the adapter file and the module (or the
           option), and leaves no file in the destination.
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
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "gen"))
sys.path.insert(0, TESTS)

import gen_arch_models as ga  # noqa: E402
import gen_tiny_model as gen  # noqa: E402
from test_merge_reference import smelt_env  # noqa: E402

LOGITS_TOL = 1e-4        # the requirement, F32 adapter against the merged F32 model
MIN_EFFECT = 0.05        # the adapter must move the logits at least this much
LOSSY_SHARE = 0.1        # F16/BF16/Q8_0 adapters: at most this share of the change lost
SCALE_TOL = 1e-6         # (alpha / r) x lora_b against s x lora_B
SEED = 7
TYPES = ["f32", "f16", "bf16", "q8_0"]
GGML_TYPE = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}

# HF module suffix -> GGUF tensor stem (tensor_mapping.py), per layer
LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.qkv_proj": "attn_qkv",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "mlp.gate_up_proj": "ffn_up",
}

# --- the cases ---------------------------------------------------------------
#
# adapters: [(generate_adapter keyword arguments, AdapterWeights entry or None)];
# None as keyword arguments = the family's own adapter from gen_arch_models
# (rank 8, alpha 16, every attention and MLP projection).

CASES = [
    # llama arch: the Q/K row permutation on lora_b, MHA
    dict(name="llama-lora", family="llama", adapters=[(None, None)], types=TYPES),
    dict(name="llama-rslora", family="llama", adapters=[(dict(rslora=True), None)],
         types=["f32"]),
    # GQA: K permuted with the kv head count
    # rank 32: lora_b rows split into Q8_0 blocks too
    dict(name="llama3-rslora", family="llama3", adapters=[(dict(rslora=True, rank=32), None)],
         types=["f32", "q8_0"]),
    # qwen2: no permutation, q/k/v biases in the base, tied embeddings
    dict(name="qwen2-lora", family="qwen2", adapters=[(None, None)], types=TYPES),
    # a bf16 adapter: Types=auto is the converter's bf16
    dict(name="qwen2-rslora", family="qwen2", adapters=[(dict(rslora=True, dtype="bf16"), None)],
         types=["f32", "auto"], auto="bf16"),
    # phi3: fused qkv_proj and gate_up_proj
    dict(name="phi3-rslora", family="phi3", adapters=[(dict(rslora=True), None)],
         types=["f32", "bf16"]),
    # the embedding (flipped layout) and lm_head of an untied model; the
    # embedding PEFT saves beside it is the base's own and is skipped
    dict(name="llama-embed-head", family="llama",
         adapters=[(dict(embedding_lora=True, lm_head_lora=True, save_embedding_layers=True),
                    None)],
         types=["f32", "f16", "q8_0"]),
    # rank_pattern / alpha_pattern with rsLoRA: one alpha cannot fit every
    # module, the rest is folded into lora_b
    dict(name="llama-patterns", family="llama",
         adapters=[(dict(rslora=True, rank_pattern={"q_proj": 16},
                         alpha_pattern={"down_proj": 8}), None)],
         types=["f32", "f16"]),
    # two adapters with AdapterWeights: one pair per module, ranks side by side
    dict(name="qwen2-two-adapters", family="qwen2",
         adapters=[(None, 1.0), (dict(rank=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"]),
                                 0.5)],
         types=["f32", "q8_0"]),
    # one adapter with a weight: folded into alpha
    dict(name="llama3-weighted", family="llama3", adapters=[(None, 0.25)], types=["f32"]),
]

# substrings the message must hold; {adapter} is the adapter's safetensors path
REFUSALS = [
    dict(name="dora", family="llama", adapter=dict(dora=True), opts={},
         expect=["{adapter}", "DoRA", "model.layers.", "Adapter=false"]),
    dict(name="type-q4_k_m", family="llama", adapter={}, opts={"Types": "f16;q4_k_m"},
         expect=["Types", "Q4_K_M", "f32, f16, bf16, q8_0"], exit=2),
    dict(name="max-file-size", family="llama", adapter={}, opts={"MaxFileSize": "1MB"},
         expect=["MaxFileSize", "one file"], exit=2),
    dict(name="tied-embedding", family="qwen2", adapter=dict(embedding_lora=True), opts={},
         expect=["{adapter}", "model.embed_tokens", "tied"]),
    dict(name="tied-lm-head", family="llama32", adapter=dict(lm_head_lora=True), opts={},
         expect=["{adapter}", "lm_head", "output.weight"]),
    dict(name="lora-bias", family="qwen2",
         adapter=dict(lora_bias=True, targets=["q_proj", "k_proj", "v_proj"]), opts={},
         expect=["{adapter}", "lora_B.bias", "model.layers.0.self_attn.", "bias"]),
    dict(name="modules-to-save", family="llama", adapter=dict(modules_to_save=["lm_head"]),
         opts={}, expect=["{adapter}", "lm_head.weight", "modules_to_save"]),
    dict(name="no-adapter", family="llama", adapter=None, opts={},
         expect=["Adapter=true", "Adapters"]),
]


class Failure(Exception):
    pass


def err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(cmd, env=None, timeout=300):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Family:
    """One tiny model with its base F32 GGUF and its prompt, made once."""

    def __init__(self, args, name):
        self.args = args
        self.name = name
        self.dir = os.path.join(args.workdir, "fam-" + name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.model, self.adapter = ga.generate(self.dir, name, seed=SEED)
        with open(os.path.join(self.model, "config.json")) as f:
            self.config = json.load(f)
        self.tokens = ga.prompt_tokens(self.model)
        out = self.export("base", [], {"Types": "f32", "Name": "base", "Report": "false"})
        self.base_gguf = os.path.join(out, "base.F32.gguf")
        self.base_logits = self.logits(self.base_gguf)

    def export(self, tag, adapters, opts, weights=None, expect_ok=True):
        out = os.path.join(self.dir, "out-" + tag)
        shutil.rmtree(out, ignore_errors=True)
        recipe = gen.write_recipe(os.path.join(self.dir, tag + ".smelt"), self.model, adapters,
                                  weights, [("gguf", "gguf-quant", out, opts)], name=tag)
        rc, so, se = run([self.args.smelt, "run", recipe, "--progress=none"],
                         env=smelt_env(self.args.smelt))
        if expect_ok and rc != 0:
            raise Failure("smelt run %s exited %d:\n%s%s" % (recipe, rc, so, se))
        return out if expect_ok else (out, rc, so + se)

    def logits(self, gguf, loras=()):
        path = gguf + ".logits.f32"
        cmd = [self.args.harness, "logits", gguf, "--tokens",
               ",".join(str(t) for t in self.tokens), "--out", path, "--threads", "2"]
        for lora in loras:
            cmd += ["--lora", lora]
        rc, so, se = run(cmd)
        if rc != 0:
            raise Failure("llama.cpp: logits of %s with %s failed:\n%s" % (gguf, list(loras),
                                                                          (se or so)[-3000:]))
        got = np.fromfile(path, dtype=np.float32)
        n_vocab = self.config["vocab_size"]
        if got.size != len(self.tokens) * n_vocab or not np.isfinite(got).all():
            raise Failure("%s: %d logits (want %d x %d), finite: %s"
                          % (path, got.size, len(self.tokens), n_vocab, np.isfinite(got).all()))
        return got.astype(np.float64).reshape(len(self.tokens), n_vocab)


# --- expected tensors, from the adapter's safetensors -----------------------

def gguf_stem(module):
    """HF module path -> GGUF weight name."""
    m = module[len("model."):] if module.startswith("model.") else module
    if m == "embed_tokens":
        return "token_embd.weight"
    if module == "lm_head":
        return "output.weight"
    parts = m.split(".")
    if parts[0] == "layers":
        return "blk.%s.%s.weight" % (parts[1], LAYER_NAMES[".".join(parts[2:])])
    raise Failure("no GGUF name for module %s" % module)


def permute_rows(w, n_head):
    """gguf.md 3.2: HF rotate-half rows -> llama.cpp's interleaved ones."""
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def read_adapter(path, weight):
    """{module: (A float64, B float64, s)} of one adapter, s the PEFT scale
    times the weight."""
    with open(os.path.join(path, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors = gen.read_safetensors(os.path.join(path, "adapter_model.safetensors"))
    out = {}
    for key, (dtype, arr) in tensors.items():
        for part, is_a in (("lora_A.weight", True), ("lora_B.weight", False),
                           ("lora_embedding_A", True), ("lora_embedding_B", False)):
            if key.endswith("." + part):
                module = key[len("base_model.model."):-len(part) - 1]
                entry = out.setdefault(module, [None, None, None])
                entry[0 if is_a else 1] = gen.storage_to_f32(arr, dtype).astype(np.float64)
    for module, entry in out.items():
        r = entry[0].shape[0]
        rk = gen.pattern_key(cfg["rank_pattern"], module)
        if rk is not None:
            assert cfg["rank_pattern"][rk] == r, (module, r)
        ak = gen.pattern_key(cfg["alpha_pattern"], module)
        alpha = cfg["alpha_pattern"][ak] if ak is not None else cfg["lora_alpha"]
        s = alpha / math.sqrt(r) if cfg["use_rslora"] else alpha / r
        entry[2] = s * (1.0 if weight is None else weight)
    return out


def expected_pairs(fam, adapters):
    """{gguf stem: (lora_a float64 in file row order, s x lora_B in file row
    order, rank, [(lora_B, s)] for the bit-exact check)}, adapters side by
    side."""
    cfg = fam.config
    llama_arch = cfg["model_type"] in ("llama", "mistral")
    per = {}
    for path, weight in adapters:
        for module, (a, b, s) in sorted(read_adapter(path, weight).items()):
            per.setdefault(gguf_stem(module), []).append((a, b, s))
    out = {}
    for stem, terms in per.items():
        embd = stem == "token_embd.weight"
        a = np.concatenate([t[0] for t in terms], axis=0)
        b_scaled = np.concatenate([t[1] * t[2] for t in terms], axis=1)
        b_plain = np.concatenate([t[1] for t in terms], axis=1)
        if embd:
            a = a.T
        if llama_arch and (".attn_q." in stem or ".attn_k." in stem):
            heads = cfg["num_attention_heads"]
            if ".attn_k." in stem:
                heads = cfg.get("num_key_value_heads", heads)
            b_scaled = permute_rows(b_scaled, heads)
            b_plain = permute_rows(b_plain, heads)
        out[stem] = (a, b_scaled, a.shape[0] if not embd else a.shape[1], b_plain,
                     [t[2] for t in terms])
    return out


# --- reading the files -----------------------------------------------------------

def dump(args, path):
    rc, so, se = run([args.harness, "dump", path])
    if rc != 0:
        raise Failure("llama.cpp's gguf reader rejects %s: %s" % (path, se[-2000:]))
    return json.loads(so)


def tensor_bytes(path, info, data_offset):
    with open(path, "rb") as f:
        f.seek(data_offset + info["offset"])
        return f.read(info["size"])


def ggml_quantize(args, typ, values):
    """ggml_quantize_chunk of float32 rows (llama.cpp, through the harness)."""
    p = subprocess.run([args.harness, "quantize", typ, str(values.shape[0]),
                        str(values.shape[1])], input=values.astype("<f4").tobytes(),
                       capture_output=True)
    if p.returncode != 0:
        raise Failure("harness quantize %s failed: %s" % (typ, p.stderr.decode()[-2000:]))
    return p.stdout


def check_keys(fam, d, path):
    kv = [(k["key"], k["value"]) for k in d["kv"]]
    keys = [k for k, _ in kv]
    vals = dict(kv)
    want = [("general.architecture", None), ("general.type", "adapter"),
            ("adapter.type", "lora")]
    if keys[:3] != [k for k, _ in want]:
        raise Failure("%s: first keys %s, want %s" % (path, keys[:3], [k for k, _ in want]))
    for k, v in want[1:]:
        if vals[k] != v:
            raise Failure("%s: %s = %r, want %r" % (path, k, vals[k], v))
    # the base GGUF's architecture
    base_arch = [k["value"] for k in dump(fam.args, fam.base_gguf)["kv"]
                 if k["key"] == "general.architecture"][0]
    if vals["general.architecture"] != base_arch:
        raise Failure("%s: architecture %s, the base's is %s"
                      % (path, vals["general.architecture"], base_arch))
    if keys[-2:] != ["adapter.lora.alpha", "general.quantization_version"] or \
            vals["general.quantization_version"] != 2:
        raise Failure("%s: keys end with %s, want adapter.lora.alpha, "
                      "general.quantization_version = 2" % (path, keys[-2:]))
    extra = [k for k in keys if k == "general.file_type" or k.startswith("tokenizer.")
             or k.startswith(base_arch + ".")]
    if extra:
        raise Failure("%s: keys an adapter does not carry: %s" % (path, extra))
    return vals["adapter.lora.alpha"]


def check_f32_file(fam, path, adapters):
    """The F32 adapter against numpy; returns (alpha, {name: float32 array})."""
    d = dump(fam.args, path)
    alpha = check_keys(fam, d, path)
    want = expected_pairs(fam, adapters)
    names = sorted("%s.lora_%s" % (stem, ab) for stem in want for ab in "ab")
    got_names = sorted(t["name"] for t in d["tensors"])
    if got_names != names:
        raise Failure("%s: tensors\n  %s\nwant\n  %s" % (path, got_names, names))
    values = {}
    uniform = all(len(set(np.float32(s * w[2]) for s in w[4])) == 1 for w in want.values()) \
        and len(set(np.float32(w[4][0] * w[2]) for w in want.values())) == 1
    for t in d["tensors"]:
        stem, ab = t["name"].rsplit(".lora_", 1)
        a, b_scaled, rank, b_plain, scales = want[stem]
        ref = a if ab == "a" else b_scaled
        ne = [ref.shape[1], ref.shape[0]]
        if t["type"] != "f32" or t["ne"] != ne:
            raise Failure("%s: %s is %s %s, want f32 %s" % (path, t["name"], t["type"],
                                                            t["ne"], ne))
        arr = np.frombuffer(tensor_bytes(path, t, d["data_offset"]), dtype="<f4").reshape(ref.shape)
        values[t["name"]] = arr
        if ab == "a":
            if not np.array_equal(arr, a.astype(np.float32)):
                raise Failure("%s: %s differs from lora_A" % (path, t["name"]))
            continue
        # what llama.cpp multiplies by: alpha / r in float32
        scale = np.float32(alpha) / np.float32(rank)
        e = err(arr.astype(np.float64) * float(scale), b_scaled)
        if e > SCALE_TOL:
            raise Failure("%s: (alpha / r) x %s is %.3g from s x lora_B" % (path, t["name"], e))
        if uniform and not np.array_equal(arr, b_plain.astype(np.float32)):
            raise Failure("%s: %s is not lora_B as it is, though one alpha fits every module"
                          % (path, t["name"]))
    if uniform:
        stem0 = sorted(want)[0]
        want_alpha = np.float32(want[stem0][4][0] * want[stem0][2])
        if np.float32(alpha) != want_alpha:
            raise Failure("%s: adapter.lora.alpha %r, want %r (s x r)" % (path, alpha, want_alpha))
    return alpha, uniform, values


def check_typed_file(fam, path, typ, f32_values, alpha):
    """Every tensor of an F16/BF16/Q8_0 adapter: ggml's encoding of the F32
    file's values, in the converter's type."""
    d = dump(fam.args, path)
    if check_keys(fam, d, path) != alpha:
        raise Failure("%s: alpha differs from the F32 file's" % path)
    if sorted(t["name"] for t in d["tensors"]) != sorted(f32_values):
        raise Failure("%s: not the F32 file's tensors" % path)
    for t in d["tensors"]:
        ref = f32_values[t["name"]]
        want_type = typ if not (typ == "q8_0" and ref.shape[1] % 32) else "f16"
        if t["type"] != want_type:
            raise Failure("%s: %s is %s, want %s" % (path, t["name"], t["type"], want_type))
        if tensor_bytes(path, t, d["data_offset"]) != ggml_quantize(fam.args, want_type, ref):
            raise Failure("%s: %s is not ggml's %s of the F32 file's values"
                          % (path, t["name"], want_type))


# --- cases ---------------------------------------------------------------------

def make_adapters(fam, case):
    out = []
    for i, (kw, weight) in enumerate(case["adapters"]):
        if kw is None:
            out.append((fam.adapter, weight))
            continue
        kw = dict(kw)
        kw.setdefault("targets", ga.PHI3_TARGETS if ga.is_phi3(ga.family_spec(fam.name))
                      else ga.LLAMA_TARGETS)
        path = os.path.join(fam.dir, "%s-adapter%d" % (case["name"], i))
        shutil.rmtree(path, ignore_errors=True)
        out.append((gen.generate_adapter(path, fam.model, seed=2000 + i,
                                         base_name="smelt-test/tiny-" + fam.name, **kw),
                    weight))
    return out


def run_case(fam, case, report):
    adapters = make_adapters(fam, case)
    paths = [p for p, _ in adapters]
    weights = [1.0 if w is None else w for _, w in adapters]
    weights = weights if any(w is not None for _, w in adapters) else None
    merged = fam.export(case["name"] + "-merged", paths,
                        {"Types": "f32", "Name": "merged", "Report": "false"}, weights)
    lora_dir = fam.export(case["name"] + "-lora", paths,
                          {"Types": ";".join(case["types"]), "Adapter": "true"}, weights)
    types = [case["auto"] if t == "auto" else t for t in case["types"]]
    files = sorted(os.listdir(lora_dir))
    want_files = sorted("model-lora.%s.gguf" % t.upper() for t in types)
    if files != want_files:
        raise Failure("%s wrote %s, want %s" % (lora_dir, files, want_files))
    merged_logits = fam.logits(os.path.join(merged, "merged.F32.gguf"))
    effect = err(fam.base_logits, merged_logits)
    if effect < MIN_EFFECT:
        raise Failure("the adapter moves the logits by only %.3g" % effect)

    # logits first: what users see
    row = dict(case=case["name"], effect=effect)
    for typ in types:
        path = os.path.join(lora_dir, "model-lora.%s.gguf" % typ.upper())
        e = err(fam.logits(fam.base_gguf, [path]), merged_logits)
        row[typ] = e
        if typ == "f32" and e > LOGITS_TOL:
            raise Failure("%s on the base: logits %.3g from the merged model's (allowed %g)"
                          % (path, e, LOGITS_TOL))
        if typ != "f32" and e > LOSSY_SHARE * effect:
            raise Failure("%s on the base: logits %.3g from the merged model's, more than %g "
                          "of the adapter's effect %.3g" % (path, e, LOSSY_SHARE, effect))
    alpha, uniform, values = check_f32_file(fam, os.path.join(lora_dir, "model-lora.F32.gguf"),
                                            adapters)
    row.update(alpha=alpha, folded=not uniform)
    for typ in types:
        if typ != "f32":
            check_typed_file(fam, os.path.join(lora_dir, "model-lora.%s.gguf" % typ.upper()),
                             typ, values, alpha)
    report.append(row)


def run_refusal(args, families, case):
    fam = families(case["family"])
    if case["adapter"] is None:
        adapters = []
        adapter_file = None
    else:
        kw = dict(case["adapter"])
        kw.setdefault("targets", ga.LLAMA_TARGETS)
        path = os.path.join(fam.dir, "refuse-" + case["name"])
        shutil.rmtree(path, ignore_errors=True)
        gen.generate_adapter(path, fam.model, seed=3000, **kw)
        adapters = [path]
        adapter_file = os.path.join(path, "adapter_model.safetensors")
    opts = {"Types": "f16", "Adapter": "true"}
    opts.update(case["opts"])
    out, rc, text = fam.export("refuse-" + case["name"], adapters, opts, expect_ok=False)
    want_rc = case.get("exit", 1)
    if rc != want_rc:
        raise Failure("smelt exited %d, want %d:\n%s" % (rc, want_rc, text))
    for s in case["expect"]:
        s = s.replace("{adapter}", adapter_file or "")
        if s not in text:
            raise Failure("the message lacks %r:\n%s" % (s, text))
    left = [os.path.join(dp, f) for dp, _, fs in os.walk(out) for f in fs] \
        if os.path.exists(out) else []
    if left:
        raise Failure("files left behind: %s" % left)
    return text.strip().splitlines()[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=False)
    p.add_argument("--harness", required=False)
    p.add_argument("--workdir")
    p.add_argument("--case", action="append", default=[], help="only this case")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    names = [c["name"] for c in CASES] + ["refuse-" + c["name"] for c in REFUSALS]
    if args.list:
        print("\n".join(names))
        return 0
    if not (args.smelt and args.harness and args.workdir):
        p.error("--smelt, --harness and --workdir are required")
    for n in args.case:
        if n not in names:
            p.error("unknown case %s (see --list)" % n)
    os.makedirs(args.workdir, exist_ok=True)
    cache = {}

    def families(name):
        if name not in cache:
            cache[name] = Family(args, name)
        return cache[name]

    failures = []
    report = []
    t0 = time.time()
    for case in CASES:
        if args.case and case["name"] not in args.case:
            continue
        try:
            run_case(families(case["family"]), case, report)
            print("ok    %s" % case["name"])
        except Failure as e:
            failures.append(case["name"])
            print("FAIL  %s: %s" % (case["name"], e))
    for case in REFUSALS:
        if args.case and "refuse-" + case["name"] not in args.case:
            continue
        try:
            msg = run_refusal(args, families, case)
            print("ok    refuse-%s: %s" % (case["name"], msg))
        except Failure as e:
            failures.append("refuse-" + case["name"])
            print("FAIL  refuse-%s: %s" % (case["name"], e))

    print("\nerr = max|a - b| / max|b| of the logits, base GGUF + adapter GGUF against the "
          "merged F32 GGUF")
    print("%-20s %12s %6s %9s %10s %10s %10s %10s" % ("case", "alpha", "folded", "effect",
                                                      "F32", "F16", "BF16", "Q8_0"))
    for r in report:
        print("%-20s %12.8g %6s %9.3g %s" % (
            r["case"], r["alpha"], "yes" if r["folded"] else "no", r["effect"],
            " ".join("%10s" % ("%.3g" % r[t] if t in r else "-") for t in TYPES)))
    print("(%.1f s)" % (time.time() - t0))
    if failures:
        print("FAILED: %s" % ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

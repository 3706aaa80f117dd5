#!/usr/bin/python3
"""bitsandbytes 4-bit bases (the `*-bnb-4bit` checkpoints QLoRA trains on)
as the Model of an export, against the independent numpy reference.

Tiny 16-bit models from tests/gen are quantized here with
tests/reference/bnb4_ref.py (every attention/MLP Linear weight; embeddings,
lm_head and norms stay 16-bit) in several ways: NF4 and FP4, nested and
plain, blocksizes 32/64/128/256, bf16 and fp16 models, odd element counts,
one model sharded with each weight's pieces spread over the shards, one with
rows long enough that smelt reads every weight in several row blocks on
several threads. Then:

* merged16 without an adapter writes, for every 4-bit weight,
  bnb4_ref.dequantize(..., out_dtype=the model's dtype) bit for bit, every
  other tensor unchanged, config.json without quantization_config;
* gguf-quant BF16 holds the same dequantized bits;
* merged16 with an adapter equals merge_ref's reference merge applied to
  the dequantized model (merge_ref.compare's tolerance), and with
  MergeInto=original16 (recipe and --merge-into) the merge into the 16-bit
  original;
* `smelt inspect` reports the 4-bit weights;
* bad input (a quant state lying about shape or blocksize, missing pieces,
  unknown types, wrong lengths, recipe mistakes) exits non-zero with an
  error naming the file, the tensor and the problem, and leaves no file.

    test_bnb4_base.py --smelt SMELT --workdir DIR [--case SUBSTRING]
"""

import importlib

try:  # numpy/torch live in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
    importlib.import_module('torch')
except ImportError:  # e.g. a pyenv python3 first in PATH: use Debian's
    import os as _os
    import sys as _sys
    if _os.path.realpath(_sys.executable) != _os.path.realpath("/usr/bin/python3") \
            and _os.access("/usr/bin/python3", _os.X_OK):
        _os.execv("/usr/bin/python3", ["/usr/bin/python3"] + _sys.argv)
    raise

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, os.path.join(HERE, "..", "gguf"))

import bnb4_ref as R  # noqa: E402
import gen_tiny_model as gen  # noqa: E402
import merge_ref  # noqa: E402
from test_gguf_tensors import Gguf  # noqa: E402

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TORCH_NAME = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")

SMELT = None
WORK = None


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def smelt_env():
    """SMELT_PLUGIN_PATH from the build tree when meson did not set it."""
    env = dict(os.environ)
    if not env.get("SMELT_PLUGIN_PATH"):
        build = os.path.dirname(os.path.dirname(os.path.abspath(SMELT)))
        dirs = sorted(d for d in glob.glob(os.path.join(build, "plugins", "*")) if os.path.isdir(d))
        env["SMELT_PLUGIN_PATH"] = os.pathsep.join(dirs)
        env.setdefault("SMELT_PLUGIN_SYSTEM_PATH", "")
    return env


def smelt(args, expect_ok=True):
    p = subprocess.run([SMELT] + args, env=smelt_env(), capture_output=True, text=True,
                       timeout=300)
    if expect_ok and p.returncode != 0:
        raise Failure("smelt %s exited %d:\n%s%s" % (" ".join(args), p.returncode,
                                                      p.stdout, p.stderr))
    return p


# ---------------------------------------------------------------------------
# building 4-bit bases with the reference
# ---------------------------------------------------------------------------

def is_quantized(name):
    """transformers' rule for these models: every Linear of attention and
    MLP; not the embeddings, lm_head or norms."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in LINEAR


def storage_array(st_dtype, shape, raw):
    dt = {"U8": np.uint8, "F32": np.dtype("<f4")}[st_dtype]
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def copy_side_files(src, dst):
    """Everything but the weights and config.json (tokenizer, generation
    config)."""
    os.makedirs(dst)
    for fn in os.listdir(src):
        if fn.endswith(".safetensors") or fn in WEIGHT_FILES or fn == "config.json":
            continue
        shutil.copy(os.path.join(src, fn), os.path.join(dst, fn))


def write_weights(dst, entries, shards):
    """entries (state-dict order) as one file, or round-robin over `shards`
    files: consecutive pieces of one weight land in different shards."""
    if shards <= 1:
        gen.write_safetensors(os.path.join(dst, "model.safetensors"), entries)
        return
    groups = [[] for _ in range(shards)]
    for i, e in enumerate(entries):
        groups[i % shards].append(e)
    weight_map = {}
    for k, group in enumerate(groups):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        gen.write_safetensors(os.path.join(dst, fn), group)
        for e in group:
            weight_map[e.name] = fn
    gen.dump_hf_json(os.path.join(dst, "model.safetensors.index.json"),
                     {"metadata": {"total_size": sum(e.nbytes for e in entries)},
                      "weight_map": weight_map})


class Base:
    """A 16-bit model and its 4-bit copy.

    pieces: {weight name: {key: (st_dtype, shape, raw bytes)}} as
    bnb4_ref.linear4bit_state made them."""

    def __init__(self, name, model_kw, quant_type, blocksize, double, shards=1, jobs=None):
        self.name = name
        self.quant_type = quant_type
        self.blocksize = blocksize
        self.double = double
        self.jobs = jobs
        d = os.path.join(WORK, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        self.dir = d
        model_kw = dict(model_kw)
        model_kw.setdefault("seed", 11)
        self.orig = gen.generate_model(os.path.join(d, "orig16"), **model_kw)
        self.mf = gen.ModelFiles(self.orig)
        self.dtype_name = self.mf.config["torch_dtype"]
        self.st_dtype = {v: k for k, v in TORCH_NAME.items()}[self.dtype_name]
        self.base4 = os.path.join(d, "base4")
        self.pieces = {}
        self._build(shards)
        self._expected = {}

    def _build(self, shards):
        copy_side_files(self.orig, self.base4)
        entries = []
        for name in self.mf.tensors:
            if is_quantized(name):
                state = R.linear4bit_state(name[:-len(".weight")], self.mf.f32(name),
                                           self.dtype_name, self.quant_type, self.blocksize,
                                           self.double)
                self.pieces[name] = {k: (dt, shape, raw) for k, dt, shape, raw in state}
                for k, dt, shape, raw in state:
                    entries.append(gen.entry_from_array(k, dt, storage_array(dt, shape, raw)))
            else:
                path, dt, _ = self.mf.tensors[name]
                entries.append(gen.entry_from_array(name, dt, gen.read_safetensors(path, {name})[name][1]))
        write_weights(self.base4, entries, shards)
        config = dict(self.mf.config)
        config["quantization_config"] = R.quantization_config(self.quant_type, self.double,
                                                              self.dtype_name, None)
        gen.dump_hf_json(os.path.join(self.base4, "config.json"), config)

    def dequantize(self, weight, out_dtype):
        """bnb4_ref.dequantize of the weight's pieces, [out, in]."""
        p = self.pieces[weight]
        state = json.loads(p[weight + ".quant_state.bitsandbytes__" + self.quant_type][2])
        shape = state["shape"]
        kw = {}
        if self.double:
            kw = dict(nested_absmax=storage_array(*p[weight + ".nested_absmax"]),
                      offset=state["nested_offset"],
                      nested_map=storage_array(*p[weight + ".nested_quant_map"]))
        v = R.dequantize(storage_array(*p[weight]), storage_array(*p[weight + ".absmax"]),
                         state["quant_type"], state["blocksize"], shape[0] * shape[1],
                         out_dtype, **kw)
        return v.reshape(shape)

    def expected(self, weight):
        """The weight as bitsandbytes hands it out (its quant state's dtype),
        as storage bits: uint16 for 16-bit models."""
        if weight not in self._expected:
            v = self.dequantize(weight, self.dtype_name)
            self._expected[weight] = v.view(np.uint16) if v.dtype == np.float16 else \
                v.view(np.uint32) if v.dtype == np.float32 else v
        return self._expected[weight]

    def expected_f32(self, weight):
        """The float32 products, before rounding to the model's dtype."""
        return self.dequantize(weight, "float32")

    def dequantized_dir(self):
        """The 16-bit model the 4-bit one reads as (bnb4_ref's values), for
        merge_ref: same config and side files as the original."""
        d = os.path.join(self.dir, "dequantized16")
        if os.path.isdir(d):
            return d
        copy_side_files(self.orig, d)
        shutil.copy(os.path.join(self.orig, "config.json"), os.path.join(d, "config.json"))
        entries = []
        for name in self.mf.tensors:
            path, dt, _ = self.mf.tensors[name]
            if name in self.pieces:
                arr = self.expected(name)
                if dt == "F16":
                    arr = arr.view(np.float16)
            else:
                arr = gen.read_safetensors(path, {name})[name][1]
            entries.append(gen.entry_from_array(name, dt, arr))
        gen.write_safetensors(os.path.join(d, "model.safetensors"), entries)
        return d


def read_output(out):
    """{name: (dtype, storage array)} of a merged16 output directory."""
    index = os.path.join(out, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values()))
             if os.path.exists(index) else ["model.safetensors"])
    got = {}
    for fn in files:
        got.update(gen.read_safetensors(os.path.join(out, fn)))
    return got


def bits(dtype, arr):
    return arr.view(np.uint16) if dtype in ("BF16", "F16") else arr.view(np.uint32)


# ---------------------------------------------------------------------------
# cases: dequantization
# ---------------------------------------------------------------------------

BASES = {}


def base(name):
    specs = {
        "nf4-nested-64-bf16": ({"dtype": "bf16"}, "nf4", 64, True, 1, None),
        "fp4-plain-256-bf16": ({"dtype": "bf16"}, "fp4", 256, False, 1, None),
        "nf4-plain-64-fp16": ({"dtype": "fp16"}, "nf4", 64, False, 1, None),
        "fp4-nested-128-fp16": ({"dtype": "fp16"}, "fp4", 128, True, 1, None),
        "nf4-nested-64-sharded": ({"dtype": "bf16", "seed": 5}, "nf4", 64, True, 3, None),
        # 63-wide rows, odd element counts: blocks straddle rows and the
        # last byte holds one code
        "nf4-nested-32-odd": ({"dtype": "bf16", "hidden": 63, "heads": 3, "kv_heads": 1,
                               "intermediate": 99}, "nf4", 32, True, 1, None),
        # rows long enough for several row blocks (4 MiB of float32) per
        # weight, read on 4 threads; 1000-wide rows make blocks start in
        # the middle of a group of 256 nested absmax codes
        "nf4-nested-64-big": ({"dtype": "bf16", "layers": 1, "hidden": 1000, "heads": 4,
                               "kv_heads": 2, "intermediate": 4096}, "nf4", 64, True, 1, 4),
    }
    if name not in BASES:
        kw, qt, bs, double, shards, jobs = specs[name]
        BASES[name] = Base(name, kw, qt, bs, double, shards, jobs)
    return BASES[name]


DEQUANT_BASES = ["nf4-nested-64-bf16", "fp4-plain-256-bf16", "nf4-plain-64-fp16",
                 "fp4-nested-128-fp16", "nf4-nested-64-sharded", "nf4-nested-32-odd",
                 "nf4-nested-64-big"]


def check_dequantized_export(b):
    out = os.path.join(b.dir, "out-merged16")
    shutil.rmtree(out, ignore_errors=True)
    args = ["export", "--model", b.base4, "--format", "merged16", "--to", out, "--progress=none"]
    if b.jobs:
        args += ["--jobs", str(b.jobs)]
    smelt(args)
    got = read_output(out)
    check(set(got) == set(b.mf.tensors),
          "tensor names differ: missing %s, unexpected %s"
          % (sorted(set(b.mf.tensors) - set(got))[:5], sorted(set(got) - set(b.mf.tensors))[:5]))
    check(len(b.pieces) == 7 * b.mf.config["num_hidden_layers"], "quantized %d weights" % len(b.pieces))
    for name, (path, dt, shape) in b.mf.tensors.items():
        gdt, garr = got[name]
        check(gdt == b.st_dtype, "%s: dtype %s, want %s" % (name, gdt, b.st_dtype))
        check(list(garr.shape) == list(shape), "%s: shape %s, want %s" % (name, list(garr.shape), shape))
        if name in b.pieces:
            want = b.expected(name)
            diff = np.flatnonzero(bits(gdt, garr).ravel() != want.ravel())
            check(diff.size == 0, "%s: %d of %d elements differ from bnb4_ref.dequantize "
                  "(first at flat index %d: got %#x want %#x)"
                  % (name, diff.size, want.size, diff[0] if diff.size else -1,
                     bits(gdt, garr).ravel()[diff[0]] if diff.size else 0,
                     want.ravel()[diff[0]] if diff.size else 0))
        else:
            orig = gen.read_safetensors(path, {name})[name][1]
            check(np.array_equal(bits(gdt, garr), bits(dt, orig)), "%s: changed" % name)
    cfg = json.load(open(os.path.join(out, "config.json")))
    check("quantization_config" not in cfg, "config.json keeps quantization_config")
    want_cfg = dict(b.mf.config)
    check(cfg == want_cfg, "config.json differs from the 16-bit one: %s"
          % sorted(k for k in set(cfg) | set(want_cfg) if cfg.get(k) != want_cfg.get(k)))
    return "%d 4-bit weights bit-exact" % len(b.pieces)


def check_other_dtype(b):
    """DType=fp16 from a bf16 4-bit model: the weights are the bf16 values
    bitsandbytes hands out, then rounded to fp16 (not the float32 products
    rounded to fp16 directly)."""
    check(b.st_dtype == "BF16", "needs a bf16 model")
    out = os.path.join(b.dir, "out-merged16-fp16")
    shutil.rmtree(out, ignore_errors=True)
    smelt(["export", "--model", b.base4, "--format", "merged16", "--to", out,
           "--set", "DType=fp16", "--progress=none"])
    got = read_output(out)
    n_double = 0
    for w in b.pieces:
        dt, arr = got[w]
        check(dt == "F16", "%s: dtype %s" % (w, dt))
        want = R.bf16_bits_to_f32(b.expected(w)).astype(np.float16)
        diff = np.flatnonzero(arr.view(np.uint16).ravel() != want.view(np.uint16).ravel())
        check(diff.size == 0, "%s: %d elements differ from fp16(bf16(dequantize))" % (w, diff.size))
        # count where skipping the bf16 rounding would have given another value
        n_double += int(np.count_nonzero(want.ravel() != b.expected_f32(w).astype(np.float16).ravel()))
    check(n_double > 0, "no element tells the two roundings apart: the check is vacuous")
    return "%d 4-bit weights bit-exact (%d elements where the bf16 step matters)" % (len(b.pieces), n_double)


def check_gguf(b):
    """gguf-quant reads the same rows: its BF16 file holds the dequantized
    bits (v_proj and the MLP: llama.cpp permutes q/k rows)."""
    out = os.path.join(b.dir, "out-gguf")
    shutil.rmtree(out, ignore_errors=True)
    smelt(["export", "--model", b.base4, "--format", "gguf-quant", "--to", out,
           "--set", "Types=bf16", "--set", "Pre=gpt-2", "--progress=none"])
    files = glob.glob(os.path.join(out, "*.gguf"))
    check(len(files) == 1, "gguf files: %s" % files)
    g = Gguf(files[0])
    n = 0
    for i in range(b.mf.config["num_hidden_layers"]):
        for ours, theirs in (("self_attn.v_proj", "attn_v"), ("mlp.gate_proj", "ffn_gate"),
                             ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")):
            w = "model.layers.%d.%s.weight" % (i, ours)
            ttype, ne, data = g.tensors["blk.%d.%s.weight" % (i, theirs)]
            check(ttype == 30, "%s: GGUF type %d, want BF16" % (w, ttype))
            got = np.frombuffer(data, dtype=np.uint16)
            check(np.array_equal(got, b.expected(w).ravel()), "%s: GGUF BF16 data differ" % w)
            n += 1
    return "%d weights in the GGUF equal" % n


def check_inspect(b):
    p = smelt(["inspect", b.base4, "--json"])
    info = json.loads(p.stdout)
    q = info.get("bnb4")
    check(q is not None, "inspect --json: no bnb4")
    check(q["weights"] == len(b.pieces), "bnb4.weights %s, want %d" % (q["weights"], len(b.pieces)))
    check(q["quant_type"] == b.quant_type and q["blocksize"] == b.blocksize and
          q["nested"] == b.double, "bnb4 says %s" % q)
    check(info["dtype"] == b.st_dtype, "dtype %s" % info["dtype"])
    names = {t["name"]: t for t in info["tensors"]}
    check(set(names) == set(b.mf.tensors), "tensors listed: %s" % sorted(set(names) ^ set(b.mf.tensors))[:5])
    for w in b.pieces:
        check(names[w].get("quant_type") == b.quant_type and names[w]["shape"] == b.mf.shape(w),
              "%s listed as %s" % (w, names[w]))
    text = smelt(["inspect", b.base4]).stdout
    want = "bitsandbytes 4-bit: %s, blocksize %d, %s" % (
        b.quant_type, b.blocksize, "nested" if b.double else "not nested")
    check(want in text and ("%d weights" % len(b.pieces)) in text,
          "inspect text lacks “%s … %d weights”:\n%s" % (want, len(b.pieces), text[:600]))
    plain = json.loads(smelt(["inspect", b.orig, "--json"]).stdout)
    check(plain.get("bnb4", "absent") is None, "a 16-bit model has bnb4 = %r" % plain.get("bnb4"))
    return "inspect ok"


# ---------------------------------------------------------------------------
# cases: merges
# ---------------------------------------------------------------------------

def compare_merge(out, ref):
    rep = merge_ref.compare(out, ref, "auto")
    check(rep.ok, "; ".join(rep.errors[:5]))
    return rep.summary()


def adapter_for(b, dora=False):
    """A rank-8 LoRA (or DoRA) on all seven projections, made against the
    16-bit original as QLoRA's shapes are the original's."""
    d = os.path.join(b.dir, "adapter-dora" if dora else "adapter")
    if not os.path.isdir(d):
        gen.generate_adapter(d, b.orig, seed=21, dora=dora)
    return d


def check_merge_dequantized(b, dora=False):
    a = adapter_for(b, dora)
    out = os.path.join(b.dir, "out-merge-deq" + ("-dora" if dora else ""))
    shutil.rmtree(out, ignore_errors=True)
    smelt(["export", "--model", b.base4, "--adapter", a, "--format", "merged16", "--to", out,
           "--progress=none"])
    ref = merge_ref.reference_merge(b.dequantized_dir(), [(a, 1.0)])
    # the check discriminates: merging into the original gives other values
    ref16 = merge_ref.reference_merge(b.orig, [(a, 1.0)])
    w = "model.layers.0.self_attn.q_proj.weight"
    check(not np.array_equal(ref.tensors[w].numpy(), ref16.tensors[w].numpy()),
          "reference merges into the dequantized and the original model agree")
    return compare_merge(out, ref)


def write_source_recipe(path, model, adapter, out, source_extra):
    with open(path, "w") as f:
        f.write("[Source]\nModel=%s\nAdapters=%s\n%s\n[Destination d]\nPlugin=localfs\n"
                "Path=%s\n\n[Export m]\nFormat=merged16\nDestination=d\n"
                % (model, adapter, source_extra, out))


def check_merge_original(b):
    a = adapter_for(b)
    ref = merge_ref.reference_merge(b.orig, [(a, 1.0)])
    # recipe, paths relative to its folder
    out = os.path.join(b.dir, "out-merge-orig")
    shutil.rmtree(out, ignore_errors=True)
    recipe = os.path.join(b.dir, "orig.smelt")
    write_source_recipe(recipe, "base4", os.path.basename(a), "out-merge-orig",
                        "MergeInto=original16\nOriginal=orig16\n")
    smelt(["run", recipe, "--progress=none"])
    s1 = compare_merge(out, ref)
    # the same from the command line
    out2 = os.path.join(b.dir, "out-merge-orig-cli")
    shutil.rmtree(out2, ignore_errors=True)
    smelt(["export", "--model", b.base4, "--adapter", a, "--merge-into", "original16",
           "--original", b.orig, "--format", "merged16", "--to", out2, "--progress=none"])
    compare_merge(out2, ref)
    # and MergeInto=dequantized spelled out is the default
    out3 = os.path.join(b.dir, "out-merge-deq-explicit")
    shutil.rmtree(out3, ignore_errors=True)
    recipe3 = os.path.join(b.dir, "deq.smelt")
    write_source_recipe(recipe3, "base4", os.path.basename(a), "out-merge-deq-explicit",
                        "MergeInto=dequantized\n")
    smelt(["run", recipe3, "--progress=none"])
    compare_merge(out3, merge_ref.reference_merge(b.dequantized_dir(), [(a, 1.0)]))
    return s1


# ---------------------------------------------------------------------------
# cases: bad input
# ---------------------------------------------------------------------------

W = "model.layers.1.mlp.down_proj.weight"


def broken_copy(b, name):
    d = os.path.join(WORK, "broken", name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(b.base4, d)
    return d


def edit_tensors(model_dir, fn):
    path = os.path.join(model_dir, "model.safetensors")
    tensors = gen.read_safetensors(path)
    fn(tensors)
    gen.write_safetensors(path, [gen.entry_from_array(n, d, a) for n, (d, a) in tensors.items()])


def edit_state(weight, fn, qt="nf4"):
    def edit(t):
        key = weight + ".quant_state.bitsandbytes__" + qt
        state = json.loads(t[key][1].tobytes())
        fn(state)
        raw = json.dumps(state).encode()
        t[key] = ("U8", np.frombuffer(raw, dtype=np.uint8).copy())
    return edit


def set_raw_state(weight, raw, qt="nf4"):
    def edit(t):
        t[weight + ".quant_state.bitsandbytes__" + qt] = ("U8", np.frombuffer(raw, dtype=np.uint8).copy())
    return edit


def drop(*names):
    def edit(t):
        for n in names:
            del t[n]
    return edit


def shorten(name):
    def edit(t):
        dt, arr = t[name]
        t[name] = (dt, arr[:-1].copy())
    return edit


def bad_model_cases(b):
    """(name, edit of the 4-bit model's tensors or config, needles)"""
    shape = b.mf.shape(W)
    nb = -(-shape[0] * shape[1] // 64)
    f = "model.safetensors"
    return [
        ("shape-lie", edit_state(W, lambda s: s.update(shape=[shape[0], shape[1] + 2])),
         [f, W, "shape [%d, %d]" % (shape[0], shape[1] + 2)]),
        ("blocksize-lie", edit_state(W, lambda s: s.update(blocksize=128)),
         [f, W + ".absmax", "blocksize 128", str(nb)]),
        ("missing-absmax", drop(W + ".absmax"), [f, W + ".absmax", "missing"]),
        ("missing-nested-absmax", drop(W + ".nested_absmax"),
         [f, W + ".nested_absmax", "missing", "double-quantized"]),
        ("missing-nested-quant-map", drop(W + ".nested_quant_map"),
         [f, W + ".nested_quant_map", "missing"]),
        ("unknown-quant-type", edit_state(W, lambda s: s.update(quant_type="nf5")),
         [f, W, "quant_type", "nf5"]),
        ("absmax-wrong-length", shorten(W + ".absmax"),
         [f, W + ".absmax", "%d U8 values" % (nb - 1), "needs %d U8" % nb]),
        ("weight-wrong-length", shorten(W), [f, W, "bytes of codes"]),
        ("blocksize-not-power-of-two", edit_state(W, lambda s: s.update(blocksize=96)),
         [f, W, "blocksize", "power of two"]),
        ("blocksize-too-small", edit_state(W, lambda s: s.update(blocksize=16)),
         [f, W, "blocksize", "32 to 4096"]),
        ("nested-blocksize", edit_state(W, lambda s: s.update(nested_blocksize=128)),
         [f, W, "nested_blocksize", "256"]),
        ("nested-offset-missing", edit_state(W, lambda s: s.pop("nested_offset")),
         [f, W, "nested_offset"]),
        ("shape-three-dims", edit_state(W, lambda s: s.update(shape=[shape[0], shape[1], 1])),
         [f, W, "shape", "two positive integers"]),
        ("shape-negative", edit_state(W, lambda s: s.update(shape=[-shape[0], shape[1]])),
         [f, W, "shape", "two positive integers"]),
        ("unknown-dtype", edit_state(W, lambda s: s.update(dtype="int8")),
         [f, W, "dtype", "int8"]),
        ("state-not-json", set_raw_state(W, b"{\"quant_type\": \"nf4\", "),
         [f, W, "JSON"]),
        ("quant-map-wrong-length", shorten(W + ".quant_map"),
         [f, W + ".quant_map", "15 F32", "16"]),
        ("nested-quant-map-wrong-length", shorten(W + ".nested_quant_map"),
         [f, W + ".nested_quant_map", "255 F32", "256"]),
        ("nested-absmax-wrong-length", shorten(W + ".nested_absmax"),
         [f, W + ".nested_absmax", "F32"]),
        ("quant-state-missing", drop(W + ".quant_state.bitsandbytes__nf4"),
         [f, W + ".", "quant_state.bitsandbytes__nf4", "missing"]),
        ("two-quant-states", lambda t: t.update({W + ".quant_state.bitsandbytes__fp4":
                                                 t[W + ".quant_state.bitsandbytes__nf4"]}),
         [f, W, "two quant states"]),
        ("key-type-mismatch", lambda t: t.update({W + ".quant_state.bitsandbytes__fp4":
                                                  t.pop(W + ".quant_state.bitsandbytes__nf4")}),
         [f, W, "quant_type", "fp4"]),
        ("unknown-quant-state", lambda t: t.update({W + ".quant_state.bitsandbytes__int4":
                                                    t.pop(W + ".quant_state.bitsandbytes__nf4")}),
         [f, W + ".quant_state.bitsandbytes__int4", "quant state"]),
        ("int8-base", lambda t: t.update({"model.layers.0.mlp.up_proj.SCB":
                                          ("F32", np.ones(4, dtype=np.float32))}),
         [b.dir, "model.layers.0.mlp.up_proj.SCB", "8-bit"]),
    ]


def check_refused(p, out, needles):
    problems = []
    if p.returncode == 0:
        problems.append("exit status 0")
    missing = [n for n in needles if n not in p.stderr]
    if missing:
        problems.append("error does not mention %s" % missing)
    if "Traceback" in p.stderr or "CRITICAL" in p.stderr or p.returncode < 0:
        problems.append("crash or critical warning")
    left = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs] if os.path.isdir(out) else []
    if left:
        problems.append("left files %s" % left)
    check(not problems, "; ".join(problems) + "\n" + p.stderr.strip())
    return "refused (exit %d): %s" % (p.returncode, p.stderr.strip().splitlines()[-1][:150])


def run_bad_model(b, name, edit, needles):
    d = broken_copy(b, name)
    edit_tensors(d, edit)
    out = os.path.join(WORK, "broken", name + "-out")
    shutil.rmtree(out, ignore_errors=True)
    p = smelt(["export", "--model", d, "--format", "merged16", "--to", out, "--progress=none"],
              expect_ok=False)
    return check_refused(p, out, [n.replace(b.dir, d) for n in needles])


def config_cases():
    """(name, edit of quantization_config, needles)"""
    return [
        ("config-8bit", lambda q: q.update(load_in_8bit=True, load_in_4bit=False,
                                           _load_in_8bit=True, _load_in_4bit=False),
         ["config.json", "load_in_8bit"]),
        ("config-gptq", lambda q: q.update(quant_method="gptq"), ["config.json", "gptq"]),
        ("config-neither", lambda q: q.update(load_in_4bit=False, _load_in_4bit=False),
         ["config.json", "load_in_4bit"]),
    ]


def run_bad_config(b, name, edit, needles):
    d = broken_copy(b, name)
    path = os.path.join(d, "config.json")
    cfg = json.load(open(path))
    edit(cfg["quantization_config"])
    gen.dump_hf_json(path, cfg)
    out = os.path.join(WORK, "broken", name + "-out")
    shutil.rmtree(out, ignore_errors=True)
    p = smelt(["export", "--model", d, "--format", "merged16", "--to", out, "--progress=none"],
              expect_ok=False)
    return check_refused(p, out, [d] + needles)


def run_bad_sharded(b):
    """a piece missing from a sharded model: the shard that held it and the
    index no longer list it"""
    d = os.path.join(WORK, "broken", "sharded-missing-absmax")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(b.base4, d)
    index_path = os.path.join(d, "model.safetensors.index.json")
    index = json.load(open(index_path))
    piece = W + ".absmax"
    fn = index["weight_map"].pop(piece)
    gen.dump_hf_json(index_path, index)
    path = os.path.join(d, fn)
    tensors = gen.read_safetensors(path)
    del tensors[piece]
    gen.write_safetensors(path, [gen.entry_from_array(n, dt, a) for n, (dt, a) in tensors.items()])
    state_file = index["weight_map"][W + ".quant_state.bitsandbytes__nf4"]
    check(state_file != fn, "the pieces are not spread over shards")
    out = os.path.join(WORK, "broken", "sharded-out")
    shutil.rmtree(out, ignore_errors=True)
    p = smelt(["export", "--model", d, "--format", "merged16", "--to", out, "--progress=none"],
              expect_ok=False)
    return check_refused(p, out, [state_file, piece, "missing"])


def recipe_cases(b):
    """(name, command: "validate" or "run", model, source keys, needles)"""
    bad_orig = os.path.join(WORK, "broken", "orig-bad-shape")
    return [
        ("merge-into-without-original", "validate", b.base4, "MergeInto=original16\n",
         ["RECIPE", "[Source]", "MergeInto=original16", "Original="]),
        ("original-without-merge-into", "validate", b.base4, "Original=%s\n" % b.orig,
         ["RECIPE", "[Source]", "Original", "MergeInto=original16"]),
        ("merge-into-bad-value", "validate", b.base4, "MergeInto=fp32\n",
         ["RECIPE", "[Source]", "MergeInto=fp32", "dequantized or original16"]),
        ("merge-into-typo", "validate", b.base4, "MergInto=original16\n",
         ["RECIPE", "[Source]", "MergInto", "did you mean “MergeInto”"]),
        ("merge-into-without-original-run", "run", b.base4, "MergeInto=original16\n",
         ["RECIPE", "MergeInto=original16", "Original="]),
        ("merge-into-16bit-model", "run", b.orig,
         "MergeInto=original16\nOriginal=%s\n" % b.orig,
         ["RECIPE", b.orig, "not a bitsandbytes 4-bit model"]),
        ("original-is-4bit", "run", b.base4,
         "MergeInto=original16\nOriginal=%s\n" % b.base4, ["RECIPE", b.base4, "Original", "16-bit"]),
        ("original-bad-shape", "run", b.base4,
         "MergeInto=original16\nOriginal=%s\n" % bad_orig,
         [bad_orig, W, "has shape [%d, %d]" % (b.mf.shape(W)[0] - 1, b.mf.shape(W)[1]),
          "[%d, %d]" % tuple(b.mf.shape(W))]),
    ]


def make_bad_original(b):
    d = os.path.join(WORK, "broken", "orig-bad-shape")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(b.orig, d)
    path = os.path.join(d, "model.safetensors")
    tensors = gen.read_safetensors(path)
    dt, arr = tensors[W]
    tensors[W] = (dt, arr[:-1].copy())
    gen.write_safetensors(path, [gen.entry_from_array(n, t, a) for n, (t, a) in tensors.items()])


def run_bad_recipe(b, name, command, model, source, needles):
    """RECIPE in the needles stands for the recipe's path."""
    out = os.path.join(WORK, "broken", name + "-out")
    shutil.rmtree(out, ignore_errors=True)
    path = os.path.join(WORK, "broken", name + ".smelt")
    write_source_recipe(path, model, adapter_for(b), out, source)
    args = [command, path] + (["--progress=none"] if command == "run" else [])
    p = smelt(args, expect_ok=False)
    return check_refused(p, out, [path if n == "RECIPE" else n for n in needles])


# ---------------------------------------------------------------------------


def all_cases():
    cases = []
    for name in DEQUANT_BASES:
        cases.append(("dequant/" + name, lambda n=name: check_dequantized_export(base(n))))
    cases.append(("dequant-fp16/nf4-nested-64-bf16", lambda: check_other_dtype(base("nf4-nested-64-bf16"))))
    cases.append(("gguf/nf4-nested-64-bf16", lambda: check_gguf(base("nf4-nested-64-bf16"))))
    cases.append(("gguf/fp4-plain-256-bf16", lambda: check_gguf(base("fp4-plain-256-bf16"))))
    cases.append(("inspect/nf4-nested-64-sharded", lambda: check_inspect(base("nf4-nested-64-sharded"))))
    cases.append(("inspect/fp4-plain-256-bf16", lambda: check_inspect(base("fp4-plain-256-bf16"))))
    for name in ("nf4-nested-64-bf16", "fp4-nested-128-fp16", "nf4-plain-64-fp16",
                 "nf4-nested-64-sharded", "nf4-nested-32-odd"):
        cases.append(("merge-dequantized/" + name,
                      lambda n=name: check_merge_dequantized(base(n))))
    cases.append(("merge-dequantized-dora/nf4-nested-64-bf16",
                  lambda: check_merge_dequantized(base("nf4-nested-64-bf16"), dora=True)))
    for name in ("nf4-nested-64-bf16", "fp4-plain-256-bf16", "nf4-plain-64-fp16"):
        cases.append(("merge-original16/" + name, lambda n=name: check_merge_original(base(n))))
    cases.append(("bad-model/*", None))   # expanded below, lazily
    cases.append(("bad-config/*", None))
    cases.append(("bad-sharded/missing-absmax", lambda: run_bad_sharded(base("nf4-nested-64-sharded"))))
    cases.append(("bad-recipe/*", None))
    return cases


def expand(cases):
    """Bad-input cases need the base to name their needles: expand them
    once the filter has kept them."""
    out = []
    for name, fn in cases:
        if name == "bad-model/*":
            b = base("nf4-nested-64-bf16")
            for n, edit, needles in bad_model_cases(b):
                out.append(("bad-model/" + n, lambda n=n, e=edit, nd=needles: run_bad_model(b, n, e, nd)))
        elif name == "bad-config/*":
            b = base("nf4-nested-64-bf16")
            for n, edit, needles in config_cases():
                out.append(("bad-config/" + n, lambda n=n, e=edit, nd=needles: run_bad_config(b, n, e, nd)))
        elif name == "bad-recipe/*":
            b = base("nf4-nested-64-bf16")
            make_bad_original(b)
            for n, command, model, source, needles in recipe_cases(b):
                out.append(("bad-recipe/" + n,
                            lambda n=n, c=command, m=model, s=source, nd=needles:
                            run_bad_recipe(b, n, c, m, s, nd)))
        else:
            out.append((name, fn))
    return out


def main():
    global SMELT, WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--case", default=None, help="run only cases whose name contains this")
    args = ap.parse_args()
    SMELT = os.path.abspath(args.smelt)
    WORK = os.path.abspath(args.workdir)
    os.makedirs(os.path.join(WORK, "broken"), exist_ok=True)
    failures = 0
    cases = [c for c in all_cases() if args.case is None or args.case in c[0]
             or (c[1] is None and args.case.split("/")[0] in c[0])]
    for name, fn in expand(cases):
        if args.case is not None and args.case not in name:
            continue
        try:
            msg = fn()
            print("ok   %s: %s" % (name, msg))
        except Failure as e:
            failures += 1
            print("FAIL %s: %s" % (name, e))
        except Exception:  # a test bug: say so, go on
            failures += 1
            print("FAIL %s: test error\n%s" % (name, traceback.format_exc()))
        sys.stdout.flush()
    print("%d failure%s" % (failures, "" if failures == 1 else "s"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The bnb4 export against the numpy reference.

One smelt run writes the merged model twice: as merged16 (bf16 or fp16)
and as bnb4. The merge itself is checked elsewhere (merge-reference);
here the bnb4 files must be exactly what bitsandbytes' Linear4bit would
save for those same merged 16-bit weights, as tests/reference/bnb4_ref.py
computes it from the published algorithm:

* every Linear weight of the attention and MLP (and none of the
  embeddings, lm_head, norms, biases, nor SkipModules) as the six (or
  four) pieces with the reference's names, dtypes, shapes and bytes, the
  quant-state JSON byte for byte;
* every other tensor with merged16's bytes;
* config.json: merged16's, plus the reference's quantization_config;
* sharded exports keep each weight's pieces in one shard, and the index
  lists every key;
* the same bytes at --jobs 1 and 2;
* round trips: the bnb4 export read back as a base and exported to
  merged16 gives the reference's dequant(quant(W)) bit for bit, and
  exported to bnb4 again with the same options gives the same files
  (untouched 4-bit weights are copied, not quantized again);
* bnb4.report.json: each weight's relative RMS error against the merged
  float32 weights (tests/reference/merge_ref.py's merge) and, for adapted
  weights, the share of the adapters' change that survived, as numpy
  computes them from the reference's round trip on the rows the report
  samples (every 8th group of whole blocks, at most about 32 groups; absmax before double
  quantization, as documented).

    test_bnb4_export.py --smelt SMELT --workdir DIR
"""
import importlib

try:  # numpy lives in Debian's /usr/bin/python3 only
    importlib.import_module('numpy')
except ImportError:
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
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import bnb4_ref as ref  # noqa: E402
import gen_tiny_model as gen  # noqa: E402
import merge_ref  # noqa: E402

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: (label, model options, bnb4 options, merged16 DType)
CASES = [
    ("nf4-nested-bf16", dict(dtype="bf16"), {}, "bf16"),
    ("nf4-plain-bf16", dict(dtype="bf16"), {"DoubleQuant": "false"}, "bf16"),
    # double quantization reading and merging twice instead of caching the scan
    ("nf4-nested-nocache", dict(dtype="bf16"), {"ScanCache": "false", "_dest": "stream"}, "bf16"),
    # a destination that cannot seek (as an upload): the header cannot be
    # rewritten, so a scan pass learns the quant states' lengths first
    ("nf4-nested-stream", dict(dtype="bf16"), {"_dest": "stream"}, "bf16"),
    ("nf4-sharded-stream", dict(dtype="bf16"), {"MaxShardSize": "40KB", "_dest": "stream"}, "bf16"),
    ("fp4-nested-f16", dict(dtype="fp16"), {"QuantType": "fp4", "DType": "fp16"}, "fp16"),
    ("nf4-bs128-skip", dict(dtype="bf16", attention_bias=True),
     {"BlockSize": "128", "SkipModules": "down_proj;model.layers.0.self_attn.q_proj"}, "bf16"),
    # hidden 72: rows of 72 and 200 straddle the 64-blocks; odd sizes
    ("nf4-odd-rows", dict(dtype="bf16", hidden=72, intermediate=200, heads=4, kv_heads=2),
     {}, "bf16"),
    ("nf4-sharded", dict(dtype="bf16"), {"MaxShardSize": "40KB"}, "bf16"),
    # 1100-row projections: the report samples sparser than every 8th row
    ("nf4-long", dict(dtype="bf16", intermediate=1100), {}, "bf16"),
]


def read_raw(path):
    """{name: (dtype, shape, bytes)} and the names in file order."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[8 + n + b:8 + n + e])
    return out


def read_dir(d):
    """Every tensor of an export directory, and which file holds it."""
    tensors, where = {}, {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            t = read_raw(os.path.join(d, f))
            tensors.update(t)
            for k in t:
                where[k] = f
    return tensors, where


def to_f32(dtype, raw):
    if dtype == "BF16":
        return ref.bf16_bits_to_f32(np.frombuffer(raw, np.uint16))
    if dtype == "F16":
        return np.frombuffer(raw, np.float16).astype(np.float32)
    return np.frombuffer(raw, np.float32)


def is_skipped(module, skips):
    for key in skips:
        if module == key or module.startswith(key + ".") or module.endswith("." + key):
            return True
    return False


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr))
    return p.stdout


def export(args, work, label, model_opts, opts, dtype16, jobs):
    model = os.path.join(work, "model-" + label)
    adapter = os.path.join(work, "adapter-" + label)
    if not os.path.isdir(model):
        gen.generate_model(model, seed=11, **model_opts)
        gen.generate_adapter(adapter, model, rank=4, alpha=8)
    m16 = os.path.join(work, "out-%s-merged" % label)
    b4 = os.path.join(work, "out-%s-bnb4-j%d" % (label, jobs))
    for d in (m16, b4):
        shutil.rmtree(d, ignore_errors=True)
    opts = dict(opts)
    stream = opts.pop("_dest", None) == "stream"
    recipe = gen.write_recipe(os.path.join(work, label + ".smelt"), model, [adapter], None,
                              [("merged", "merged16", m16, {"DType": dtype16}),
                               ("bnb", "bnb4", b4, opts)])
    env = None
    if stream:
        use_stream_dest(recipe)
        env = dict(os.environ)
        env["SMELT_PLUGIN_PATH"] = os.pathsep.join(
            p for p in (env.get("SMELT_PLUGIN_PATH"), args.stream_dest) if p)
    run([args.smelt, "run", recipe, "--progress=none", "--jobs", str(jobs)], env)
    return m16, b4


def use_stream_dest(recipe):
    """Sends a recipe's exports to tests/plugins/stream-dest, a local
    destination whose files cannot seek (as an upload's)."""
    with open(recipe) as f:
        lines = f.read().splitlines()
    lines = ["Plugin=stream-dest" if ln == "Plugin=localfs" else ln
             for ln in lines if ln != "Overwrite=true"]
    with open(recipe, "w") as f:
        f.write("\n".join(lines) + "\n")


def expected(m16, opts, dtype16):
    """The reference's tensors for merged16's weights: {name: (dtype, shape, bytes)}."""
    qt = opts.get("QuantType", "nf4")
    bs = int(opts.get("BlockSize", "64"))
    nested = opts.get("DoubleQuant", "true") == "true"
    skips = ["lm_head"] + [s for s in opts.get("SkipModules", "").split(";") if s]
    dtype_name = "float16" if dtype16 == "fp16" else "bfloat16"
    merged, _ = read_dir(m16)
    out = {}
    n_quant = 0
    for name, (dt, shape, raw) in merged.items():
        module = name[:-len(".weight")] if name.endswith(".weight") else None
        if (module and len(shape) == 2 and module.split(".")[-1] in LINEAR
                and not is_skipped(module, skips)):
            w = to_f32(dt, raw).reshape(shape)
            for key, st, sh, data in ref.linear4bit_state(module, w, dtype_name, qt, bs, nested):
                out[key] = (st, list(sh), data)
            n_quant += 1
        else:
            out[name] = (dt, shape, raw)
    config = ref.quantization_config(qt, nested, dtype_name, skips)
    return out, config, n_quant


def check_config(m16, b4, qconfig):
    problems = []
    with open(os.path.join(m16, "config.json")) as f:
        want = json.load(f)
    with open(os.path.join(b4, "config.json")) as f:
        got = json.load(f)
    q = got.pop("quantization_config", None)
    if q != qconfig:
        problems.append("quantization_config %s, reference %s" % (q, qconfig))
    if got != want:
        problems.append("config.json differs from merged16's beyond quantization_config")
    return problems


def sampled(a, shape, bs):
    """The rows the report measures: every 8th group of whole blocks, or
    every (groups // 32)-th when that is sparser."""
    rows, cols = shape
    g = bs // np.gcd(cols, bs)
    stride = max(8, ((rows + g - 1) // g) // 32)
    keep = [r for r in range(rows) if (r // g) % stride == 0]
    groups = [np.arange(r * cols, (r + 1) * cols) for r in keep]
    return a[np.concatenate(groups)]


def round_trip(x, qt, bs, dtype_name):
    """x rounded to the 16-bit type, quantized and dequantized (float32 absmax)."""
    flat = x.astype(np.float32).ravel()
    if dtype_name == "bfloat16":
        r = ref.bf16_bits_to_f32(ref.f32_to_bf16_bits(flat))
    else:
        r = flat.astype(np.float16).astype(np.float32)
    packed, absmax = ref.quantize_4bit(r, qt, bs)
    return ref.dequantize(packed, absmax, qt, bs, len(r), "float32")


def check_report(args, work, label, b4, opts, dtype16):
    qt = opts.get("QuantType", "nf4")
    bs = int(opts.get("BlockSize", "64"))
    dtype_name = "float16" if dtype16 == "fp16" else "bfloat16"
    model = os.path.join(work, "model-" + label)
    merged = merge_ref.reference_merge(model, [(os.path.join(work, "adapter-" + label), 1.0)])
    _, base, _, _ = merge_ref.load_model_dir(model)
    with open(os.path.join(b4, "bnb4.report.json")) as f:
        report = json.load(f)
    problems = []
    for t in report["tensors"]:
        full = merged.tensors[t["name"]].numpy()
        shape = full.shape
        xq = sampled(round_trip(full.ravel(), qt, bs, dtype_name).astype(np.float64), shape, bs)
        x = sampled(full.astype(np.float64).ravel(), shape, bs)
        rel = np.sqrt(np.sum((x - xq) ** 2) / np.sum(x ** 2))
        if abs(t["rel_rms_error"] - rel) > 1e-3 * rel:
            problems.append("%s: rel_rms_error %.6g, numpy %.6g" % (t["name"], t["rel_rms_error"], rel))
        if "delta_surviving" in t:
            wfull = base[t["name"]].to(merge_ref.torch.float32).numpy().ravel()
            w = sampled(wfull.astype(np.float64), shape, bs)
            wq = sampled(round_trip(wfull, qt, bs, dtype_name).astype(np.float64), shape, bs)
            delta, diff = x - w, xq - wq
            surviving = max(0.0, 1 - np.sum((diff - delta) ** 2) / np.sum(delta ** 2))
            if abs(t["delta_surviving"] - surviving) > 1e-3:
                problems.append("%s: delta_surviving %.6g, numpy %.6g"
                                % (t["name"], t["delta_surviving"], surviving))
    if report["totals"]["modified_tensors"] == 0:
        problems.append("the report finds no adapted weight")
    return problems


def dequantized(b4_tensors, module, opts, dtype16):
    """The reference's dequantization of a weight's stored pieces."""
    qt = opts.get("QuantType", "nf4")
    bs = int(opts.get("BlockSize", "64"))
    w = module + ".weight"
    state = json.loads(b4_tensors[w + ".quant_state.bitsandbytes__" + qt][2])
    n = state["shape"][0] * state["shape"][1]
    packed = np.frombuffer(b4_tensors[w][2], np.uint8)
    out_dtype = state["dtype"]
    if "nested_offset" in state:
        codes = np.frombuffer(b4_tensors[w + ".absmax"][2], np.uint8)
        v = ref.dequantize(packed, codes, qt, bs, n, out_dtype,
                           nested_absmax=np.frombuffer(b4_tensors[w + ".nested_absmax"][2], np.float32),
                           offset=np.float32(state["nested_offset"]),
                           nested_map=np.frombuffer(b4_tensors[w + ".nested_quant_map"][2], np.float32))
    else:
        v = ref.dequantize(packed, np.frombuffer(b4_tensors[w + ".absmax"][2], np.float32),
                           qt, bs, n, out_dtype)
    return np.asarray(v).tobytes()


def check_round_trip(args, work, label, b4, opts, dtype16):
    problems = []
    got, _ = read_dir(b4)
    back = os.path.join(work, "out-%s-back16" % label)
    again = os.path.join(work, "out-%s-again" % label)
    for d in (back, again):
        shutil.rmtree(d, ignore_errors=True)
    run([args.smelt, "export", "--model", b4, "--format", "merged16", "--to", back,
         "--set", "DType=" + dtype16, "--progress=none"])
    m16, _ = read_dir(back)
    for name in m16:
        module = name[:-len(".weight")]
        if name + ".quant_state.bitsandbytes__" + opts.get("QuantType", "nf4") in got:
            if m16[name][2] != dequantized(got, module, opts, dtype16):
                problems.append("%s read back differs from the reference's dequantization" % name)
        elif m16[name] != got.get(name):
            problems.append("%s read back differs" % name)
    sets = [a for k, v in opts.items() if not k.startswith("_") for a in ("--set", "%s=%s" % (k, v))]
    run([args.smelt, "export", "--model", b4, "--format", "bnb4", "--to", again,
         "--progress=none"] + sets)
    if read_dir(again)[0] != got:
        problems.append("bnb4 of the bnb4 export differs from it")
    return problems[:6]


def check_case(args, work, label, model_opts, opts, dtype16):
    problems = []
    m16, b4 = export(args, work, label, model_opts, opts, dtype16, 2)
    want, qconfig, n_quant = expected(m16, opts, dtype16)
    got, where = read_dir(b4)
    if set(got) != set(want):
        problems.append("names: extra %s, missing %s" % (sorted(set(got) - set(want))[:4],
                                                        sorted(set(want) - set(got))[:4]))
    for name in sorted(set(got) & set(want)):
        if got[name] != want[name]:
            g, w = got[name], want[name]
            what = "dtype %s/%s shape %s/%s" % (g[0], w[0], g[1], w[1]) if g[:2] != w[:2] \
                else "bytes differ"
            problems.append("%s: %s" % (name, what))
            if len(problems) > 8:
                break
    problems += check_config(m16, b4, qconfig)
    # every piece of a weight in the shard of its codes
    for name in got:
        if ".weight." in name and name.split(".weight.")[0] + ".weight" in where:
            if where[name] != where[name.split(".weight.")[0] + ".weight"]:
                problems.append("%s is not in the shard of its weight" % name)
                break
    shards = [f for f in os.listdir(b4) if f.endswith(".safetensors")]
    if len(shards) > 1:
        with open(os.path.join(b4, "model.safetensors.index.json")) as f:
            index = json.load(f)
        if index["weight_map"] != where:
            problems.append("the index does not match the shards")
    problems += check_report(args, work, label, b4, opts, dtype16)
    problems += check_round_trip(args, work, label, b4, opts, dtype16)
    _, b4_j1 = export(args, work, label, model_opts, opts, dtype16, 1)
    if read_dir(b4_j1)[0] != got:
        problems.append("--jobs 1 and --jobs 2 differ")
    return problems, n_quant, len(shards)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--stream-dest", required=True,
                    help="folder of the stream-dest fixture plugin")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    failures = 0
    for label, model_opts, opts, dtype16 in CASES:
        problems, n_quant, n_shards = check_case(args, args.workdir, label, model_opts, opts,
                                                 dtype16)
        if problems or n_quant == 0:
            failures += 1
            print("FAIL %s: %s" % (label, "; ".join(problems) or "nothing quantized"))
        else:
            print("ok   %s: %d weights in 4 bits equal the reference, %d shard(s)"
                  % (label, n_quant, n_shards))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

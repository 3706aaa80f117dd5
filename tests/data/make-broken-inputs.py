#!/usr/bin/env python3
"""Generate smelt's corpus of broken inputs.

Usage:
    /usr/bin/python3 tests/data/make-broken-inputs.py OUT_DIR [--list] [--case NAME]...

Writes one directory per case under OUT_DIR:

    OUT_DIR/CASE/recipe.smelt     the recipe to run (relative paths)
    OUT_DIR/CASE/model/           the base model (tiny llama, bf16, 2 shards + index)
    OUT_DIR/CASE/adapter/         a PEFT LoRA adapter for it
    OUT_DIR/CASE/expect.json      what smelt must do:
        {"exit": 0|1|2,                       the exit code of `smelt run`
         "contains": ["..."],                 substrings the error line must all contain
         "contains_any": [["a", "b"], ...],   for each group, at least one must occur
         "destination": "out/merged",         the localfs Path (relative to CASE)
         "at_plan": true|false,               whether --dry-run must see it as well
         "description": "..."}

In every case but "control-valid" (which must succeed) exactly one thing is
wrong (a shard, the index, a config file, the adapter, the recipe, the
destination, or the numbers); everything else is the same valid model,
adapter and recipe.  The output is deterministic: the
same OUT_DIR content for every run.  Nothing is downloaded; only numpy and
tests/gen/gen_tiny_model.py are needed.

The model and adapter are written once into OUT_DIR/_pristine and copied for
each case; `--case` limits generation to the named cases.  The small broken
files of tests/data/broken/*.safetensors (make-broken-safetensors.py) are
reused: each gives a case "shared-NAME-as-model" (it is the model's only
model.safetensors) and "shared-NAME-as-adapter" (it is the adapter's
adapter_model.safetensors).
"""

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))

import gen_tiny_model as gen  # noqa: E402

SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_KEY = "base_model.model.%s.%s"


# ---------------------------------------------------------------------------
# raw safetensors surgery (keeps everything but the one thing we break)
# ---------------------------------------------------------------------------

def read_raw(path):
    """(header dict in file order including __metadata__, data bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, blob[8 + n:]


def header_bytes(header):
    """Compact JSON padded with spaces to a multiple of 8 (as the reference)."""
    if isinstance(header, (bytes, bytearray)):
        raw = bytes(header)
    elif isinstance(header, str):
        raw = header.encode("utf-8")
    else:
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * ((8 - len(raw) % 8) % 8)


def write_raw(path, header, data):
    """Write a safetensors file from a header (dict, str or bytes) and data."""
    raw = header_bytes(header)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(data)


def tensor_names(header):
    """Tensor names of a header, in data order."""
    names = [k for k in header if k != "__metadata__"]
    return sorted(names, key=lambda k: header[k]["data_offsets"][0])


def shard_of(model_dir, name):
    """The shard file (basename) the index assigns `name` to."""
    with open(os.path.join(model_dir, INDEX)) as f:
        return json.load(f)["weight_map"][name]


def data_start(path):
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def set_bf16_value(path, name, flat_index, value):
    """Overwrite one element of a BF16 tensor with `value` (RNE-rounded)."""
    header, data = read_raw(path)
    info = header[name]
    assert info["dtype"] == "BF16", info
    begin = info["data_offsets"][0] + 2 * flat_index
    bits = int(gen.f32_to_bf16_bits(np.array([value], dtype=np.float32))[0])
    data = data[:begin] + struct.pack("<H", bits) + data[begin + 2:]
    write_raw(path, header, data)


def replace_tensor(path, name, arr, dtype):
    """Replace tensor `name` of a file by a storage array (any shape), keeping
    every other tensor byte-identical; the file is re-laid out canonically."""
    header, data = read_raw(path)
    entries = []
    for k in tensor_names(header):
        info = header[k]
        if k == name:
            entries.append(gen.Entry(k, dtype, arr.shape, np.ascontiguousarray(arr)))
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype=np.uint8)
        entries.append(gen.Entry(k, info["dtype"], info["shape"], _bytes_producer(raw)))
    gen.write_safetensors(path, entries, header.get("__metadata__"))


def _bytes_producer(raw):
    return lambda: iter([raw])


# ---------------------------------------------------------------------------
# the pristine inputs and the recipe
# ---------------------------------------------------------------------------

def make_pristine(root):
    """A tiny bf16 llama with 2 shards (+ index) and an f32 LoRA adapter."""
    model = os.path.join(root, "model")
    adapter = os.path.join(root, "adapter")
    gen.generate_model(model, arch="llama", dtype="bf16", layers=2, hidden=64,
                       intermediate=160, heads=4, kv_heads=2, vocab=384, shards=2, seed=0)
    gen.generate_adapter(adapter, model, rank=8, alpha=16, seed=1,
                         base_name="smelt-tests/broken-inputs")
    return model, adapter


RECIPE_KEYS = {
    "source": [("Model", "model"), ("Adapters", "adapter")],
    "destination": [("Plugin", "localfs"), ("Path", "out/merged"), ("Overwrite", "false")],
    "export": [("Format", "merged16"), ("Destination", "out"), ("DType", "bf16"),
               ("MaxShardSize", "5GB")],
}


def recipe_text(source=None, destination=None, export=None):
    """The valid recipe, with per-group key lists replaced when given.

    Each list is [(key, value)]; the default lists are RECIPE_KEYS.
    """
    groups = [("Recipe", [("Name", "broken-input")]),
              ("Source", source if source is not None else RECIPE_KEYS["source"]),
              ("Destination out", destination if destination is not None
               else RECIPE_KEYS["destination"]),
              ("Export merged", export if export is not None else RECIPE_KEYS["export"])]
    lines = []
    for group, keys in groups:
        lines.append("[%s]" % group)
        lines += ["%s=%s" % kv for kv in keys]
        lines.append("")
    return "\n".join(lines)


def with_key(group, key, value):
    """The default key list of `group` with `key` set to `value` (appended if
    new; removed if value is None)."""
    out, seen = [], False
    for k, v in RECIPE_KEYS[group]:
        if k == key:
            seen = True
            if value is not None:
                out.append((k, value))
        else:
            out.append((k, v))
    if not seen and value is not None:
        out.append((key, value))
    return out


def renamed_key(group, old, new):
    """The default key list of `group` with key `old` spelled `new`."""
    return [(new if k == old else k, v) for k, v in RECIPE_KEYS[group]]


# ---------------------------------------------------------------------------
# the cases: each takes the case directory (a copy of the pristine inputs
# and the default recipe) and returns the expectation
# ---------------------------------------------------------------------------

CASES = []


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


def expect(exit_code, contains=(), contains_any=(), description="",
           destination="out/merged", at_plan=True):
    """at_plan: the problem shows before any tensor data is read, so
    `smelt run --dry-run` must report it too (False for bad values in the
    data, which only the real run can see)."""
    return {"exit": exit_code, "contains": list(contains),
            "contains_any": [list(g) for g in contains_any], "description": description,
            "destination": destination, "at_plan": at_plan}


def write_recipe(d, **groups):
    with open(os.path.join(d, "recipe.smelt"), "w") as f:
        f.write(recipe_text(**groups))


@case("control-valid")
def _(d):
    """Not broken: the pristine inputs must export (exit 0).  Guards the
    corpus itself: every other case differs from this one in one thing."""
    return expect(0, description="nothing is wrong; the export must succeed")


# ---- safetensors shards -------------------------------------------------

@case("shard-truncated-in-data")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    size = os.path.getsize(path)
    start = data_start(path)
    with open(path, "r+b") as f:
        f.truncate(start + (size - start) // 2)
    return expect(1, [SHARD2], description="second shard cut in the middle of its data")


@case("shard-truncated-in-header")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    start = data_start(path)
    with open(path, "r+b") as f:
        f.truncate(start // 2)
    return expect(1, [SHARD1], description="first shard cut in the middle of its JSON header")


@case("shard-header-length-past-eof")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", size + 4096))
    return expect(1, [SHARD2], description="header length field larger than the file")


@case("shard-overlapping-spans")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    header, data = read_raw(path)
    names = tensor_names(header)
    # the second tensor starts 2 bytes early (inside the first), keeping its size
    second = names[1]
    b, e = header[second]["data_offsets"]
    header[second]["data_offsets"] = [b - 2, e - 2]
    write_raw(path, header, data)
    return expect(1, [SHARD2], contains_any=[[names[0], second]],
                  description="two tensors' data_offsets overlap by 2 bytes")


@case("shard-bad-dtype")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    header, data = read_raw(path)
    name = "model.norm.weight"
    header[name]["dtype"] = "BF17"
    write_raw(path, header, data)
    return expect(1, [SHARD2, "BF17"], description="a tensor with dtype \"BF17\"")


@case("shard-shape-span-mismatch")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    header, data = read_raw(path)
    name = "model.layers.1.mlp.up_proj.weight"
    header[name]["shape"] = [161, 64]     # span holds 160 x 64 bf16
    write_raw(path, header, data)
    return expect(1, [SHARD2, name], description="shape says 161x64, span holds 160x64")


@case("shard-deep-json-header")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    header, data = read_raw(path)
    text = json.dumps(header, separators=(",", ":"))
    depth = 200000
    deep = '"__metadata__":{"format":"pt","x":' + "[" * depth + "]" * depth + "}"
    text = text.replace('"__metadata__":{"format":"pt"}', deep, 1)
    assert "[[[" in text
    write_raw(path, text, data)
    return expect(1, [SHARD1], description="header JSON nested 200000 levels deep")


@case("shard-duplicate-tensor-name")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    header, data = read_raw(path)
    name = "model.norm.weight"
    info = header[name]
    b, e = info["data_offsets"]
    end = len(data)
    # a second entry with the same name, for an extra span appended to the data
    text = json.dumps(header, separators=(",", ":"))
    dup = json.dumps({"dtype": info["dtype"], "shape": info["shape"],
                      "data_offsets": [end, end + (e - b)]}, separators=(",", ":"))
    assert text.endswith("}")
    text = text[:-1] + ',"%s":%s}' % (name, dup)
    write_raw(path, text, data + data[b:e])
    return expect(1, [SHARD2, name], description="the same tensor name twice in a header")


@case("shard-shorter-than-8-bytes")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    with open(path, "r+b") as f:
        f.truncate(5)
    return expect(1, [SHARD2], description="a 5-byte shard (no room for the length)")


@case("shard-shape-overflows-64-bits")
def _(d):
    path = os.path.join(d, "model", SHARD2)
    header, data = read_raw(path)
    name = "model.norm.weight"        # 64 BF16 = 128 bytes
    # (2**63 + 64) * 2 bytes wraps around to 128 in 64-bit arithmetic
    header[name]["shape"] = [2 ** 63 + 64]
    write_raw(path, header, data)
    return expect(1, [SHARD2, name],
                  description="shape whose byte size wraps to the span size modulo 2^64")


@case("shard-trailing-bytes")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    with open(path, "ab") as f:
        f.write(b"\0" * 64)
    return expect(1, [SHARD1], description="64 bytes after the last tensor's data")


@case("shard-hole-between-tensors")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    header, data = read_raw(path)
    names = tensor_names(header)
    # every tensor after the first moves 16 bytes further; 16 bytes of padding
    first_end = header[names[0]]["data_offsets"][1]
    for k in names[1:]:
        b, e = header[k]["data_offsets"]
        header[k]["data_offsets"] = [b + 16, e + 16]
    write_raw(path, header, data[:first_end] + b"\0" * 16 + data[first_end:])
    return expect(1, [SHARD1], description="16 unindexed bytes between two tensors")


@case("shard-header-not-utf8")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    header, data = read_raw(path)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw = raw.replace(b'"pt"', b'"p\xff"', 1)
    assert b"\xff" in raw
    write_raw(path, raw, data)
    return expect(1, [SHARD1], description="a 0xFF byte inside the header JSON")


@case("shard-metadata-not-string")
def _(d):
    path = os.path.join(d, "model", SHARD1)
    header, data = read_raw(path)
    header["__metadata__"] = {"format": "pt", "step": 1000}
    write_raw(path, header, data)
    return expect(1, [SHARD1], description="__metadata__ value is a number, not a string")


# ---- model directory ----------------------------------------------------

@case("config-missing")
def _(d):
    os.unlink(os.path.join(d, "model", "config.json"))
    return expect(1, ["config.json"], description="the model has no config.json")


@case("index-lists-missing-tensor")
def _(d):
    model = os.path.join(d, "model")
    name = "model.layers.1.mlp.gate_proj.weight"
    path = os.path.join(model, shard_of(model, name))
    header, data = read_raw(path)
    b, e = header[name]["data_offsets"]
    # remove the tensor (and its bytes) from its shard; the index still lists it
    del header[name]
    for k in tensor_names(header):
        kb, ke = header[k]["data_offsets"]
        if kb >= e:
            header[k]["data_offsets"] = [kb - (e - b), ke - (e - b)]
    write_raw(path, header, data[:b] + data[e:])
    return expect(1, [name], description="the index lists a tensor its shard does not have")


@case("index-names-missing-shard")
def _(d):
    model = os.path.join(d, "model")
    os.rename(os.path.join(model, SHARD2), os.path.join(model, "moved-away.bin"))
    return expect(1, [SHARD2], description="the index points to a shard file that does not exist")


@case("config-not-json")
def _(d):
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        f.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,,}\n')
    return expect(1, ["config.json"], description="config.json is not valid JSON")


# ---- adapter ------------------------------------------------------------

def adapter_path(d):
    return os.path.join(d, "adapter", ADAPTER_FILE)


def edit_adapter_config(d, **changes):
    path = os.path.join(d, "adapter", "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))


@case("adapter-lora-b-wrong-out-dim")
def _(d):
    key = ADAPTER_KEY % ("model.layers.1.self_attn.v_proj", "lora_B.weight")
    rng = np.random.Generator(np.random.PCG64(5))
    # v_proj is [32, 64]: B must be [32, 8]; give it [48, 8]
    replace_tensor(adapter_path(d), key,
                   (0.05 * rng.standard_normal((48, 8))).astype(np.float32), "F32")
    return expect(1, contains_any=[[key, "model.layers.1.self_attn.v_proj"]],
                  description="lora_B has 48 rows where the base weight has 32")


@case("adapter-rank-mismatch")
def _(d):
    key = ADAPTER_KEY % ("model.layers.0.mlp.up_proj", "lora_A.weight")
    rng = np.random.Generator(np.random.PCG64(6))
    # lora_B is [160, 8]; lora_A becomes [4, 64]
    replace_tensor(adapter_path(d), key,
                   (0.05 * rng.standard_normal((4, 64))).astype(np.float32), "F32")
    return expect(1, contains_any=[[key, "model.layers.0.mlp.up_proj"]],
                  description="lora_A has rank 4, lora_B rank 8")


@case("adapter-module-not-in-base")
def _(d):
    path = adapter_path(d)
    header, data = read_raw(path)
    rng = np.random.Generator(np.random.PCG64(7))
    extra = {
        ADAPTER_KEY % ("model.layers.0.self_attn.qkv_proj", "lora_A.weight"):
            (0.05 * rng.standard_normal((8, 64))).astype(np.float32),
        ADAPTER_KEY % ("model.layers.0.self_attn.qkv_proj", "lora_B.weight"):
            (0.05 * rng.standard_normal((128, 8))).astype(np.float32),
    }
    entries = []
    for k in tensor_names(header):
        b, e = header[k]["data_offsets"]
        entries.append(gen.Entry(k, header[k]["dtype"], header[k]["shape"],
                                 _bytes_producer(np.frombuffer(data[b:e], dtype=np.uint8))))
    for k, arr in extra.items():
        entries.append(gen.entry_from_array(k, "F32", arr))
    gen.write_safetensors(path, entries, header.get("__metadata__"))
    return expect(1, ["model.layers.0.self_attn.qkv_proj"],
                  description="LoRA pair for a module (qkv_proj) the base does not have")


@case("adapter-resized-embedding-without-lm-head")
def _(d):
    # the base is untied (it has lm_head.weight); the adapter brings an
    # embedding resized to 400 rows but no lm_head of 400 rows to match
    path = adapter_path(d)
    header, data = read_raw(path)
    rng = np.random.Generator(np.random.PCG64(8))
    entries = []
    for k in tensor_names(header):
        b, e = header[k]["data_offsets"]
        entries.append(gen.Entry(k, header[k]["dtype"], header[k]["shape"],
                                 _bytes_producer(np.frombuffer(data[b:e], dtype=np.uint8))))
    entries.append(gen.entry_from_array("base_model.model.model.embed_tokens.weight", "F32",
                                        (0.02 * rng.standard_normal((400, 64))).astype(np.float32)))
    gen.write_safetensors(path, entries, header.get("__metadata__"))
    return expect(1, ["lm_head.weight", "400"],
                  description="resized embedding (400 rows) with the base's 384-row lm_head")


@case("adapter-peft-type-adalora")
def _(d):
    edit_adapter_config(d, peft_type="ADALORA")
    return expect(1, ["ADALORA"], description="adapter_config.json peft_type ADALORA")


@case("adapter-layer-replication")
def _(d):
    edit_adapter_config(d, layer_replication=[[0, 2], [1, 2]])
    return expect(1, ["layer_replication"], description="adapter_config.json layer_replication set")


@case("adapter-init-pissa")
def _(d):
    edit_adapter_config(d, init_lora_weights="pissa")
    return expect(1, ["pissa"], description="adapter_config.json init_lora_weights \"pissa\"")


@case("adapter-config-not-json")
def _(d):
    with open(os.path.join(d, "adapter", "adapter_config.json"), "w") as f:
        f.write('{"peft_type": "LORA", "r": 8, "lora_alpha": 16\n')
    return expect(1, ["adapter_config.json"], description="adapter_config.json is cut short")


@case("adapter-weights-truncated")
def _(d):
    path = adapter_path(d)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 1000)
    return expect(1, [ADAPTER_FILE],
                  description="adapter_model.safetensors lost its last 1000 bytes")


@case("adapter-no-tensors")
def _(d):
    # adapter_config.json targets seven modules, adapter_model.safetensors is
    # a valid file with no tensor at all: merging it would be a silent no-op
    write_raw(adapter_path(d), {"__metadata__": {"format": "pt"}}, b"")
    return expect(1, [ADAPTER_FILE], description="adapter_model.safetensors holds no tensors")


@case("second-adapter-broken")
def _(d):
    # two adapters; the second one's lora_B for k_proj has the wrong out dim
    second = os.path.join(d, "adapter2")
    shutil.copytree(os.path.join(d, "adapter"), second)
    key = ADAPTER_KEY % ("model.layers.0.self_attn.k_proj", "lora_B.weight")
    rng = np.random.Generator(np.random.PCG64(11))
    replace_tensor(os.path.join(second, ADAPTER_FILE), key,
                   (0.05 * rng.standard_normal((64, 8))).astype(np.float32), "F32")
    write_recipe(d, source=[("Model", "model"), ("Adapters", "adapter;adapter2"),
                            ("AdapterWeights", "1.0;0.5")])
    return expect(1, ["adapter2", "model.layers.0.self_attn.k_proj"],
                  description="Adapters=adapter;adapter2, adapter2's k_proj lora_B is "
                  "[64, 8] where the base needs [32, 8]")


# ---- recipe -------------------------------------------------------------

@case("recipe-unknown-key")
def _(d):
    write_recipe(d, export=renamed_key("export", "MaxShardSize", "MaxShardSise"))
    return expect(2, ["MaxShardSise", "MaxShardSize", "recipe.smelt"],
                  contains_any=[["did you mean"]],
                  description="misspelt key MaxShardSise in [Export merged]")


@case("recipe-bad-enum-value")
def _(d):
    write_recipe(d, export=with_key("export", "DType", "fp8"))
    return expect(2, ["DType", "fp8"], description="DType=fp8")


@case("recipe-unknown-format")
def _(d):
    write_recipe(d, export=with_key("export", "Format", "merged17"))
    return expect(2, ["merged17"], description="Format=merged17 (no such format)")


@case("recipe-missing-model")
def _(d):
    write_recipe(d, source=with_key("source", "Model", None))
    return expect(2, ["Model"], description="[Source] without Model=")


@case("recipe-adapter-weights-count")
def _(d):
    write_recipe(d, source=with_key("source", "AdapterWeights", "1.0;0.5"))
    return expect(2, ["AdapterWeights"],
                  description="two AdapterWeights for one adapter")


@case("recipe-destination-without-path")
def _(d):
    write_recipe(d, destination=with_key("destination", "Path", None))
    return expect(2, ["Path"], description="[Destination out] without Path=")


@case("recipe-bad-shard-size")
def _(d):
    write_recipe(d, export=with_key("export", "MaxShardSize", "5XB"))
    return expect(2, ["MaxShardSize", "5XB"], description="MaxShardSize=5XB")


@case("recipe-two-exports-one-destination")
def _(d):
    # both exports write config.json, model.safetensors, ... into "out"
    text = recipe_text()
    text += "\n".join(["[Export merged-fp16]", "Format=merged16", "Destination=out",
                       "DType=fp16", ""])
    with open(os.path.join(d, "recipe.smelt"), "w") as f:
        f.write(text)
    return expect(2, contains_any=[["destination “out”", "[Destination out]",
                                    "destination out", "\"out\"", "'out'"]],
                  description="two merged16 exports write the same files into one "
                  "destination: the recipe is invalid")


# ---- destination --------------------------------------------------------

@case("destination-not-empty")
def _(d):
    dest = os.path.join(d, "out", "merged")
    os.makedirs(os.path.join(dest, "sub"))
    # files named like what the export writes, plus unrelated ones
    files = {"config.json": '{"precious": true}\n',
             "model.safetensors": "not really a model, but mine\n",
             "model.safetensors.partial": "a stale partial that is not smelt's\n",
             "notes.txt": "do not delete\n",
             os.path.join("sub", "keep.bin"): "x" * 100}
    for rel, text in files.items():
        with open(os.path.join(dest, rel), "w") as f:
            f.write(text)
    return expect(1, ["out/merged"], contains_any=[["empty", "Overwrite"]],
                  description="Path is a non-empty directory and Overwrite=false")


@case("destination-is-a-file")
def _(d):
    os.makedirs(os.path.join(d, "out"))
    with open(os.path.join(d, "out", "merged"), "w") as f:
        f.write("a file where the destination directory should be\n")
    return expect(1, ["out/merged"], description="Path names an existing regular file")


@case("destination-overwrite-failed-export")
def _(d):
    # Overwrite=true, but the export fails (fp16 overflow in lm_head):
    # nothing is committed, so the old files must survive untouched
    dest = os.path.join(d, "out", "merged")
    os.makedirs(dest)
    for rel, text in {"config.json": '{"old": true}\n',
                      "model.safetensors": "the previous export\n",
                      "notes.txt": "do not delete\n"}.items():
        with open(os.path.join(dest, rel), "w") as f:
            f.write(text)
    model = os.path.join(d, "model")
    name = "lm_head.weight"
    set_bf16_value(os.path.join(model, shard_of(model, name)), name, 64 * 300 + 9, 262144.0)
    write_recipe(d, destination=with_key("destination", "Overwrite", "true"),
                 export=with_key("export", "DType", "fp16"))
    return expect(1, [name], description="Overwrite=true over old files, export fails "
                  "in a late tensor: the old files stay as they were", at_plan=False)


# ---- numbers ------------------------------------------------------------

@case("fp16-overflow-merged-weight")
def _(d):
    model = os.path.join(d, "model")
    name = "model.layers.1.self_attn.o_proj.weight"
    set_bf16_value(os.path.join(model, shard_of(model, name)), name, 64 * 10 + 3, 131072.0)
    write_recipe(d, export=with_key("export", "DType", "fp16"))
    return expect(1, [name], description="DType=fp16, a LoRA-merged bf16 weight holds 131072",
                  at_plan=False)


@case("fp16-overflow-plain-weight")
def _(d):
    model = os.path.join(d, "model")
    name = "model.layers.0.post_attention_layernorm.weight"
    set_bf16_value(os.path.join(model, shard_of(model, name)), name, 17, 70000.0)
    write_recipe(d, export=with_key("export", "DType", "fp16"))
    return expect(1, [name], description="DType=fp16, an unmerged bf16 weight holds 70000",
                  at_plan=False)


def set_f32_value(path, name, flat_index, value):
    """Overwrite one element of an F32 tensor."""
    header, data = read_raw(path)
    info = header[name]
    assert info["dtype"] == "F32", info
    begin = info["data_offsets"][0] + 4 * flat_index
    data = data[:begin] + struct.pack("<f", value) + data[begin + 4:]
    write_raw(path, header, data)


@case("bf16-overflow-f32-base")
def _(d):
    # the same model stored as float32 (same shapes, the adapter still fits);
    # 3.4e38 is a finite float32 but above bfloat16's largest, 3.3895e38
    model = os.path.join(d, "model")
    shutil.rmtree(model)
    gen.generate_model(model, arch="llama", dtype="f32", layers=2, hidden=64,
                       intermediate=160, heads=4, kv_heads=2, vocab=384, shards=2, seed=0)
    name = "model.layers.1.post_attention_layernorm.weight"
    set_f32_value(os.path.join(model, shard_of(model, name)), name, 33, 3.4e38)
    return expect(1, [name], description="DType=bf16 from a float32 base holding 3.4e38 "
                  "(rounds to inf in bf16)", at_plan=False)


@case("lora-export-bf16-overflow")
def _(d):
    key = ADAPTER_KEY % ("model.layers.1.mlp.gate_proj", "lora_B.weight")
    rng = np.random.Generator(np.random.PCG64(10))
    b = (0.05 * rng.standard_normal((160, 8))).astype(np.float32)
    b[100, 4] = -3.4e38
    replace_tensor(adapter_path(d), key, b, "F32")
    write_recipe(d, destination=with_key("destination", "Path", "out/lora"),
                 export=[("Format", "safetensors-lora"), ("Destination", "out"),
                         ("DType", "bf16")])
    return expect(1, [key], description="safetensors-lora DType=bf16, f32 lora_B holds "
                  "-3.4e38 (rounds to -inf in bf16)", destination="out/lora",
                  at_plan=False)


@case("lora-delta-not-finite")
def _(d):
    module = "model.layers.1.mlp.down_proj"
    a_key = ADAPTER_KEY % (module, "lora_A.weight")
    b_key = ADAPTER_KEY % (module, "lora_B.weight")
    # down_proj is [64, 160]: B [64, 8] with one row of 3e38, A all ones:
    # (B @ A) * 16/8 overflows float32 in that row
    b = np.zeros((64, 8), dtype=np.float32)
    b[5, :] = 3e38
    replace_tensor(adapter_path(d), b_key, b, "F32")
    replace_tensor(adapter_path(d), a_key, np.ones((8, 160), dtype=np.float32), "F32")
    return expect(1, [module], description="B holds 3e38: the merged delta is +inf",
                  at_plan=False)


@case("lora-delta-nan")
def _(d):
    module = "model.layers.0.self_attn.k_proj"
    b_key = ADAPTER_KEY % (module, "lora_B.weight")
    rng = np.random.Generator(np.random.PCG64(8))
    b = (0.05 * rng.standard_normal((32, 8))).astype(np.float32)
    b[3, 2] = np.nan
    replace_tensor(adapter_path(d), b_key, b, "F32")
    return expect(1, [module], description="lora_B holds a NaN: a merged row is NaN",
                  at_plan=False)


@case("lora-export-fp16-overflow")
def _(d):
    key = ADAPTER_KEY % ("model.layers.0.self_attn.q_proj", "lora_A.weight")
    rng = np.random.Generator(np.random.PCG64(9))
    a = (0.05 * rng.standard_normal((8, 64))).astype(np.float32)
    a[1, 7] = 1.0e5
    replace_tensor(adapter_path(d), key, a, "F32")
    write_recipe(d, destination=with_key("destination", "Path", "out/lora"),
                 export=[("Format", "safetensors-lora"), ("Destination", "out"),
                         ("DType", "fp16")])
    return expect(1, [key], description="safetensors-lora DType=fp16, lora_A holds 1e5",
                  destination="out/lora", at_plan=False)


@case("two-exports-second-fails")
def _(d):
    model = os.path.join(d, "model")
    name = "model.layers.1.mlp.up_proj.weight"
    set_bf16_value(os.path.join(model, shard_of(model, name)), name, 64 * 150 + 1, -98304.0)
    text = recipe_text(export=with_key("export", "DType", "fp16"))
    text += "\n".join(["[Destination lora-out]", "Plugin=localfs", "Path=out/lora",
                       "Overwrite=false", "", "[Export lora]", "Format=safetensors-lora",
                       "Destination=lora-out", ""])
    with open(os.path.join(d, "recipe.smelt"), "w") as f:
        f.write(text)
    return expect(1, [name], description="a valid safetensors-lora export next to a merged16 "
                  "export that overflows fp16: neither may be kept", at_plan=False)


# ---- the shared corpus of broken safetensors files ----------------------
# tests/data/broken/*.safetensors (written by make-broken-safetensors.py):
# each one becomes the single model.safetensors of the model, and the
# adapter's adapter_model.safetensors, in two cases of its own.

SHARED_BROKEN = os.path.join(HERE, "broken")


def _shared_cases():
    if not os.path.isdir(SHARED_BROKEN):
        return
    for fn in sorted(os.listdir(SHARED_BROKEN)):
        if not fn.endswith(".safetensors"):
            continue
        src = os.path.join(SHARED_BROKEN, fn)
        stem = fn[:-len(".safetensors")]

        def as_model(d, src=src, fn=fn):
            model = os.path.join(d, "model")
            for old in (SHARD1, SHARD2, INDEX):
                os.unlink(os.path.join(model, old))
            shutil.copyfile(src, os.path.join(model, "model.safetensors"))
            return expect(1, ["model.safetensors"],
                          description="the model's only file is tests/data/broken/" + fn)

        def as_adapter(d, src=src, fn=fn):
            shutil.copyfile(src, adapter_path(d))
            return expect(1, [ADAPTER_FILE],
                          description="adapter_model.safetensors is tests/data/broken/" + fn)

        case("shared-%s-as-model" % stem)(as_model)
        case("shared-%s-as-adapter" % stem)(as_adapter)


_shared_cases()


# ---------------------------------------------------------------------------

def generate(out, only=None):
    pristine = os.path.join(out, "_pristine")
    if os.path.exists(pristine):
        shutil.rmtree(pristine)
    model, adapter = make_pristine(pristine)
    names = []
    for name, fn in CASES:
        if only and name not in only:
            continue
        d = os.path.join(out, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        shutil.copytree(model, os.path.join(d, "model"))
        shutil.copytree(adapter, os.path.join(d, "adapter"))
        write_recipe(d)
        exp = fn(d)
        exp.setdefault("destination", "out/merged")
        with open(os.path.join(d, "expect.json"), "w") as f:
            f.write(json.dumps(exp, indent=2, sort_keys=True) + "\n")
        names.append(name)
    shutil.rmtree(pristine)
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    p.add_argument("--case", action="append", default=[], help="generate only this case")
    args = p.parse_args(argv)
    if args.list:
        for name, _ in CASES:
            print(name)
        return 0
    if not args.out:
        p.error("OUT_DIR is required")
    unknown = set(args.case) - {n for n, _ in CASES}
    if unknown:
        p.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    os.makedirs(args.out, exist_ok=True)
    for name in generate(args.out, set(args.case) or None):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

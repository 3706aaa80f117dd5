#!/usr/bin/env python3
"""Benchmark peer: what PEFT's merge_and_unload() + save_pretrained() do, in
plain torch (no transformers/peft/safetensors packages needed).

    /usr/bin/python3 tests/bench/peer_torch_merge.py --model DIR --adapter DIR --out DIR
        [--max-shard-size 5GB] [--threads 2]

1. Load the whole base into torch tensors (the file bytes are read into memory,
   like safetensors.torch.load_file).
2. Load the adapter; for every targeted module
   W = (W.float() + (B.float() @ A.float()) * s).to(W.dtype)   (fp32 merge, 16-bit out)
3. Write sharded safetensors like save_pretrained (state-dict order, greedy
   5 GB shards, save_file layout per shard, index json) + config.json and the
   tokenizer/generation files.

This is a lower bound for the real PEFT pipeline: no model instantiation, no
extra copy in save_file's _tobytes.  Only Linear LoRA (no DoRA, no embeddings).
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

import argparse
import json
import math
import os
import re
import shutil
import struct
import sys

import torch

DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
DT_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
ORDER = ["BF16", "F16", "F32"]  # Rust enum order (ascending) of what we write


def load_file(path):
    """All tensors of a safetensors file, in header order, over one in-memory copy."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        buf = bytearray(f.read())
    header.pop("__metadata__", None)
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dtype, size = DT[info["dtype"]]
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(buf, dtype=dtype, count=(e - b) // size,
                                     offset=b).reshape(info["shape"])
    return out


def load_model(model_dir):
    """(config, state dict in the checkpoint's index/file order)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    sd = {}
    for fn in files:
        sd.update(load_file(os.path.join(model_dir, fn)))
    return config, sd


def merge(sd, adapter_dir):
    """PEFT Linear.merge for every lora_A/lora_B pair (in place)."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    ad = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    n = 0
    for key, A in ad.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        B = ad[key.replace(".lora_A.", ".lora_B.")]
        r = A.shape[0]
        alpha = cfg["lora_alpha"]
        for k, v in (cfg.get("alpha_pattern") or {}).items():
            if re.match(r"(.*\.)?(%s)$" % k, module):
                alpha = v
                break
        s = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        W = sd[module + ".weight"]
        delta = (B.float() @ A.float()) * s
        if cfg.get("fan_in_fan_out"):
            delta = delta.t()
        W.copy_((W.float() + delta).to(W.dtype))
        n += 1
    return n


def parse_size(text):
    """huggingface_hub parse_size_to_int (decimal units)."""
    units = {"TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3}
    return int(float(text[:-2]) * units[text[-2:].upper()])


def save_file(tensors, path):
    """safetensors.torch.save_file layout: dtype desc then name, compact header
    with __metadata__ first, padded to 8."""
    items = sorted(tensors.items(), key=lambda kv: (-ORDER.index(DT_NAME[kv[1].dtype]),
                                                    kv[0].encode()))
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, t in items:
        nb = t.numel() * t.element_size()
        header[name] = {"dtype": DT_NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + nb]}
        off += nb
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _, t in items:
            t = t.contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            f.write(memoryview(t.numpy()).cast("B"))


def save_pretrained(sd, config, src_dir, out, max_shard_size):
    """Greedy state-dict-order sharding (huggingface_hub) + index + config."""
    os.makedirs(out, exist_ok=True)
    limit = parse_size(max_shard_size)
    shards, cur, size = [], {}, 0
    for name, t in sd.items():
        nb = t.numel() * t.element_size()
        if cur and size + nb > limit:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = t
        size += nb
    shards.append(cur)
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out, "model.safetensors"))
    else:
        wm = {}
        for i, sh in enumerate(shards):
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
            save_file(sh, os.path.join(out, fn))
            wm.update({k: fn for k in sh})
        total = sum(t.numel() * t.element_size() for t in sd.values())
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": wm},
                               indent=2, sort_keys=True) + "\n")
    config = dict(config)
    config["torch_dtype"] = "bfloat16"
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for fn in ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json"):
        if os.path.exists(os.path.join(src_dir, fn)):
            shutil.copyfile(os.path.join(src_dir, fn), os.path.join(out, fn))


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-shard-size", default="5GB")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config, sd = load_model(args.model)
    n = merge(sd, args.adapter)
    if n == 0:
        sys.exit("no LoRA module merged")
    save_pretrained(sd, config, args.model, args.out, args.max_shard_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check smelt's safetensors-lora export against the input adapter, read with
the independent reader of tests/reference/merge_ref.py.

Usage:
    /usr/bin/python3 tests/test_lora_export.py --smelt build/core/smelt \\
        --workdir /tmp/smelt-lora-export [--case NAME] [--list]

For each case one recipe exports the same adapter several times (DType=auto,
bf16, ...).  Checked: adapter_config.json has the same keys and values;
adapter_model.safetensors has PEFT's saved key names (adapter-name component
removed), the same shapes, values exact for DType=auto (and for widening),
RNE-rounded otherwise; the header is laid out as safetensors.torch.save_file
lays it out; tokenizer files are copied from the base model.
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
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
sys.path.insert(0, os.path.join(HERE, "reference"))

import gen_tiny_model as gen  # noqa: E402
import merge_ref  # noqa: E402
from test_merge_reference import smelt_env  # noqa: E402

TORCH_OF = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
EXPORT_DTYPE = {"f32": "F32", "bf16": "BF16", "fp16": "F16"}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def cases():
    """(name, model kwargs, adapter kwargs, [DType values to export])."""
    attn4 = ["q_proj", "k_proj", "v_proj", "o_proj"]
    return [
        ("plain", {}, {}, ["auto", "bf16"]),
        ("bf16-adapter", {}, {"dtype": "bf16"}, ["auto", "f32", "fp16"]),
        ("everything", {"attention_bias": True},
         {"targets": attn4, "dora": True, "lora_bias": True, "bias": "all",
          "embedding_lora": True, "modules_to_save": ["lm_head"]}, ["auto", "bf16"]),
        ("adapter-name-kept", {}, {"keep_adapter_name": True, "dora": True,
                                   "embedding_lora": True}, ["auto", "bf16"]),
        ("resized-vocab-mixed-dtypes", {}, {"resize_vocab": 400, "lm_head_lora": True},
         ["auto", "bf16"]),
        ("gpt2-fan-in-fan-out", {"arch": "gpt2"},
         {"targets": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True}, ["auto", "fp16"]),
    ]


def saved_name(key):
    """PEFT's saved key for a (possibly raw state_dict) adapter key: the
    adapter-name component removed, DoRA magnitude without '.weight'."""
    key = re.sub(r"\.default(?=\.|$)", "", key)
    if key.endswith(".lora_magnitude_vector.weight"):
        key = key[:-len(".weight")]
    return key


def check_export(adapter_dir, model_dir, out_dir, dtype):
    """Errors (list of strings) for one exported adapter directory."""
    errors = []
    # adapter_config.json
    try:
        with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
            want_cfg = json.load(f)
        with open(os.path.join(out_dir, "adapter_config.json")) as f:
            text = f.read()
        got_cfg = json.loads(text)
    except (OSError, ValueError) as e:
        return ["adapter_config.json: %s" % e]
    for k in sorted(set(want_cfg) | set(got_cfg)):
        if k not in got_cfg:
            errors.append("adapter_config.json lacks %s" % k)
        elif k not in want_cfg:
            errors.append("adapter_config.json has unexpected key %s" % k)
        elif got_cfg[k] != want_cfg[k]:
            errors.append("adapter_config.json %s = %r, want %r" % (k, got_cfg[k], want_cfg[k]))

    # adapter_model.safetensors
    src = merge_ref.SafetensorsFile(os.path.join(adapter_dir, "adapter_model.safetensors"))
    try:
        out = merge_ref.SafetensorsFile(os.path.join(out_dir, "adapter_model.safetensors"))
    except (OSError, ValueError) as e:
        return errors + ["adapter_model.safetensors: %s" % e]
    errors += merge_ref.check_save_file_layout(out)
    want = {saved_name(k): k for k in src.names()}
    got = set(out.names())
    if set(want) != got:
        errors.append("keys differ: missing %s, unexpected %s"
                      % (sorted(set(want) - got)[:6], sorted(got - set(want))[:6]))
    for name in sorted(set(want) & got):
        s = src.tensor(want[name])
        g = out.tensor(name)
        st_dtype = src.dtype_of(want[name]) if dtype == "auto" else EXPORT_DTYPE[dtype]
        if out.dtype_of(name) != st_dtype:
            errors.append("%s: dtype %s, want %s" % (name, out.dtype_of(name), st_dtype))
            continue
        if list(g.shape) != list(s.shape):
            errors.append("%s: shape %s, want %s" % (name, list(g.shape), list(s.shape)))
            continue
        expect = s.to(TORCH_OF[st_dtype])  # exact, or RNE when narrowing
        if not torch.equal(g.view(torch.uint8), expect.contiguous().view(torch.uint8)):
            bad = (g.float() != expect.float()).sum().item()
            errors.append("%s: %d values differ from %s" % (
                name, bad, "the input" if dtype == "auto"
                else "the input converted to %s (exact widening or RNE)" % dtype))
    # tokenizer files
    for fn in TOKENIZER_FILES:
        src_tok = os.path.join(adapter_dir, fn)
        if not os.path.exists(src_tok):
            src_tok = os.path.join(model_dir, fn)
        dst = os.path.join(out_dir, fn)
        if not os.path.exists(dst):
            errors.append("%s not copied" % fn)
        elif open(src_tok, "rb").read() != open(dst, "rb").read():
            errors.append("%s differs from %s" % (fn, src_tok))
    leftovers = [f for f in os.listdir(out_dir) if f.endswith(".partial")]
    if leftovers:
        errors.append("partial files left: %s" % leftovers)
    return errors


def format_notes(out_dir):
    """Non-fatal observations: is adapter_config.json written like PEFT
    (json.dumps(indent=2, sort_keys=True))?"""
    text = open(os.path.join(out_dir, "adapter_config.json")).read()
    if text.rstrip("\n") != json.dumps(json.loads(text), indent=2, sort_keys=True):
        return ["adapter_config.json not formatted like PEFT (indent=2, sort_keys)"]
    return []


def run_case(name, model_kw, adapter_kw, dtypes, smelt, workdir):
    """Generate, export with every DType in `dtypes` in one recipe, check.
    Returns (ok, message)."""
    cdir = os.path.join(workdir, name)
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    model = gen.generate_model(os.path.join(cdir, "model"), **model_kw)
    adapter = gen.generate_adapter(os.path.join(cdir, "adapter"), model, seed=5, **adapter_kw)
    exports = [("lora-%s" % d, "safetensors-lora", os.path.join(cdir, "out-%s" % d),
                {"DType": d}) for d in dtypes]
    recipe = gen.write_recipe(os.path.join(cdir, "recipe.smelt"), model, [adapter], None,
                              exports, name=name)
    cmd = [smelt, "run", recipe, "--progress=none"]
    try:
        proc = subprocess.run(cmd, env=smelt_env(smelt), capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return False, "smelt timed out"
    if proc.returncode != 0:
        return False, "smelt exited %d: %s\n%s%s" % (proc.returncode, " ".join(cmd),
                                                     proc.stdout, proc.stderr)
    errors, notes = [], []
    for d in dtypes:
        out_dir = os.path.join(cdir, "out-%s" % d)
        errs = check_export(adapter, model, out_dir, d)
        errors += ["DType=%s: %s" % (d, e) for e in errs]
        if not errs:
            notes += format_notes(out_dir)
    if errors:
        return False, "\n    ".join([""] + errors[:20])
    return True, "DType=%s%s" % ("/".join(dtypes),
                                 ("; " + "; ".join(sorted(set(notes)))) if notes else "")


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--case", action="append", default=[])
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    table = cases()
    if args.list:
        for c in table:
            print(c[0])
        return 0
    if args.case:
        unknown = set(args.case) - {c[0] for c in table}
        if unknown:
            p.error("unknown case(s) %s" % sorted(unknown))
        table = [c for c in table if c[0] in args.case]
    smelt = os.path.abspath(args.smelt)
    if not os.access(smelt, os.X_OK):
        p.error("%s is not an executable" % smelt)
    os.makedirs(args.workdir, exist_ok=True)
    failed = []
    t0 = time.monotonic()
    for name, mkw, akw, dtypes in table:
        ok, msg = run_case(name, mkw, akw, dtypes, smelt, os.path.abspath(args.workdir))
        if ok:
            print("ok %s (%s)" % (name, msg), flush=True)
        else:
            print("FAIL %s: %s" % (name, msg), flush=True)
        if not ok:
            failed.append(name)
    print("%d of %d cases passed in %.1f s" % (len(table) - len(failed), len(table),
                                                time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the real smelt binary on generated models/adapters and compare its
merged16 output with the independent reference merge (tests/reference).

Usage:
    /usr/bin/python3 tests/test_merge_reference.py --smelt build/core/smelt \\
        --workdir /tmp/smelt-merge-ref [--case NAME] [--extended] [--list]

Prints "ok CASE (max ulp N, M of K elements 1 ulp)" per case, exits non-zero
if any case fails.  SMELT_PLUGIN_PATH is normally set by meson; when it is
unset and the binary sits in a build tree (BUILD/core/smelt), the plugin
folders under BUILD/plugins are used.
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
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
sys.path.insert(0, os.path.join(HERE, "reference"))

import gen_tiny_model as gen  # noqa: E402
import merge_ref  # noqa: E402

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Case:
    """One merge test: a base model, adapters with weights, export options.

    model: kwargs for gen.generate_model
    adapters: list of (kwargs for gen.generate_adapter, weight or None)
    export: extra keys of the merged16 export (DType defaults to bf16)
    """

    def __init__(self, name, model=None, adapters=None, export=None, extended=False,
                 expect_fail=False):
        self.name = name
        self.expect_fail = expect_fail
        self.model = dict(model or {})
        self.adapters = adapters or [({}, None)]
        self.export = {"DType": "bf16"}
        self.export.update(export or {})
        self.extended = extended


def cases():
    """The case table."""
    bias_model = {"attention_bias": True}
    attn4 = ["q_proj", "k_proj", "v_proj", "o_proj"]
    return [
        Case("plain"),
        Case("plain-fp16", model={"dtype": "fp16"}, export={"DType": "fp16"}),
        Case("bf16-adapter", adapters=[({"dtype": "bf16"}, None)]),
        Case("rslora", adapters=[({"rslora": True, "rank": 16, "alpha": 8}, None)]),
        Case("fan_in_fan_out", model={"arch": "gpt2"},
             adapters=[({"targets": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True},
                        None)]),
        Case("dora", adapters=[({"dora": True}, None)]),
        Case("embedding-lora", adapters=[({"targets": ["q_proj", "v_proj"],
                                           "embedding_lora": True}, None)]),
        Case("alpha-rank-patterns", adapters=[({
            "rank_pattern": {"q_proj": 4, "model.layers.1.mlp.down_proj": 2},
            "alpha_pattern": {"v_proj": 32, "layers.0.mlp.up_proj": 4}}, None)]),
        Case("two-weighted-adapters", adapters=[
            ({"seed": 11}, 1.0),
            ({"seed": 12, "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "down_proj"]},
             0.5)]),
        Case("modules-to-save", adapters=[({"targets": ["q_proj", "v_proj"],
                                            "modules_to_save": ["lm_head"]}, None)]),
        Case("resized-vocab", adapters=[({"resize_vocab": 400, "lm_head_lora": True}, None)]),
        Case("tied-embeddings", model={"tie": True},
             adapters=[({"lm_head_lora": True}, None)]),
        Case("tied-untouched", model={"tie": True},
             adapters=[({"targets": ["q_proj"]}, None)]),
        Case("lora-bias", model=bias_model,
             adapters=[({"targets": attn4, "lora_bias": True}, None)]),
        Case("bias-all", model=bias_model,
             adapters=[({"targets": ["q_proj", "v_proj"], "bias": "all"}, None)]),
        Case("lora-bias-bias-all", model=bias_model,
             adapters=[({"targets": attn4, "lora_bias": True, "bias": "all"}, None)]),
        Case("sharded", model={"shards": 3}, export={"MaxShardSize": "100KB"}),
        Case("adapter-name-kept", adapters=[
            ({"keep_adapter_name": True, "dora": True, "seed": 31}, None),
            ({"keep_adapter_name": True, "embedding_lora": True, "targets": ["q_proj"],
              "seed": 32}, None)]),
        # --extended: behaviours formats.md describes that the brief did not list
        Case("resized-vocab-tied", model={"tie": True},
             adapters=[({"resize_vocab": 400}, None)], extended=True),
        Case("embedding-lora-saved", adapters=[({"targets": ["q_proj"], "embedding_lora": True,
                                                 "lm_head_lora": True,
                                                 "save_embedding_layers": True}, None)],
             extended=True),
        Case("modules-to-save-tied", model={"tie": True},
             adapters=[({"targets": ["q_proj"], "modules_to_save": ["lm_head"]}, None)],
             extended=True),
        Case("dora-fan-in-fan-out", model={"arch": "gpt2"},
             adapters=[({"targets": ["c_attn", "c_fc"], "fan_in_fan_out": True,
                         "dora": True}, None)], extended=True),
        Case("dora-embedding", adapters=[({"targets": ["q_proj", "v_proj"], "dora": True,
                                           "embedding_lora": True}, None)], extended=True),
        Case("auto-dtype-fp16", model={"dtype": "fp16"}, export={"DType": "auto"},
             extended=True),
        Case("three-adapters-dora", adapters=[({"seed": 21}, 1.0),
                                              ({"seed": 22, "dora": True}, 0.25),
                                              ({"seed": 23, "bias": "none"}, -1.0)],
             extended=True),
        # adapters smelt must refuse (non-zero exit, nothing committed)
        Case("refuse-peft-type", adapters=[({"peft_type": "ADALORA"}, None)],
             extended=True, expect_fail=True),
        Case("refuse-pissa", adapters=[({"init_lora_weights": "pissa"}, None)],
             extended=True, expect_fail=True),
        Case("refuse-layer-replication", adapters=[({"layer_replication": True}, None)],
             extended=True, expect_fail=True),
        Case("refuse-lora-bias-without-base-bias",
             adapters=[({"targets": ["q_proj"], "lora_bias": True}, None)],
             extended=True, expect_fail=True),
    ]


def parse_size(text):
    """huggingface_hub's parse_size_to_int: last two characters are the unit."""
    units = {"TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3}
    return int(float(text[:-2]) * units[text[-2:].upper()])


def smelt_env(smelt):
    """Environment for running smelt: guess SMELT_PLUGIN_PATH from a build tree
    when it is not set."""
    env = dict(os.environ)
    if not env.get("SMELT_PLUGIN_PATH"):
        build = os.path.dirname(os.path.dirname(os.path.abspath(smelt)))
        dirs = sorted(d for d in glob.glob(os.path.join(build, "plugins", "*"))
                      if os.path.isdir(d))
        if dirs:
            env["SMELT_PLUGIN_PATH"] = os.pathsep.join(dirs)
            env.setdefault("SMELT_PLUGIN_SYSTEM_PATH", os.pathsep.join(dirs))
    return env


def run_case(case, smelt, workdir):
    """Generate, run smelt, compare.  Returns (ok, message)."""
    cdir = os.path.join(workdir, case.name)
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    model = gen.generate_model(os.path.join(cdir, "model"), **case.model)
    adapters = []
    for i, (kw, weight) in enumerate(case.adapters):
        kw = dict(kw)
        kw.setdefault("seed", 100 + i)
        a = gen.generate_adapter(os.path.join(cdir, "adapter%d" % i), model, **kw)
        adapters.append((a, 1.0 if weight is None else weight))
    weights = None
    if any(w is not None for _, w in case.adapters):
        weights = [w for _, w in adapters]
    out = os.path.join(cdir, "merged")
    recipe = gen.write_recipe(os.path.join(cdir, "recipe.smelt"), model,
                              [a for a, _ in adapters], weights,
                              [("merged", "merged16", out, case.export)], name=case.name)
    cmd = [smelt, "run", recipe, "--progress=none"]
    try:
        proc = subprocess.run(cmd, env=smelt_env(smelt), capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return False, "smelt timed out: %s" % " ".join(cmd)
    if case.expect_fail:
        written = os.listdir(out) if os.path.isdir(out) else []
        if proc.returncode == 0:
            return False, "smelt accepted an adapter it must refuse"
        if any(f.endswith(".safetensors") for f in written):
            return False, "smelt refused (exit %d) but left %s" % (proc.returncode, written)
        msg = (proc.stderr.strip().splitlines() or [""])[-1]
        return True, "refused, exit %d: %s" % (proc.returncode, msg[:120])
    if proc.returncode != 0:
        return False, "smelt exited %d: %s\n%s%s" % (proc.returncode, " ".join(cmd),
                                                     proc.stdout, proc.stderr)
    try:
        ref = merge_ref.reference_merge(model, adapters)
    except Exception as e:  # a reference failure is a test bug, say so
        return False, "reference merge failed: %r" % e
    max_shard = parse_size(case.export["MaxShardSize"]) if "MaxShardSize" in case.export else None
    rep = merge_ref.compare(out, ref, case.export["DType"], max_shard_size=max_shard)
    if case.name == "sharded" and not os.path.exists(
            os.path.join(out, "model.safetensors.index.json")):
        rep.errors.append("output is not sharded with MaxShardSize=%s"
                          % case.export["MaxShardSize"])
    if not rep.ok:
        return False, "\n    ".join(["%s" % rep.summary()] + rep.errors[:20])
    extra = ("; " + "; ".join(rep.notes)) if rep.notes else ""
    return True, rep.summary() + extra


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smelt", required=True, help="path to the smelt binary")
    p.add_argument("--workdir", required=True)
    p.add_argument("--case", action="append", default=[], help="run only this case")
    p.add_argument("--extended", action="store_true",
                   help="also run the extra cases beyond the agreed list")
    p.add_argument("--list", action="store_true", help="list case names")
    args = p.parse_args(argv)

    table = cases()
    if args.list:
        for c in table:
            print(c.name + (" (extended)" if c.extended else ""))
        return 0
    if args.case:
        names = {c.name for c in table}
        unknown = [n for n in args.case if n not in names]
        if unknown:
            p.error("unknown case(s) %s; --list shows them" % unknown)
        selected = [c for c in table if c.name in args.case]
    else:
        selected = [c for c in table if args.extended or not c.extended]
    smelt = os.path.abspath(args.smelt)
    if not os.access(smelt, os.X_OK):
        p.error("%s is not an executable" % smelt)
    os.makedirs(args.workdir, exist_ok=True)

    failed = []
    t0 = time.monotonic()
    for c in selected:
        ok, msg = run_case(c, smelt, os.path.abspath(args.workdir))
        if ok:
            print("ok %s (%s)" % (c.name, msg), flush=True)
        else:
            print("FAIL %s: %s" % (c.name, msg), flush=True)
            failed.append(c.name)
    print("%d of %d cases passed in %.1f s" % (len(selected) - len(failed), len(selected),
                                                time.monotonic() - t0))
    if failed:
        print("failed: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

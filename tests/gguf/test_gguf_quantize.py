#!/usr/bin/python3
"""smelt's quantized GGUF files against llama.cpp's own llama-quantize.

For models with GQA, with and without an output tensor, and with rows that
do and do not split into 256-element super-blocks, smelt writes F32 and
every quantized file type from one pass. For each type, llama.cpp's
llama_model_quantize (default parameters, through the harness) quantizes
smelt's F32 file; the two files must have the same tensors with the same
types and the same bytes, and the same keys with the same values in the
same order.

Then the same from a GGUF source, llama-quantize's own job: smelt reads
its F16 file (and one BF16 and one F32 file) as the model and writes every
type, F16 and F32 included, in one run; llama.cpp quantizes the same file.
Here the keys must match in order too (general.file_type and
general.quantization_version included), and every tensor's type and bytes.

    test_gguf_quantize.py --smelt SMELT --harness HARNESS --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_arch_models as arch  # noqa: E402

FTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
          "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]

#: family, generator options, what it covers
MODELS = [
    ("llama3", {"overrides": dict(hidden=256, inter=512, layers=8, heads=8, kv_heads=2)},
     "GQA 4, rows of 256 and 512 (no fallback), use_more_bits over 8 layers"),
    ("qwen2", {"overrides": dict(hidden=384, inter=768, layers=4, heads=6, kv_heads=2)},
     "Qwen2-0.5B's pattern: rows of 384 fall back, ffn_down rows of 768 do not; tied"),
    ("llama", {}, "rows of 64/160: every k-quant falls back"),
    ("gemma", {}, "gemma: output dropped, norm + 1"),
    ("phi3", {}, "fused qkv / gate_up"),
]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr))
    return p.stdout


def dump(harness, path):
    d = json.loads(run([harness, "dump", path, "--full"]))
    with open(path, "rb") as f:
        raw = f.read()
    tensors = {}
    for t in d["tensors"]:
        start = d["data_offset"] + t["offset"]
        tensors[t["name"]] = (t["type"], tuple(t["ne"]), raw[start:start + t["size"]])
    return d["kv"], tensors


def generate(work, family, opts):
    fam = os.path.join(work, "fam-%s%s" % (family, "-custom" if opts else ""))
    if not os.path.isdir(fam):
        arch.generate(fam, family, seed=17, **opts)
    return os.path.join(fam, "model"), os.path.join(fam, "adapter")


def export(smelt, work, family, model, adapter):
    out = os.path.join(work, "out-" + family)
    shutil.rmtree(out, ignore_errors=True)
    recipe = os.path.join(work, family + ".smelt")
    with open(recipe, "w") as f:
        f.write("[Source]\nModel=%s\nAdapters=%s\n\n[Destination d]\nPlugin=localfs\nPath=%s\n\n"
                "[Export g]\nFormat=gguf-quant\nTypes=f32;f16;bf16;%s\nName=m\n"
                % (model, adapter, out, ";".join(t.lower() for t in FTYPES)))
    run([smelt, "run", recipe, "--progress=none"])
    return out


#: the types asked of a GGUF source: llama-quantize's, and its float ones
REQUANT_TYPES = FTYPES + ["F16", "BF16", "F32"]
#: the source files each family is requantized from
REQUANT_SOURCES = {"llama3": ["F16", "BF16"], "qwen2": ["F16"], "llama": ["F16", "F32"],
                   "gemma": ["F16"], "phi3": ["F16"]}


def export_from_gguf(smelt, work, family, source):
    tag = os.path.basename(source).split(".")[1]
    out = os.path.join(work, "requant-%s-%s" % (family, tag))
    shutil.rmtree(out, ignore_errors=True)
    recipe = os.path.join(work, "requant-%s-%s.smelt" % (family, tag))
    with open(recipe, "w") as f:
        f.write("[Source]\nModel=%s\n\n[Destination d]\nPlugin=localfs\nPath=%s\n\n"
                "[Export g]\nFormat=gguf-quant\nTypes=%s\n"
                % (source, out, ";".join(t.lower() for t in REQUANT_TYPES)))
    run([smelt, "run", recipe, "--progress=none"])
    return out


def compare(harness, ours_path, ref_path, allow_moved):
    problems = []
    kv_o, t_o = dump(harness, ours_path)
    kv_r, t_r = dump(harness, ref_path)
    # Q8_0 is written as the converter writes it (general.file_type in the
    # architecture block, quantization_version before the tokenizer), where
    # llama-quantize moves both keys to the end: only their place may
    # differ, and only for Q8_0.
    moved = ("general.file_type", "general.quantization_version")
    order_o = [k["key"] for k in kv_o]
    order_r = [k["key"] for k in kv_r]
    if order_o != order_r:
        strip = lambda keys: [k for k in keys if k not in moved]  # noqa: E731
        if not allow_moved or strip(order_o) != strip(order_r):
            problems.append("key order differs")
    by_key = {k["key"]: k for k in kv_r}
    for a in kv_o:
        if a != by_key.get(a["key"]):
            problems.append("key %s: %s vs llama.cpp's %s" % (a["key"], a.get("value"),
                                                               by_key.get(a["key"], {}).get("value")))
    if set(t_o) != set(t_r):
        problems.append("tensor names differ: %s" % sorted(set(t_o) ^ set(t_r)))
    types = {}
    for name in sorted(set(t_o) & set(t_r)):
        (to, no, bo), (tr, nr, br) = t_o[name], t_r[name]
        if to != tr:
            problems.append("%s: %s, llama.cpp %s" % (name, to, tr))
        elif no != nr or bo != br:
            problems.append("%s (%s): bytes differ" % (name, to))
        types[to] = types.get(to, 0) + 1
    return problems, types


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    failures = 0
    checked = 0
    for family, opts, what in MODELS:
        model, adapter = generate(args.workdir, family, opts)
        out = export(args.smelt, args.workdir, family, model, adapter)
        f32 = os.path.join(out, "m.F32.gguf")
        for ft in FTYPES:
            ref = os.path.join(args.workdir, "ref-%s.%s.gguf" % (family, ft))
            run([args.harness, "model-quantize", f32, ref, ft])
            problems, types = compare(args.harness, os.path.join(out, "m.%s.gguf" % ft), ref,
                                      ft == "Q8_0")
            checked += 1
            mix = ", ".join("%s %d" % kv for kv in sorted(types.items()))
            if problems:
                failures += 1
                print("FAIL %-7s %-7s %s" % (family, ft, "; ".join(problems[:6])))
            else:
                print("ok   %-7s %-7s identical to llama-quantize (%s)" % (family, ft, mix))
        print("     (%s: %s)" % (family, what))
        for tag in REQUANT_SOURCES[family]:
            src = os.path.join(out, "m.%s.gguf" % tag)
            rout = export_from_gguf(args.smelt, args.workdir, family, src)
            for ft in REQUANT_TYPES:
                ref = os.path.join(args.workdir, "ref-%s-%s.%s.gguf" % (family, tag, ft))
                run([args.harness, "model-quantize", src, ref, ft])
                # the stem is the source's name without its type: m.F16.gguf → m
                problems, types = compare(args.harness, os.path.join(rout, "m.%s.gguf" % ft),
                                          ref, False)
                checked += 1
                mix = ", ".join("%s %d" % kv for kv in sorted(types.items()))
                if problems:
                    failures += 1
                    print("FAIL %-7s %s→%-6s %s" % (family, tag, ft, "; ".join(problems[:6])))
                else:
                    print("ok   %-7s %s→%-6s identical to llama-quantize (%s)"
                          % (family, tag, ft, mix))
    print("%d of %d files identical" % (checked - failures, checked))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""gguf-quant's quality report (NAME.report.json) against an independent
computation.

Tiny models with a LoRA adapter (tests/gen/gen_arch_models.py: llama3 with
GQA, whose attn_q/attn_k rows the converter permutes, and qwen2 with rows of
384 that fall back from the k-quants, tied embeddings, biases) are exported
to several types in one run. For every file and tensor, the test recomputes
the report's figures with numpy in float64:

* x: the merged weights as the F32 file holds them; that they are the
  reference merge (tests/reference/merge_ref.py, float64 from the published
  LoRA formulas) with the converter's Q/K permutation is checked here too;
* dq(q(x)): the tensor of the quantized file, dequantized by llama.cpp
  (`smelt-llama-harness dequantize`, ggml's to_float);
* W: the base weights from the safetensors file, permuted likewise;
  dq(q(W)): W quantized and dequantized by llama.cpp (`quantize`, then
  `dequantize`), with the type the report names;
* Δ = x − W, D = dq(q(x)) − dq(q(W)) (on rows 0, 8, 16, … as smelt
  samples them), and from them rel_rms_error, delta_rms, delta_ratio,
  delta_cosine, delta_error and delta_surviving as doc/gguf.md defines
  them.

Also checked: which tensors carry delta figures (exactly those the merge
changes), types and byte counts against the file, totals, the same report
bytes with --jobs 1 and --jobs 2, the CLI summary's figures, Report=false
(no report file), and a delta far below the quantization step (adapter
weight 1e-4): everything of it survives in F32, next to nothing in
Q4_K_M, while the full-strength delta mostly survives Q4_K_M.

    test_gguf_report.py --smelt SMELT --harness HARNESS --workdir DIR
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import gen_arch_models as arch  # noqa: E402
import merge_ref  # noqa: E402

TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q3_K_M"]

MODELS = [
    ("llama3", dict(hidden=256, inter=512, layers=2, heads=8, kv_heads=2)),
    ("qwen2", dict(hidden=384, inter=768, layers=2, heads=6, kv_heads=2)),
]

#: the delta figures cover rows 0, 8, 16, … of the file's layout (doc/gguf.md)
STRIDE = 8

RTOL = 1e-6
ATOL = 1e-9
FIGURES = ("rel_rms_error", "delta_rms", "delta_surviving", "delta_cosine", "delta_ratio",
           "delta_error")


def run(cmd, data=None):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr.decode(errors="replace")))
    return p.stdout


class Gguf:
    """Tensor infos and data of a GGUF file, from llama.cpp's reader."""

    def __init__(self, harness, path):
        d = json.loads(run([harness, "dump", path, "--full"]))
        with open(path, "rb") as f:
            raw = f.read()
        self.harness = harness
        self.kv = {k["key"]: k.get("value") for k in d["kv"]}
        self.tensors = {}
        for t in d["tensors"]:
            start = d["data_offset"] + t["offset"]
            self.tensors[t["name"]] = (t["type"], tuple(t["ne"]), raw[start:start + t["size"]])

    def floats(self, name):
        """the tensor as float64, dequantized by ggml"""
        typ, ne, data = self.tensors[name]
        n_per_row = ne[0]
        rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        out = run([self.harness, "dequantize", typ, str(rows), str(n_per_row)], data)
        return np.frombuffer(out, np.float32).astype(np.float64)


def round_trip(harness, typ, w):
    """dq(q(w)) by ggml, for float32 rows w"""
    rows, n = w.shape
    q = run([harness, "quantize", typ, str(rows), str(n)], w.astype("<f4").tobytes())
    out = run([harness, "dequantize", typ, str(rows), str(n)], q)
    return np.frombuffer(out, np.float32).astype(np.float64)


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: interleaved to split
    halves of each head's rotary dimensions"""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def to_gguf_layout(family, config, gguf_name, w):
    w = np.asarray(w, np.float32)
    if family.startswith("llama"):
        if gguf_name.endswith("attn_q.weight"):
            return permute(w, config["num_attention_heads"])
        if gguf_name.endswith("attn_k.weight"):
            return permute(w, config["num_key_value_heads"])
    return w


def sums(x, xq, w=None, wq=None):
    """x, xq: (rows, n) over every row; w, wq: the rows STRIDE picks"""
    s = {"err2": float(np.sum((x - xq) ** 2)), "x2": float(np.sum(x * x)), "n": x.size}
    if w is not None:
        delta = x[::STRIDE] - w
        diff = xq[::STRIDE] - wq
        s.update(delta2=float(np.sum(delta * delta)), diff2=float(np.sum(diff * diff)),
                 cross=float(np.sum(diff * delta)), resid2=float(np.sum((diff - delta) ** 2)),
                 delta_n=delta.size)
    return s


def figures(s):
    """doc/gguf.md's definitions, from the sums"""
    f = {"rel_rms_error": np.sqrt(s["err2"] / s["x2"]) if s["x2"] > 0 else 0.0}
    if "delta2" in s:
        d2 = s["delta2"]
        f["delta_rms"] = np.sqrt(d2 / s["delta_n"])
        f["delta_ratio"] = np.sqrt(s["diff2"] / d2)
        f["delta_cosine"] = s["cross"] / np.sqrt(s["diff2"] * d2) if s["diff2"] > 0 else 0.0
        f["delta_error"] = np.sqrt(s["resid2"] / d2)
        f["delta_surviving"] = max(0.0, 1.0 - s["resid2"] / d2)
    return f


def close(a, b):
    return a is not None and abs(a - b) <= ATOL + RTOL * abs(b)


def compare_figures(where, got, want, problems):
    for k in FIGURES:
        if (k in want) != (k in got):
            problems.append("%s: %s %s in the report, expected %s" % (
                where, k, "present" if k in got else "absent", "present" if k in want else "absent"))
        elif k in want and not close(got[k], want[k]):
            problems.append("%s: %s %r, numpy %r" % (where, k, got[k], want[k]))


def generate(work, family, overrides):
    fam = os.path.join(work, "fam-" + family)
    if not os.path.isdir(fam):
        arch.generate(fam, family, seed=23, overrides=overrides)
    return os.path.join(fam, "model"), os.path.join(fam, "adapter")


def export(args, name, model, adapter, types, extra="", weight=None, jobs=2, progress="none"):
    out = os.path.join(args.workdir, "out-" + name)
    shutil.rmtree(out, ignore_errors=True)
    recipe = os.path.join(args.workdir, name + ".smelt")
    with open(recipe, "w") as f:
        f.write("[Source]\nModel=%s\nAdapters=%s\n%s\n[Destination d]\nPlugin=localfs\nPath=%s\n\n"
                "[Export g]\nFormat=gguf-quant\nTypes=%s\nName=m\n%s"
                % (model, adapter, "AdapterWeights=%r\n" % weight if weight is not None else "",
                   out, ";".join(types), extra))
    stdout = run([args.smelt, "run", recipe, "--progress=" + progress, "--jobs", str(jobs)])
    return out, stdout.decode()


def check_export(args, family, model, adapter, out, types, weight=1.0):
    """Every figure of out/m.report.json against numpy; returns (problems,
    the report)."""
    problems = []
    with open(os.path.join(out, "m.report.json")) as f:
        report = json.load(f)
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    ref = merge_ref.reference_merge(model, [(adapter, weight)])
    _, base, _, _ = merge_ref.load_model_dir(model)
    f32 = Gguf(args.harness, os.path.join(out, "m.F32.gguf"))

    outputs = {o["type"]: o for o in report["outputs"]}
    if sorted(outputs) != sorted(types):
        problems.append("report lists types %s, exported %s" % (sorted(outputs), sorted(types)))
    cache = {}
    for typ in types:
        o = outputs.get(typ)
        if o is None:
            continue
        path = os.path.join(out, "m.%s.gguf" % typ)
        g = Gguf(args.harness, path)
        if o["files"] != ["m.%s.gguf" % typ]:
            problems.append("%s: files %s" % (typ, o["files"]))
        names = [t["gguf_name"] for t in o["tensors"]]
        if sorted(names) != sorted(g.tensors):
            problems.append("%s: report tensors %s differ from the file's" % (
                typ, sorted(set(names) ^ set(g.tensors))))
            continue
        total_all = {"err2": 0.0, "x2": 0.0, "n": 0}
        total_mod = {"err2": 0.0, "x2": 0.0, "n": 0, "delta2": 0.0, "diff2": 0.0, "cross": 0.0,
                     "resid2": 0.0, "delta_n": 0}
        total_bytes = 0
        n_mod = 0
        for t in o["tensors"]:
            gname = t["gguf_name"]
            where = "%s %s %s" % (family, typ, gname)
            ftype, ne, data = g.tensors[gname]
            if t["type"] != ftype or t["bytes"] != len(data):
                problems.append("%s: report says %s, %d bytes; file %s, %d bytes"
                                % (where, t["type"], t["bytes"], ftype, len(data)))
            total_bytes += len(data)
            rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
            x = f32.floats(gname).reshape(rows, ne[0])
            xq = g.floats(gname).reshape(rows, ne[0])
            hf = t["name"]
            modified = False
            w = None
            if hf is not None:
                merged = to_gguf_layout(family, config, gname, ref.tensors[hf].numpy()).reshape(-1)
                # the F32 file is the reference merge (float32 rounding apart)
                if not np.allclose(x.reshape(-1), merged, rtol=1e-5, atol=1e-6):
                    problems.append("%s: the F32 file differs from the reference merge" % where)
                basew = to_gguf_layout(family, config, gname,
                                       base[hf].to(dtype=merge_ref.torch.float32).numpy())
                modified = bool(np.any(ref.tensors[hf].numpy() != base[hf].to(
                    dtype=merge_ref.torch.float32).numpy()))
                w = basew.reshape(rows, ne[0])[::STRIDE].astype(np.float64)
            if modified:
                key = (gname, t["type"])
                if key not in cache:
                    cache[key] = round_trip(args.harness, t["type"], w.astype(np.float32)).reshape(w.shape)
                s = sums(x, xq, w, cache[key])
                n_mod += 1
                for k in total_mod:
                    total_mod[k] += s[k]
            else:
                s = sums(x, xq)
            for k in total_all:
                total_all[k] += s[k]
            compare_figures(where, t, figures(s), problems)
            if t.get("elements") != x.size:
                problems.append("%s: elements %s, expected %d" % (where, t.get("elements"), x.size))
        tot = o["totals"]
        if tot["bytes"] != total_bytes or tot["modified_tensors"] != n_mod:
            problems.append("%s %s totals: bytes %d modified %d, expected %d and %d" % (
                family, typ, tot["bytes"], tot["modified_tensors"], total_bytes, n_mod))
        want = {"rel_rms_error": figures(total_all)["rel_rms_error"]}
        if n_mod:
            want.update({k: v for k, v in figures(total_mod).items() if k != "rel_rms_error"})
        compare_figures("%s %s totals" % (family, typ), tot, want, problems)
        if n_mod == 0:
            problems.append("%s %s: no tensor has a delta" % (family, typ))
    return problems, report


def check_summary(family, stdout, report, problems):
    """the CLI's lines carry the report's totals"""
    for o in report["outputs"]:
        tot = o["totals"]
        m = re.search(r"^  %s\s.*rel\. RMS error ([0-9.]+)%%, fine-tune surviving ([0-9.]+)%% "
                      r"\(cosine (-?[0-9.]+)\)$" % re.escape(o["type"]), stdout, re.M)
        if m is None:
            problems.append("%s: no summary line for %s in:\n%s" % (family, o["type"], stdout))
            continue
        err, surv, cos = (float(v) for v in m.groups())
        if (abs(err - 100 * tot["rel_rms_error"]) > 0.0006 or
                abs(surv - 100 * tot["delta_surviving"]) > 0.06 or
                abs(cos - tot["delta_cosine"]) > 0.0006):
            problems.append("%s %s summary %s, report %s" % (family, o["type"], m.group(0), tot))
    if "Quality of export g (details in m.report.json)" not in stdout:
        problems.append("%s: no summary heading" % family)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    problems = []
    for family, overrides in MODELS:
        model, adapter = generate(args.workdir, family, overrides)
        out, stdout = export(args, family, model, adapter, TYPES, jobs=2, progress="plain")
        p, report = check_export(args, family, model, adapter, out, TYPES)
        check_summary(family, stdout, report, p)
        print("%s %s: %d tensors × %d types against numpy%s" % (
            "ok  " if not p else "FAIL", family, len(report["outputs"][0]["tensors"]), len(TYPES),
            "" if not p else " — " + "; ".join(p[:8])))
        problems += p
        for o in report["outputs"]:
            t = o["totals"]
            print("     %-7s rel. RMS error %.5f, delta surviving %.4f, cosine %.4f, ratio %.4f"
                  % (o["type"], t["rel_rms_error"], t["delta_surviving"], t["delta_cosine"],
                     t["delta_ratio"]))

        # the same bytes at any number of threads
        out1, _ = export(args, family + "-jobs1", model, adapter, TYPES, jobs=1)
        with open(os.path.join(out, "m.report.json"), "rb") as a, \
                open(os.path.join(out1, "m.report.json"), "rb") as b:
            if a.read() != b.read():
                problems.append("%s: report.json differs between --jobs 2 and --jobs 1" % family)

        # a fine-tune far below the quantization step
        types = ["F32", "Q4_K_M"]
        out, _ = export(args, family + "-faint", model, adapter, types, weight=1e-4)
        p, faint = check_export(args, family, model, adapter, out, types, weight=1e-4)
        problems += p
        f = {o["type"]: o["totals"] for o in faint["outputs"]}
        full = {o["type"]: o["totals"] for o in report["outputs"]}
        print("%s %s faint delta: surviving F32 %.4f, Q4_K_M %.4f (cosine %.4f); full delta Q4_K_M %.4f"
              % ("ok  " if not p else "FAIL", family, f["F32"]["delta_surviving"],
                 f["Q4_K_M"]["delta_surviving"], f["Q4_K_M"]["delta_cosine"],
                 full["Q4_K_M"]["delta_surviving"]))
        if not f["F32"]["delta_surviving"] > 1 - 1e-9:
            problems.append("%s: a faint delta does not survive F32 whole" % family)
        if not f["Q4_K_M"]["delta_surviving"] < 0.05 or not f["Q4_K_M"]["delta_cosine"] < 0.5:
            problems.append("%s: a faint delta survives Q4_K_M (%s)" % (family, f["Q4_K_M"]))
        if not full["Q4_K_M"]["delta_surviving"] > 0.5:
            problems.append("%s: the full delta does not survive Q4_K_M (%s)" % (family, full["Q4_K_M"]))

    # Report=false: no report file, no summary
    out, stdout = export(args, "no-report", model, adapter, ["Q8_0"], extra="Report=false\n",
                         progress="plain")
    if sorted(os.listdir(out)) != ["m.Q8_0.gguf"] or "Quality of export" in stdout:
        problems.append("Report=false wrote %s and printed %r" % (sorted(os.listdir(out)), stdout))
    for p in problems:
        print("FAIL " + p)
    print("%d problems" % len(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Tensor data of smelt's GGUF files against llama.cpp's own functions, and
split files against llama.cpp's loader.

For models of several architectures (GQA and Q/K permutation, gemma's
norm + 1, biases, generated rope_freqs), smelt writes F32, F16, BF16 and
Q8_0 files in one run. Then, reading the files with a GGUF parser of this
test's own:

* every tensor of the F16/BF16/Q8_0 files equals, byte for byte, what
  ggml_quantize_chunk (llama.cpp's library, through the harness) makes of
  the same tensor's values in smelt's F32 file; tensors the converter keeps
  in F32 are identical to the F32 file's;
* all four files have the same keys and values except general.file_type;
* a MaxFileSize export is split into several files that llama.cpp loads
  (split.* keys as gguf-split writes them) with the same logits as the
  single file.

    test_gguf_tensors.py --smelt SMELT --harness HARNESS --workdir DIR
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_arch_models as arch  # noqa: E402

TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 8: ("q8_0", 32, 34), 30: ("bf16", 1, 2)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Gguf:
    """A minimal GGUF v3 reader, independent of smelt's."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.pos = 0
        assert self.take(4) == b"GGUF", path
        version, n_tensors, n_kv = struct.unpack("<IQQ", self.take(20))
        assert version == 3
        self.kv = {}
        for _ in range(n_kv):
            key = self.string()
            self.kv[key] = self.value(self.u32())
        self.tensors = {}
        order = []
        for _ in range(n_tensors):
            name = self.string()
            n_dims = self.u32()
            ne = struct.unpack("<%dQ" % n_dims, self.take(8 * n_dims))
            ttype = self.u32()
            offset = struct.unpack("<Q", self.take(8))[0]
            order.append((name, ne, ttype, offset))
        align = self.kv.get("general.alignment", 32)
        start = (self.pos + align - 1) // align * align
        for name, ne, ttype, offset in order:
            _, blk, size = TYPES[ttype]
            rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
            nbytes = ne[0] // blk * size * rows
            self.tensors[name] = (ttype, ne, self.data[start + offset:start + offset + nbytes])
        self.order = [o[0] for o in order]

    def take(self, n):
        b = self.data[self.pos:self.pos + n]
        assert len(b) == n, "truncated"
        self.pos += n
        return b

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def string(self):
        n = struct.unpack("<Q", self.take(8))[0]
        return self.take(n).decode("utf-8", "surrogateescape")

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype = self.u32()
            n = struct.unpack("<Q", self.take(8))[0]
            return [self.value(etype) for _ in range(n)]
        fmt = "<" + SCALAR[vtype]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]


def run(cmd, data=None):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr.decode(errors="replace")))
    return p.stdout


def export(smelt, work, family, types, extra=""):
    fam = os.path.join(work, "fam-" + family)
    if not os.path.isdir(fam):
        arch.generate(fam, family, seed=11)
    out = os.path.join(work, "out-%s%s" % (family, "-split" if extra else ""))
    shutil.rmtree(out, ignore_errors=True)
    recipe = os.path.join(work, "%s%s.smelt" % (family, "-split" if extra else ""))
    with open(recipe, "w") as f:
        f.write("[Source]\nModel=%s\nAdapters=%s\n\n[Destination d]\nPlugin=localfs\nPath=%s\n\n"
                "[Export g]\nFormat=gguf-quant\nTypes=%s\nName=%s\n%s\n"
                % (os.path.join(fam, "model"), os.path.join(fam, "adapter"), out, types, family, extra))
    run([smelt, "run", recipe])
    return out


def check_family(args, family):
    problems = []
    out = export(args.smelt, args.workdir, family, "f32;f16;bf16;q8_0")
    files = {t: Gguf(os.path.join(out, "%s.%s.gguf" % (family, t))) for t in ("F32", "F16", "BF16", "Q8_0")}
    ref = files["F32"]
    counts = {}
    for tname, g in files.items():
        if g.order != ref.order:
            problems.append("%s: tensor order differs from the F32 file" % tname)
        kv = dict(g.kv)
        kv_ref = dict(ref.kv)
        ft = kv.pop("general.file_type")
        kv_ref.pop("general.file_type")
        expect_ft = {"F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7}[tname]
        if ft != expect_ft:
            problems.append("%s: general.file_type %s, expected %d" % (tname, ft, expect_ft))
        if kv != kv_ref or list(g.kv) != list(ref.kv):
            problems.append("%s: metadata differs from the F32 file's" % tname)
        for name in ref.order:
            rtype, ne, rdata = ref.tensors[name]
            ttype, tne, tdata = g.tensors[name]
            if rtype != 0:
                problems.append("F32 file: %s is %s" % (name, TYPES[rtype][0]))
                continue
            if tne != ne:
                problems.append("%s: %s shape %s vs %s" % (tname, name, tne, ne))
                continue
            rows = len(rdata) // 4 // ne[0]
            expect = run([args.harness, "quantize", TYPES[ttype][0], str(rows), str(ne[0])], rdata)
            if tdata != expect:
                problems.append("%s: %s (%s) differs from ggml_quantize_chunk" % (tname, name, TYPES[ttype][0]))
            counts[TYPES[ttype][0]] = counts.get(TYPES[ttype][0], 0) + 1
    print("%-8s %d tensors × 4 files identical to ggml (%s)%s" % (
        family, len(ref.order), ", ".join("%s: %d" % kv for kv in sorted(counts.items())),
        "" if not problems else " — %d problems" % len(problems)))
    return problems


def check_split(args):
    problems = []
    family = "llama3"
    whole = os.path.join(args.workdir, "out-%s" % family, "%s.Q8_0.gguf" % family)
    out = export(args.smelt, args.workdir, family, "q8_0", "MaxFileSize=150KB")
    names = sorted(f for f in os.listdir(out) if f.endswith(".gguf"))
    n = len(names)
    if n < 3:
        return ["MaxFileSize=150KB gave %d files: %s" % (n, names)]
    expect = ["%s.Q8_0-%05d-of-%05d.gguf" % (family, i + 1, n) for i in range(n)]
    if names != expect:
        problems.append("split names %s, expected %s" % (names, expect))
        return problems
    parts = [Gguf(os.path.join(out, f)) for f in names]
    single = Gguf(whole)
    total = 0
    for i, g in enumerate(parts):
        if g.kv.get("split.no") != i or g.kv.get("split.count") != n or \
                g.kv.get("split.tensors.count") != len(single.order):
            problems.append("%s: split keys %s" % (names[i], {k: v for k, v in g.kv.items() if k.startswith("split.")}))
        size = sum(len(t[2]) for t in g.tensors.values())
        if i > 0 and size > 150000 and len(g.order) > 1:
            problems.append("%s: %d bytes of tensors over the limit" % (names[i], size))
        total += len(g.order)
        for name in g.order:
            if g.tensors[name][2] != single.tensors[name][2]:
                problems.append("%s: %s differs from the single file" % (names[i], name))
    if total != len(single.order):
        problems.append("split files hold %d tensors, single file %d" % (total, len(single.order)))
    meta = {k: v for k, v in parts[0].kv.items() if not k.startswith("split.")}
    if meta != single.kv:
        problems.append("the first split's metadata differs from the single file's")
    tokens = "1,5,9,33,100,7"
    a = os.path.join(args.workdir, "split.f32")
    b = os.path.join(args.workdir, "single.f32")
    run([args.harness, "logits", os.path.join(out, names[0]), "--tokens", tokens, "--out", a])
    run([args.harness, "logits", whole, "--tokens", tokens, "--out", b])
    if open(a, "rb").read() != open(b, "rb").read():
        problems.append("llama.cpp's logits from the split files differ from the single file's")
    print("split    %d files, %d tensors, logits identical to the single file%s" % (
        n, total, "" if not problems else " — %d problems" % len(problems)))
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    problems = []
    for family in ("llama3", "gemma", "qwen2", "phi3"):
        problems += check_family(args, family)
    problems += check_split(args)
    for p in problems:
        print("FAIL", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

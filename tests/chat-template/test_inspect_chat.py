#!/usr/bin/env python3
"""`smelt inspect MODEL_DIR` (and --json) shows which chat-template family
the model matched, how (exact, fallback, none) and why.

Usage:
    /usr/bin/python3 tests/chat-template/test_inspect_chat.py --smelt BUILD/core/smelt --workdir DIR

Each model case copies data/demo/model and changes its tokenizer_config.json;
the gguf cases write a GGUF file here, byte by byte from the GGUF
specification (no smelt or llama.cpp code), with or without a
tokenizer.chat_template.
Prints "ok CASE" or "FAIL CASE: why" per case and "N passed, M failed".
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(os.path.dirname(os.path.dirname(HERE)), "data", "demo", "model")

# Gemma 2's published template (google/gemma-2-2b-it): no system role
GEMMA2 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/"
    "user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' "
    "%}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}")
# a Llama 3 header layout no published template has
LLAMA3_LIKE = (
    "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}"
    "<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Ctx:
    def __init__(self, smelt, workdir):
        self.smelt = os.path.abspath(smelt)
        self.workdir = os.path.abspath(workdir)

    def model(self, name, edit=None, config_text=None):
        d = os.path.join(self.workdir, name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(DEMO, d)
        path = os.path.join(d, "tokenizer_config.json")
        if config_text is not None:
            with open(path, "w") as f:
                f.write(config_text)
        elif edit:
            with open(path) as f:
                config = json.load(f)
            edit(config)
            with open(path, "w") as f:
                json.dump(config, f)
        return d

    def inspect(self, d):
        text = subprocess.run([self.smelt, "inspect", d], capture_output=True, text=True)
        check(text.returncode == 0, "inspect failed: %s" % text.stderr)
        js = subprocess.run([self.smelt, "inspect", "--json", d], capture_output=True, text=True)
        check(js.returncode == 0, "inspect --json failed: %s" % js.stderr)
        return text.stdout, json.loads(js.stdout)["chat_template"]


def chat_lines(text):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  chat template:"):
            out = [line]
            for more in lines[i + 1:]:
                if not more.startswith("    "):
                    break
                out.append(more)
            return out
    raise Failure("no chat template line in:\n" + text)


def case_exact(ctx):
    text, js = ctx.inspect(ctx.model("exact"))
    lines = chat_lines(text)
    check("(chatml)" in lines[0] and "exact" in lines[0], "first line: %r" % lines[0])
    check(any(line.startswith("    why:") and "ChatML" in line for line in lines), "no why: %s" % lines)
    check(not any("warning" in line for line in lines), "warning for a known template: %s" % lines)
    check(js["match"] == "exact" and js["family"] == "chatml", js)
    check(js["source"] == "tokenizer_config.json" and js["warning"] is None, js)
    check("<|im_end|>" in js["stop_tokens"] and "</s>" in js["stop_tokens"], js["stop_tokens"])


def case_exact_gemma(ctx):
    text, js = ctx.inspect(ctx.model("gemma", lambda c: c.__setitem__("chat_template", GEMMA2)))
    check("(gemma)" in chat_lines(text)[0], chat_lines(text))
    check(js["match"] == "exact" and js["family"] == "gemma", js)
    check("<end_of_turn>" in js["stop_tokens"], js["stop_tokens"])


def case_markers(ctx):
    text, js = ctx.inspect(ctx.model("markers", lambda c: c.__setitem__("chat_template", LLAMA3_LIKE)))
    lines = chat_lines(text)
    check("fallback" in lines[0] and "(llama3)" in lines[0], lines)
    check(any("markers" in line and "not by its text" in line for line in lines), lines)
    check(any(line.startswith("    warning:") for line in lines), lines)
    check(js["match"] == "fallback" and js["family"] == "llama3" and js["warning"], js)
    check("markers" in js["reason"], js)


def case_generic(ctx):
    weird = "{% for m in messages %}<<{{ m.role }}>> {{ m.content }}\n{% endfor %}<<assistant>> "
    text, js = ctx.inspect(ctx.model("generic", lambda c: c.__setitem__("chat_template", weird)))
    lines = chat_lines(text)
    check("generic" in lines[0] and "fallback" in lines[0], lines)
    check(js["match"] == "fallback" and js["family"] is None and js["warning"], js)
    check("generic" in js["reason"], js)


def case_none(ctx):
    text, js = ctx.inspect(ctx.model("none", lambda c: c.pop("chat_template")))
    lines = chat_lines(text)
    check("none" in lines[0], lines)
    check(any(line.startswith("    warning:") for line in lines), lines)
    check(js["match"] == "none" and js["family"] is None and js["warning"], js)
    check(js["stop_tokens"] == ["</s>"], js["stop_tokens"])


def write_gguf(path, kv):
    """A GGUF v3 file with the metadata kv ({key: str | int | [str]}) and
    one 4-element F32 tensor."""
    def string(v):
        b = v.encode()
        return struct.pack("<Q", len(b)) + b

    def value(v):
        if isinstance(v, str):
            return struct.pack("<I", 8) + string(v)
        if isinstance(v, int):
            return struct.pack("<II", 4, v)                       # UINT32
        return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(string(x) for x in v)

    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
    for k, v in kv.items():
        out += string(k) + value(v)
    out += string("t") + struct.pack("<IQIQ", 1, 4, 0, 0)          # 1-D, 4 elements, F32, offset 0
    out += b"\0" * (-len(out) % 32) + struct.pack("<4f", 0, 1, 2, 3)
    with open(path, "wb") as f:
        f.write(out)
    return path


GGUF_TOKENS = ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]


def case_gguf(ctx):
    path = write_gguf(os.path.join(ctx.workdir, "gemma.gguf"), {
        "general.architecture": "gemma2", "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": GGUF_TOKENS, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.eot_token_id": 4,
        "tokenizer.chat_template": GEMMA2})
    text, js = ctx.inspect(path)
    check("(gemma)" in chat_lines(text)[0] and "exact" in chat_lines(text)[0], chat_lines(text))
    check(js["match"] == "exact" and js["family"] == "gemma", js)
    check(js["source"] == "tokenizer.chat_template", js)
    check("<end_of_turn>" in js["stop_tokens"] and "<eos>" in js["stop_tokens"], js["stop_tokens"])


def case_gguf_none(ctx):
    path = write_gguf(os.path.join(ctx.workdir, "plain.gguf"), {
        "general.architecture": "llama", "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": GGUF_TOKENS, "tokenizer.ggml.eos_token_id": 2})
    text, js = ctx.inspect(path)
    check("none" in chat_lines(text)[0], chat_lines(text))
    check(js["match"] == "none" and js["family"] is None and js["warning"], js)
    check(js["stop_tokens"] == ["<eos>"], js["stop_tokens"])


def case_broken(ctx):
    d = ctx.model("broken", config_text='{"chat_template": ')
    text, js = ctx.inspect(d)
    lines = chat_lines(text)
    check("unreadable" in lines[0] and "tokenizer_config.json" in lines[0], lines)
    check("tokenizer_config.json" in js["error"], js)


CASES = [case_exact, case_exact_gemma, case_markers, case_generic, case_none, case_broken, case_gguf, case_gguf_none]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    ctx = Ctx(args.smelt, args.workdir)
    os.makedirs(ctx.workdir, exist_ok=True)
    passed = failed = 0
    for case in CASES:
        name = case.__name__[len("case_"):]
        try:
            case(ctx)
            passed += 1
            print("ok", name)
        except (Failure, KeyError, json.JSONDecodeError) as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

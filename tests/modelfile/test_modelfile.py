#!/usr/bin/env python3
"""Tests of the ollama-modelfile format: a Modelfile beside a gguf-quant
export (Gguf=EXPORT:TYPE), or FROM a base plus ADAPTER for a GGUF LoRA,
with the model's chat template, stop tokens, SYSTEM, LICENSE and only the
sampling parameters a recipe sets; and the errors for references that
lead nowhere.

Usage:
    /usr/bin/python3 tests/modelfile/test_modelfile.py --smelt BUILD/core/smelt \\
        --workdir DIR [--render-tool BUILD/tests/chat-template/... ] [--case NAME]... [--list]

Every Modelfile is read back with ollama_parse.py, which reads it as
Ollama's own parser does (no escapes; only outer quotes removed), and the
stop tokens expected are worked out here from the model's own
tokenizer_config.json, generation_config.json and tokenizer.json, plus the
end-of-turn marker the family's chat format is known to use.

Prints "ok CASE" or "FAIL CASE: why" per case and "N passed, M failed";
the exit status is non-zero when a case failed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import ollama_parse  # noqa: E402

DEMO = os.path.join(ROOT, "data", "demo")

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Ctx:
    def __init__(self, smelt, workdir):
        self.smelt = os.path.abspath(smelt)
        self.workdir = os.path.abspath(workdir)
        build = os.path.dirname(os.path.dirname(self.smelt))
        self.env = dict(os.environ)
        self.env.setdefault("SMELT_PLUGIN_PATH", os.path.join(build, "plugins"))
        self.env["SMELT_PLUGIN_SYSTEM_PATH"] = ""

    def run(self, args, cwd):
        p = subprocess.run([self.smelt] + args, cwd=cwd, env=self.env, capture_output=True,
                           text=True, timeout=120)
        return p

    def model(self, d, config_edit=None, license_text=None):
        """A copy of the demo model and adapter in d; config_edit(dict)
        changes its tokenizer_config.json."""
        shutil.copytree(os.path.join(DEMO, "model"), os.path.join(d, "model"))
        shutil.copytree(os.path.join(DEMO, "adapter"), os.path.join(d, "adapter"))
        if config_edit:
            p = os.path.join(d, "model", "tokenizer_config.json")
            with open(p) as f:
                cfg = json.load(f)
            config_edit(cfg)
            with open(p, "w") as f:
                json.dump(cfg, f, indent=2)
        if license_text is not None:
            with open(os.path.join(d, "model", "LICENSE"), "w") as f:
                f.write(license_text)


def recipe(d, exports, destinations=("out",)):
    lines = ["[Recipe]", "Name=modelfile-test", "", "[Source]", "Model=model",
             "Adapters=adapter", ""]
    for dest in destinations:
        lines += ["[Destination %s]" % dest, "Plugin=localfs", "Path=%s" % dest, ""]
    for name, keys in exports:
        lines.append("[Export %s]" % name)
        lines += ["%s=%s" % kv for kv in keys]
        lines.append("")
    path = os.path.join(d, "r.smelt")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


GGUF = ("gguf", [("Format", "gguf-quant"), ("Destination", "out"), ("Types", "f16"),
                 ("Name", "demo"), ("Pre", "gpt-2")])


def modelfile_export(**keys):
    kv = [("Format", "ollama-modelfile"), ("Destination", "out")]
    kv += sorted(keys.items())
    return ("ollama", kv)


def parse_modelfile(path):
    with open(path) as f:
        text = f.read()
    try:
        return ollama_parse.parse(text), text
    except ollama_parse.ParseError as e:
        raise Failure("Ollama's parser would refuse %s: %s\n%s" % (path, e, text))


def values(cmds, name):
    return [v for n, v in cmds if n == name]


def one(cmds, name):
    v = values(cmds, name)
    check(len(v) == 1, "expected one %s, found %d" % (name, len(v)))
    return v[0]


def model_eos_tokens(model_dir):
    """The EOS strings the model itself declares, read independently."""
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(model_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    by_id = {t["id"]: t["content"] for t in tok.get("added_tokens", [])}
    vocab = tok["model"]["vocab"]
    if isinstance(vocab, dict):
        by_id.update({i: s for s, i in vocab.items() if i not in by_id})
    out = []
    eos = cfg.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    if eos:
        out.append(eos)
    gp = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gp):
        with open(gp) as f:
            ids = json.load(f).get("eos_token_id")
        for i in ids if isinstance(ids, list) else [ids] if ids is not None else []:
            out.append(by_id[i])
    return out


def export_ok(ctx, d, exports, destinations=("out",)):
    p = ctx.run(["run", recipe(d, exports, destinations)], d)
    check(p.returncode == 0, "smelt run failed (%d): %s" % (p.returncode, p.stderr))
    return p


def export_fails(ctx, d, exports, must_contain, destinations=("out",)):
    p = ctx.run(["run", recipe(d, exports, destinations)], d)
    check(p.returncode == 2, "expected exit 2, got %d: %s" % (p.returncode, p.stderr))
    for s in must_contain:
        check(s in p.stderr, "error does not mention %r: %s" % (s, p.stderr))
    for dest in destinations:
        out = os.path.join(d, dest)
        left = os.listdir(out) if os.path.isdir(out) else []
        check(not left, "files left in %s after a refused recipe: %s" % (dest, left))
    return p


# ---- cases ----------------------------------------------------------------

def case_chatml_beside_gguf(ctx, d):
    ctx.model(d)
    p = export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16")])
    cmds, text = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    frm = one(cmds, "model")
    check(frm == "./demo.F16.gguf", "FROM %r" % frm)
    check(os.path.isfile(os.path.join(d, "out", frm)), "FROM names no file: %s" % frm)
    tmpl = one(cmds, "template")
    check("<|im_start|>" in tmpl and "<|im_end|>" in tmpl and ".Messages" in tmpl or
          ".Prompt" in tmpl, "TEMPLATE is not a ChatML Go template:\n%s" % tmpl)
    stops = values(cmds, "stop")
    expected = ["<|im_end|>"] + model_eos_tokens(os.path.join(d, "model"))
    for s in expected:
        check(s in stops, "stop %r missing: %s" % (s, stops))
    check(len(stops) == len(set(stops)), "duplicate stops: %s" % stops)
    params = [n for n, _ in cmds if n not in ("model", "template", "system", "stop", "license")]
    check(params == [], "parameters the recipe did not set: %s" % params)
    check(values(cmds, "license") == [], "LICENSE without a license file")
    check("chatml" in text.lower(), "the Modelfile does not say which family matched:\n" + text)
    check("warning" not in p.stderr, "unexpected warning: " + p.stderr)


def case_type_optional_when_one(ctx, d):
    ctx.model(d)
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(one(cmds, "model") == "./demo.F16.gguf", "FROM")


def case_sampling_only_when_set(ctx, d):
    ctx.model(d)
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", Temperature="0.7", TopK="40",
                                              NumCtx="4096", Seed="3", MinP="0.05")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    got = {n: v for n, v in cmds if n not in ("model", "template", "system", "stop", "license")}
    check(got == {"temperature": "0.7", "top_k": "40", "num_ctx": "4096", "seed": "3",
                  "min_p": "0.05"}, "parameters: %s" % got)


def case_bad_sampling(ctx, d):
    ctx.model(d)
    export_fails(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", TopK="4.5")], ["TopK", "integer"])


def case_system_quoting(ctx, d):
    ctx.model(d)
    systems = ['You are "helpful".\nAnswer in "quotes" when asked."',
               'Line one\n"""x\nstill inside',
               '"Quoted" at the start and the end "too"',
               '# not a comment']
    for i, system in enumerate(systems):
        sub = os.path.join(d, str(i))
        os.makedirs(sub)
        ctx.model(sub)
        # a key-file value: newlines as \n escapes
        kf = system.replace("\\", "\\\\").replace("\n", "\\n")
        export_ok(ctx, sub, [GGUF, modelfile_export(Gguf="gguf:f16", System=kf)])
        cmds, text = parse_modelfile(os.path.join(sub, "out", "Modelfile"))
        check(one(cmds, "system") == system,
              "SYSTEM read back by Ollama's rules %r != %r\n%s" % (one(cmds, "system"), system, text))
    # a line ending with """ and another ending with a quote: neither
    # """...""" nor "..." can hold it, and Ollama has no escapes
    sub = os.path.join(d, "unquotable")
    os.makedirs(sub)
    ctx.model(sub)
    p = ctx.run(["run", recipe(sub, [GGUF, modelfile_export(Gguf="gguf:f16",
                                                           System='a\\n"""\\nb')])], sub)
    check(p.returncode != 0 and 'SYSTEM' in p.stderr and '"""' in p.stderr,
          "unquotable SYSTEM not refused clearly (%d): %s" % (p.returncode, p.stderr))
    left = os.listdir(os.path.join(sub, "out")) if os.path.isdir(os.path.join(sub, "out")) else []
    check(not left, "files left after the refusal: %s" % left)


def case_license(ctx, d):
    text = "Demo License\n\nYou may \"use\" it.\n"
    ctx.model(d, license_text=text)
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(one(cmds, "license") == text.rstrip(), "LICENSE %r" % values(cmds, "license"))
    # License=none leaves it out
    shutil.rmtree(os.path.join(d, "out"))
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", License="none")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(values(cmds, "license") == [], "License=none still wrote LICENSE")


def case_adapter(ctx, d):
    ctx.model(d)
    lora = ("lora", [("Format", "gguf-quant"), ("Destination", "out"), ("Types", "f16"),
                     ("Name", "demo"), ("Pre", "gpt-2"), ("Adapter", "true")])
    export_ok(ctx, d, [lora, modelfile_export(Adapter="lora:f16", Base="llama3.2:1b")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(one(cmds, "model") == "llama3.2:1b", "FROM %r" % one(cmds, "model"))
    adapter = one(cmds, "adapter")
    check(adapter.startswith("./") and adapter.endswith(".gguf"), "ADAPTER %r" % adapter)
    check(os.path.isfile(os.path.join(d, "out", adapter)), "ADAPTER names no file: " + adapter)
    check(values(cmds, "template"), "no TEMPLATE with an adapter")


def case_missing_export(ctx, d):
    ctx.model(d)
    export_fails(ctx, d, [GGUF, modelfile_export(Gguf="nothere:q4_k_m")], ["nothere", "Gguf"])


def case_missing_type(ctx, d):
    ctx.model(d)
    export_fails(ctx, d, [GGUF, modelfile_export(Gguf="gguf:q4_k_m")],
                 ["Q4_K_M", "demo.F16.gguf"])


def case_ambiguous_type(ctx, d):
    ctx.model(d)
    two = ("gguf", [("Format", "gguf-quant"), ("Destination", "out"), ("Types", "f16;q8_0"),
                    ("Name", "demo"), ("Pre", "gpt-2")])
    export_fails(ctx, d, [two, modelfile_export(Gguf="gguf")], ["several", "demo.Q8_0.gguf"])


def case_not_a_gguf_export(ctx, d):
    ctx.model(d)
    merged = ("merged", [("Format", "merged16"), ("Destination", "out")])
    export_fails(ctx, d, [merged, modelfile_export(Gguf="merged")], ["merged", "no GGUF"])


def case_other_destination(ctx, d):
    ctx.model(d)
    gguf = (GGUF[0], [kv if kv[0] != "Destination" else ("Destination", "elsewhere")
                      for kv in GGUF[1]])
    export_fails(ctx, d, [gguf, modelfile_export(Gguf="gguf:f16")], ["another destination"],
                 destinations=("out", "elsewhere"))


def case_options_conflict(ctx, d):
    ctx.model(d)
    export_fails(ctx, d, [GGUF, modelfile_export()], ["Gguf="])
    export_fails(ctx, d, [GGUF, modelfile_export(Gguf="gguf", Adapter="gguf", Base="x")], ["Gguf="])
    export_fails(ctx, d, [GGUF, modelfile_export(Adapter="gguf")], ["Base="])


def case_no_chat_template(ctx, d):
    ctx.model(d, config_edit=lambda c: c.pop("chat_template"))
    p = export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(values(cmds, "template") == [], "TEMPLATE for a model without a chat template")
    check("warning" in p.stderr and "chat template" in p.stderr,
          "no warning for a model without a chat template: " + p.stderr)
    for s in model_eos_tokens(os.path.join(d, "model")):
        check(s in values(cmds, "stop"), "EOS %r missing from stops" % s)


def case_unknown_template(ctx, d):
    weird = ("{% for m in messages %}### {{ m['role'] | upper }}:\n{{ m['content'] }}\n"
             "{% endfor %}{% if add_generation_prompt %}### ASSISTANT:\n{% endif %}")
    ctx.model(d, config_edit=lambda c: c.__setitem__("chat_template", weird))
    p = export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(values(cmds, "template"), "no fallback TEMPLATE for an unknown template")
    check("warning" in p.stderr, "no warning for an unknown template: " + p.stderr)


def case_template_chosen(ctx, d):
    ctx.model(d, config_edit=lambda c: c.__setitem__("chat_template", LLAMA3_TEMPLATE))
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", Template="chatml")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check("<|im_start|>" in one(cmds, "template"), "Template=chatml not used")
    shutil.rmtree(os.path.join(d, "out"))
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", Template="none")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    check(values(cmds, "template") == [], "Template=none wrote a TEMPLATE")
    shutil.rmtree(os.path.join(d, "out"))
    export_fails(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", Template="no-such-family")],
                 ["Template=no-such-family"])


def case_extra_stops(ctx, d):
    ctx.model(d)
    export_ok(ctx, d, [GGUF, modelfile_export(Gguf="gguf:f16", Stop="User:;<|im_end|>")])
    cmds, _ = parse_modelfile(os.path.join(d, "out", "Modelfile"))
    stops = values(cmds, "stop")
    check("User:" in stops and stops.count("<|im_end|>") == 1, "stops: %s" % stops)


def case_plan_and_summary(ctx, d):
    ctx.model(d)
    r = recipe(d, [GGUF, modelfile_export(Gguf="gguf:f16")])
    p = ctx.run(["run", "--dry-run", r], d)
    check(p.returncode == 0, "dry run failed: " + p.stderr)
    check("Modelfile" in p.stdout, "the plan does not show the Modelfile: " + p.stdout)
    check(not os.path.exists(os.path.join(d, "out", "Modelfile")), "dry run wrote the Modelfile")
    p = ctx.run(["run", r], d)
    check(p.returncode == 0, "run failed: " + p.stderr)
    check("Modelfile: FROM ./demo.F16.gguf, chat template chatml" in p.stdout,
          "the run does not say what the Modelfile holds: " + p.stdout)


CASES = {name[5:].replace("_", "-"): fn for name, fn in globals().items()
         if name.startswith("case_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--case", action="append")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print("\n".join(CASES))
        return 0
    ctx = Ctx(args.smelt, args.workdir)
    failed = 0
    for name in args.case or CASES:
        d = os.path.join(ctx.workdir, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        try:
            CASES[name](ctx, d)
            print("ok", name)
        except Failure as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
    print("%d passed, %d failed" % (len(CASES if not args.case else args.case) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

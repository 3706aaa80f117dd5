#!/usr/bin/python3
"""Bad input to the gguf-quant format: each case must fail with a clear
error naming the file and the problem, exit non-zero, and leave no file in
the output folder (not even a partial one under a temporary name).

    test_gguf_errors.py --smelt SMELT --workdir DIR
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
import gen_tiny_model as gen  # noqa: E402


def recipe(path, model, out, types="f16;q8_0", extra=""):
    source = ""
    if extra.startswith("adapters="):
        source, extra = "Adapters=" + extra[len("adapters="):] + "\n", ""
    with open(path, "w") as f:
        f.write(f"""[Source]
Model={model}
{source}
[Destination d]
Plugin=localfs
Path={out}

[Export g]
Format=gguf-quant
Types={types}
Name=broken
{extra}
""")


def fresh_model(work, name, family="llama"):
    base = os.path.join(work, "base-" + family)
    if not os.path.isdir(base):
        arch.generate(base, family, seed=3)
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(base, "model"), d)
    return d


def edit_json(path, fn):
    with open(path) as f:
        obj = json.load(f)
    fn(obj)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def drop_tensor(model, name):
    path = os.path.join(model, "model.safetensors")
    header, _ = gen.read_safetensors_header(path)
    names = [n for n in header if n != name]
    assert len(names) == len(header) - 1, name
    tensors = gen.read_safetensors(path, names)
    entries = []
    for n in names:
        dtype, arr = tensors[n]
        entries.append(gen.entry_from_array(n, dtype, arr))
    gen.write_safetensors(path, entries)


def case_unsupported_arch(work):
    m = fresh_model(work, "unsupported")
    edit_json(os.path.join(m, "config.json"),
              lambda c: c.update(architectures=["MambaForCausalLM"], model_type="mamba"))
    return m, "", ["config.json", "MambaForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM",
                   "Gemma2ForCausalLM", "Phi3ForCausalLM"]


def case_missing_tokenizer(work):
    m = fresh_model(work, "no-tokenizer")
    for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json"):
        if os.path.exists(os.path.join(m, f)):
            os.unlink(os.path.join(m, f))
    return m, "", ["tokenizer"]


def case_vocab_too_big(work):
    """tokenizer.json has more tokens than the embedding has rows."""
    base = os.path.join(work, "base-small-vocab")
    if not os.path.isdir(base):
        arch.generate(base, "llama", seed=4, vocab=320)
    m = os.path.join(work, "vocab-mismatch")
    shutil.rmtree(m, ignore_errors=True)
    shutil.copytree(os.path.join(base, "model"), m)
    os.unlink(os.path.join(m, "tokenizer.model"))
    demo = os.path.join(HERE, "..", "..", "data", "demo", "model")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(demo, f), os.path.join(m, f))
    n_tok = len(json.load(open(os.path.join(m, "tokenizer.json")))["model"]["vocab"])
    assert n_tok > 320
    return m, "", ["tokenizer.json", "320"]


def case_missing_tensor(work):
    m = fresh_model(work, "missing-tensor")
    drop_tensor(m, "model.layers.1.mlp.down_proj.weight")
    return m, "", ["model.layers.1.mlp.down_proj.weight"]


def case_bad_shape(work):
    m = fresh_model(work, "bad-shape")
    edit_json(os.path.join(m, "config.json"), lambda c: c.update(num_attention_heads=3))
    return m, "", ["o_proj", "3 heads"]


def case_f16_overflow(work):
    """A weight beyond fp16's range, found mid-stream: the files already
    open must go too."""
    m = fresh_model(work, "overflow")
    path = os.path.join(m, "model.safetensors")
    header, _ = gen.read_safetensors_header(path)
    names = list(header)
    tensors = gen.read_safetensors(path, names)
    name = "model.layers.1.mlp.up_proj.weight"
    dtype, arr = tensors[name]
    f = gen.storage_to_f32(arr, dtype).copy()
    f.flat[7] = 70000.0
    tensors[name] = (dtype, gen.to_storage(f, dtype))
    gen.write_safetensors(path, [gen.entry_from_array(n, tensors[n][0], tensors[n][1]) for n in names])
    return m, "types=q8_0;f16", [name, "float16", "65504", "bf16"]


def case_bad_type(work):
    m = fresh_model(work, "bad-type")
    return m, "types=q4_k_m;iq2_xs", ["Types", "iq2_xs", "importance matrix"]


def case_unknown_type(work):
    m = fresh_model(work, "unknown-type")
    return m, "types=q9_z", ["Types", "q9_z", "q4_k_m"]


def case_bad_name(work):
    m = fresh_model(work, "bad-name")
    return m, "name=../escape", ["Name", "../escape"]


def case_bad_size(work):
    m = fresh_model(work, "bad-size")
    return m, "MaxFileSize=lots", ["MaxFileSize", "lots"]


#: set by main(): the smelt binary, which makes the GGUF files below
SMELT = None


def gguf_source(work, types, extra=""):
    """A GGUF file smelt wrote from the llama family's model: {TYPE: path}."""
    m = fresh_model(work, "gguf-src")
    out = os.path.join(work, "gguf-src-out-" + types.replace(";", "-"))
    shutil.rmtree(out, ignore_errors=True)
    path = os.path.join(work, "gguf-src.smelt")
    recipe(path, m, out, types, extra)
    subprocess.run([SMELT, "run", path, "--progress=none"], check=True)
    return {t.upper(): os.path.join(out, "broken.%s.gguf" % t.upper()) for t in types.split(";")}


def case_gguf_quantized(work):
    """llama-quantize refuses to requantize by default; so does smelt."""
    src = gguf_source(work, "q8_0")["Q8_0"]
    return src, "types=q4_k_m", ["broken.Q8_0.gguf", "already quantized", "q8_0"]


def case_gguf_auto(work):
    src = gguf_source(work, "f16")["F16"]
    return src, "types=auto", ["Types", "auto", "broken.F16.gguf"]


def case_gguf_truncated(work):
    src = gguf_source(work, "f16")["F16"]
    cut = os.path.join(work, "cut.F16.gguf")
    with open(src, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[:len(data) - 1000])
    return cut, "types=q4_k_m", ["cut.F16.gguf", "not a valid GGUF"]


def case_gguf_split(work):
    src = gguf_source(work, "f16", "MaxFileSize=300KB")["F16"]
    parts = sorted(f for f in os.listdir(os.path.dirname(src)) if "-00001-of-" in f)
    assert len(parts) == 1, os.listdir(os.path.dirname(src))
    return os.path.join(os.path.dirname(src), parts[0]), "types=q4_k_m", [
        parts[0], "split", "llama-gguf-split"]


def case_gguf_adapter(work):
    """Adapters merge into the Hugging Face model, not into GGUF names."""
    src = gguf_source(work, "f16")["F16"]
    base = os.path.join(work, "base-llama")
    return src, "adapters=" + os.path.join(base, "adapter"), ["broken.F16.gguf", "adapter",
                                                              "Hugging Face model"]


def case_gguf_other_format(work):
    """Only gguf-quant reads a GGUF model: merged16 must refuse it, and the
    gguf-quant export of the same recipe must not leave its files."""
    src = gguf_source(work, "f16")["F16"]
    return src, "\n[Export m]\nFormat=merged16\nDestination=d\n", [
        "export “m”", "broken.F16.gguf", "GGUF file", "Hugging Face model directory"]


CASES = [case_unsupported_arch, case_missing_tokenizer, case_vocab_too_big,
         case_missing_tensor, case_bad_shape, case_f16_overflow, case_bad_type, case_unknown_type, case_bad_name,
         case_bad_size, case_gguf_quantized, case_gguf_auto, case_gguf_truncated,
         case_gguf_split, case_gguf_adapter, case_gguf_other_format]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    global SMELT
    SMELT = args.smelt
    os.makedirs(args.workdir, exist_ok=True)
    failures = 0
    for fn in CASES:
        model, extra, needles = fn(args.workdir)
        types = "f16;q8_0"
        if extra.startswith("types="):
            types, extra = extra[len("types="):], ""
        elif extra.startswith("name="):
            extra = "Name=" + extra[len("name="):]
        out = os.path.join(args.workdir, "out-" + fn.__name__)
        shutil.rmtree(out, ignore_errors=True)
        path = os.path.join(args.workdir, fn.__name__ + ".smelt")
        recipe(path, model, out, types, extra.replace("name=", "Name="))
        if "Name=../escape" in extra:
            # Name is a recipe key too; the stem given twice would be an error
            with open(path) as f:
                text = f.read().replace("Name=broken\n", "")
            with open(path, "w") as f:
                f.write(text)
        p = subprocess.run([args.smelt, "run", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        problems = []
        if p.returncode == 0:
            problems.append("exit status 0")
        missing = [n for n in needles if n not in p.stderr]
        if missing:
            problems.append(f"error does not mention {missing}")
        if "Traceback" in p.stderr or "CRITICAL" in p.stderr:
            problems.append("crash or critical warning")
        left = []
        for root, _, files in os.walk(out):
            left += [os.path.join(root, f) for f in files]
        if left:
            problems.append(f"files left: {left}")
        err = p.stderr.strip().splitlines()
        last = err[-1] if err else ""
        if problems:
            failures += 1
            print(f"FAIL {fn.__name__}: {'; '.join(problems)}\n     stderr: {p.stderr.strip()}")
        else:
            print(f"ok   {fn.__name__} (exit {p.returncode}): {last}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

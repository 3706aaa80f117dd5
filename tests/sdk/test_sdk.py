#!/usr/bin/env python3
"""The plugin SDK, as a third party uses it.

Installs the build into a staging root (meson install --destdir), which
must then work as a prefix of its own: the staged smelt finds its library
and its plugins from where it lies, with no environment pointing there
(and the staged smelt-gtk its typelib). Builds doc/examples/checksums out of the source tree with its Makefile and
nothing but pkg-config pointed at that root, puts it on SMELT_PLUGIN_PATH
and runs the installed smelt on a recipe that uses it. Then:

- the sums it wrote equal hashlib's SHA-256 of the tensors' bytes, read
  here from the merged16 export of the same run and, for the tensors no
  adapter touches, from the base model's own files;
- the guide's Meson snippet builds the same plugin, installing it into
  the staged plugin directory;
- `smelt plugins checksums --json` shows its options as recipe keys, and
  a bad option value is refused by `smelt validate` with the key's name;
- the same plugin built against headers announcing a newer plugin ABI is
  refused, by `smelt plugins` and by `smelt run` (exit status non-zero,
  nothing written), with a message saying what to rebuild.

Usage:
    test_sdk.py --build-root B --prefix P --libdir L --bindir D \\
        --example DIR --demo DATA/demo --workdir W --gtk yes|no

Prints "ok CASE" / "FAIL CASE: why"; exit status 1 when a case failed.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys


def run(cmd, env=None, cwd=None, check=True):
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), p.returncode,
                                                        p.stdout, p.stderr))
    return p


def safetensors_tensors(path):
    """name -> (dtype, shape, bytes) of a safetensors file, read by hand."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[a:b])
    return out


def model_tensors(folder):
    out = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            out.update(safetensors_tensors(os.path.join(folder, fn)))
    return out


def adapted_modules(adapter_dir):
    """Module paths the adapter's LoRA pairs change (PEFT key names)."""
    keys = safetensors_tensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    mods = set()
    for k in keys:
        m = re.match(r"(?:base_model\.model\.)?(.*)\.lora_[AB](?:\.\w+)?\.weight$", k)
        if m:
            mods.add(m.group(1))
    return mods


class Sdk:
    def __init__(self, args):
        self.a = args
        self.w = os.path.abspath(args.workdir)
        self.stage = os.path.join(self.w, "stage")
        root = lambda p: self.stage + os.path.abspath(p)  # noqa: E731
        self.prefix = root(args.prefix)
        self.libdir = root(os.path.join(args.prefix, args.libdir))
        self.bindir = root(os.path.join(args.prefix, args.bindir))
        self.pcdir = os.path.join(self.libdir, "pkgconfig")

    def pc_env(self):
        env = dict(os.environ)
        # only the staged smelt, plus the system's own .pc files (GLib)
        env["PKG_CONFIG_PATH"] = self.pcdir
        env.pop("PKG_CONFIG_LIBDIR", None)
        return env

    def pkg_config(self, *args):
        return run(["pkg-config", *args], env=self.pc_env()).stdout.strip()

    def smelt_env(self, plugin_path):
        # nothing points the staged smelt at its library, plugins or
        # typelib: a moved prefix must find its own (RUNPATH $ORIGIN, and
        # the plugin directory next to the loaded libsmelt)
        env = dict(os.environ)
        for var in ("LD_LIBRARY_PATH", "SMELT_PLUGIN_SYSTEM_PATH", "GI_TYPELIB_PATH"):
            env.pop(var, None)
        env["SMELT_PLUGIN_PATH"] = plugin_path
        env["OPENBLAS_NUM_THREADS"] = "1"
        return env

    def smelt(self, plugin_path, *args, check=True):
        return run([os.path.join(self.bindir, "smelt"), *args],
                   env=self.smelt_env(plugin_path), check=check)

    def build_example(self, name, extra_cflags=""):
        """Copies the example out of the tree and builds it with make."""
        src = os.path.join(self.w, name)
        shutil.copytree(self.a.example, src)
        cflags = "-O2 -g -Wall -Wextra -Wno-unused-parameter -Werror " + extra_cflags
        run(["make", "-s", "CFLAGS=" + cflags], env=self.pc_env(), cwd=src)
        plugins = os.path.join(self.w, name + "-plugins")
        run(["make", "-s", "install", "PLUGINDIR=" + plugins], env=self.pc_env(), cwd=src)
        return plugins

    def recipe(self, name, out, extra=""):
        path = os.path.join(self.w, name + ".smelt")
        with open(path, "w") as f:
            f.write("[Source]\nModel=%s/model\nAdapters=%s/adapter\n\n"
                    "[Destination out]\nPlugin=localfs\nPath=%s\n\n"
                    "[Export sums]\nFormat=checksums\n%s\n"
                    "[Export merged]\nFormat=merged16\n"
                    % (self.a.demo, self.a.demo, out, extra))
        return path

    # --- cases ---

    def case_install(self):
        shutil.rmtree(self.w, ignore_errors=True)
        os.makedirs(self.w)
        run(["meson", "install", "-C", self.a.build_root, "--no-rebuild", "--quiet",
             "--destdir", self.stage])
        for pc in ("smelt-1.pc", "smelt-plugin-1.pc"):
            assert os.path.exists(os.path.join(self.pcdir, pc)), "%s not installed" % pc
        cflags = self.pkg_config("--cflags", "smelt-plugin-1")
        inc = [f[2:] for f in cflags.split() if f.startswith("-I")]
        assert any(os.path.abspath(i).startswith(self.stage) for i in inc), \
            "pkg-config --cflags smelt-plugin-1 does not point into the staged prefix: " + cflags
        src = os.path.dirname(os.path.dirname(os.path.abspath(self.a.example)))
        assert not any(os.path.abspath(i).startswith(src) for i in inc), \
            "the cflags point into the source tree: " + cflags
        share = os.path.join(self.prefix, "share")
        for f in ("man/man1/smelt.1", "bash-completion/completions/smelt",
                  "mime/packages/smelt.xml", "doc/smelt/writing-plugins.md",
                  "doc/smelt/examples/checksums/smelt-checksums.c"):
            assert os.path.exists(os.path.join(share, f)), "%s not installed" % f
        plugindir = self.pkg_config("--variable=plugindir", "smelt-plugin-1")
        assert os.path.isdir(plugindir) and plugindir.startswith(self.stage), plugindir
        assert os.path.exists(os.path.join(plugindir, "localfs.plugin")), plugindir

    def case_relocated(self):
        """The staged prefix runs as it is, from its new place."""
        p = run(["ldd", os.path.join(self.bindir, "smelt")], env=self.smelt_env(""))
        lib = re.search(r"libsmelt-1\.so\.\d+ => (\S+)", p.stdout)
        assert lib, "ldd finds no libsmelt for the staged smelt:\n" + p.stdout
        assert os.path.realpath(lib.group(1)).startswith(os.path.realpath(self.stage)), \
            "the staged smelt loads %s, not the staged library" % lib.group(1)
        p = self.smelt("", "plugins", "--json")
        plugins = json.loads(p.stdout)
        plugindir = os.path.realpath(self.pkg_config("--variable=plugindir", "smelt-plugin-1"))
        names = {x["name"] for x in plugins}
        assert {"localfs", "merged16", "gguf-quant"} <= names, names
        for x in plugins:
            assert os.path.realpath(x["filename"]).startswith(plugindir + os.sep), \
                "%s comes from %s, not the staged plugin directory" % (x["name"], x["filename"])
            assert x["state"] != "error", x
        gtk = os.path.join(self.bindir, "smelt-gtk")
        # installed with the typelib it runs on (data/meson.build)
        assert os.path.exists(gtk) == (self.a.gtk == "yes"), \
            "smelt-gtk installed: %s, expected: %s" % (os.path.exists(gtk), self.a.gtk)
        if self.a.gtk == "yes":
            env = self.smelt_env("")
            env.pop("DISPLAY", None)
            env.pop("WAYLAND_DISPLAY", None)
            p = run([gtk, "--help"], env=env, check=False)
            assert p.returncode == 0 and "smelt" in p.stdout.lower(), \
                "the staged smelt-gtk does not start (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr)

    def case_build_and_list(self):
        self.plugins = self.build_example("checksums")
        p = self.smelt(self.plugins, "plugins", "checksums", "--json")
        info = json.loads(p.stdout)
        assert info["state"] == "loaded", info
        feats = {f["name"]: f for f in info["features"]}
        assert feats["checksums"]["kind"] == "format", feats
        keys = {o["key"]: o for o in feats["checksums"]["options"]}
        assert set(keys) == {"DType", "FileName"}, keys
        assert keys["FileName"]["default"] == "tensors.sha256", keys
        assert "auto" in keys["DType"]["type"] and "f32" in keys["DType"]["type"], keys

    def case_run(self):
        out = os.path.join(self.w, "out")
        p = self.smelt(self.plugins, "run", self.recipe("run", out), "--progress=plain")
        assert "tensor checksums" in p.stdout, p.stdout
        merged = model_tensors(out)
        base = model_tensors(os.path.join(self.a.demo, "model"))
        with open(os.path.join(out, "tensors.sha256")) as f:
            lines = [ln.split("  ", 1) for ln in f.read().splitlines()]
        sums = {name: h for h, name in lines}
        assert set(sums) == set(merged), (sorted(sums), sorted(merged))
        for name, (_, _, data) in merged.items():
            assert sums[name] == hashlib.sha256(data).hexdigest(), name
        touched = adapted_modules(os.path.join(self.a.demo, "adapter"))
        assert touched, "the demo adapter changes nothing?"
        untouched = [n for n in base if n.rsplit(".", 1)[0] not in touched]
        assert untouched and len(untouched) < len(base), untouched
        compared = 0
        for name in untouched:
            dtype, _, data = base[name]
            if dtype == merged[name][0]:
                assert sums[name] == hashlib.sha256(data).hexdigest(), name
                compared += 1
        assert compared, "no untouched tensor in the base's type to compare with"
        for name in base:
            if name.rsplit(".", 1)[0] in touched:
                assert sums[name] != hashlib.sha256(base[name][2]).hexdigest(), \
                    "%s: the adapter's change is missing" % name
        with open(os.path.join(out, "tensors.sha256.json")) as f:
            doc = json.load(f)
        assert doc["format"] == "smelt-tensor-checksums/1", doc.keys()
        for t in doc["tensors"]:
            dtype, shape, _ = merged[t["name"]]
            assert t["sha256"] == sums[t["name"]] and t["shape"] == shape, t
            assert t["dtype"].upper() == dtype.upper(), (t, dtype)
        assert not [f for f in os.listdir(out) if f.endswith(".partial")], os.listdir(out)

    def case_meson_snippet(self):
        """The guide's Meson build of the example, as printed there."""
        guide = os.path.join(os.path.dirname(os.path.dirname(self.a.example)), "writing-plugins.md")
        with open(guide) as f:
            blocks = re.findall(r"```meson\n(.*?)```", f.read(), re.S)
        assert len(blocks) == 1, "%s: %d meson blocks" % (guide, len(blocks))
        src = os.path.join(self.w, "checksums-meson")
        shutil.copytree(self.a.example, src)
        with open(os.path.join(src, "meson.build"), "w") as f:
            f.write("project('smelt-checksums', 'c')\n" + blocks[0])
        build = os.path.join(src, "_build")
        env = self.pc_env()
        run(["meson", "setup", "--werror", build, src], env=env)
        run(["meson", "compile", "-C", build], env=env)
        plugins = os.path.join(self.w, "checksums-meson-plugins")
        os.makedirs(plugins)
        shutil.copy(os.path.join(build, "libsmelt-checksums.so"), plugins)
        shutil.copy(os.path.join(src, "checksums.plugin"), plugins)
        # where meson would install it: the staged smelt's plugin directory
        p = run(["meson", "introspect", "--installed", build], env=env)
        dirs = {os.path.dirname(d) for d in json.loads(p.stdout).values()}
        want = self.pkg_config("--variable=plugindir", "smelt-plugin-1")
        assert {os.path.realpath(d) for d in dirs} == {os.path.realpath(want)}, (dirs, want)
        info = json.loads(self.smelt(plugins, "plugins", "checksums", "--json").stdout)
        assert info["state"] == "loaded", info

    def case_bad_option(self):
        out = os.path.join(self.w, "out-bad")
        p = self.smelt(self.plugins, "validate", self.recipe("bad", out, "FileName=../escape\n"),
                       check=False)
        assert p.returncode != 0, p.stdout
        assert "FileName=../escape" in p.stderr and "plain file name" in p.stderr, p.stderr
        assert not os.path.exists(out), "validate wrote something"

    def case_newer_abi(self):
        # the headers of a smelt one plugin-ABI minor ahead of the staged one
        inc = os.path.join(self.w, "newer-include")
        staged = self.pkg_config("--variable=includedir", "smelt-1")
        shutil.copytree(os.path.join(staged, "smelt-1"), inc)
        vh = os.path.join(inc, "smelt", "smelt-version.h")
        with open(vh) as f:
            text = f.read()
        minor = int(re.search(r"#define SMELT_PLUGIN_ABI_MINOR \((\d+)\)", text).group(1))
        major = int(re.search(r"#define SMELT_PLUGIN_ABI_MAJOR \((\d+)\)", text).group(1))
        text = text.replace("SMELT_PLUGIN_ABI_MINOR (%d)" % minor,
                            "SMELT_PLUGIN_ABI_MINOR (%d)" % (minor + 1))
        with open(vh, "w") as f:
            f.write(text)
        plugins = self.build_example("checksums-newer", "-I" + inc)
        want = "ABI %d.%d" % (major, minor + 1)
        p = self.smelt(plugins, "plugins", "checksums", "--json", check=False)
        assert p.returncode != 0, "smelt plugins exits 0 for a refused plugin"
        info = json.loads(p.stdout)
        assert info["state"] == "error", info
        for s in (want, "libsmelt-checksums.so", "rebuild the plugin", "smelt-plugin-1"):
            assert s in info["error"], (s, info["error"])
        out = os.path.join(self.w, "out-newer")
        p = self.smelt(plugins, "run", self.recipe("newer", out), check=False)
        assert p.returncode != 0, p.stdout
        assert want in p.stderr and "rebuild the plugin" in p.stderr, p.stderr
        assert not os.path.exists(out) or not os.listdir(out), os.listdir(out)


def main():
    ap = argparse.ArgumentParser()
    for opt in ("build-root", "prefix", "libdir", "bindir", "example", "demo", "workdir", "gtk"):
        ap.add_argument("--" + opt, required=True)
    args = ap.parse_args()
    args.demo = os.path.abspath(args.demo)
    args.example = os.path.abspath(args.example)
    sdk = Sdk(args)
    failed = 0
    # in order: each case builds on the previous ones
    if sys.flags.optimize:
        print("FAIL: run without -O / PYTHONOPTIMIZE: the checks are asserts")
        return 1
    for case in ("install", "relocated", "build_and_list", "run", "meson_snippet", "bad_option", "newer_abi"):
        try:
            getattr(sdk, "case_" + case)()
            print("ok", case)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL %s: %s" % (case, e))
            if case in ("install", "relocated", "build_and_list"):
                break
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

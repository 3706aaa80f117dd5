#!/usr/bin/env python3
"""data/smelt.bash-completion, driven the way bash drives it.

For each command line, a plain `bash --norc --noprofile` sources the
completion file, sets COMP_LINE, COMP_POINT, COMP_WORDS and COMP_CWORD
as bash's readline would (words split at blanks and at the characters of
COMP_WORDBREAKS that matter here, = and :), calls the function `complete`
registered for smelt, and prints COMPREPLY. The expected candidates come
from the smelt binary itself (`smelt plugins --json`, `smelt CMD --help`)
or from the test's own files, never from the completion script.

Usage: test_completion.py --smelt BIN --completion FILE --recipe DEMO.smelt
       --workdir DIR   (SMELT_PLUGIN_PATH must point at the plugins)
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

BREAKS = "=:"


def comp_words(line):
    """Splits like readline: blanks separate, = and : are words."""
    words, cur = [], ""
    for ch in line:
        if ch.isspace():
            if cur:
                words.append(cur)
            cur = ""
        elif ch in BREAKS:
            if cur and cur[-1] not in BREAKS:
                words.append(cur)
                cur = ""
            cur += ch
        else:
            if cur and cur[-1] in BREAKS:
                words.append(cur)
                cur = ""
            cur += ch
    if cur or not words or line[-1:].isspace():
        words.append(cur)
    return words


def complete(args, line, cwd=None):
    words = comp_words(line)
    script = """
set -u
source "$COMPLETION"
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
func=$(complete -p smelt | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')
"$func" smelt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]:-}"
printf '%s\\n' "${COMPREPLY[@]}"
"""
    env = dict(os.environ, COMPLETION=os.path.abspath(args.completion), SMELT=args.smelt)
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", line] + words,
                       capture_output=True, text=True, env=env, cwd=cwd)
    if p.returncode != 0 or p.stderr:
        raise AssertionError("%r: exit %d, stderr %r" % (line, p.returncode, p.stderr))
    return [w for w in p.stdout.split("\n") if w]


def smelt_json(args, *a):
    return json.loads(subprocess.run([args.smelt, *a], capture_output=True, text=True,
                                     check=True).stdout)


def help_options(args, cmd):
    out = subprocess.run([args.smelt, cmd, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*=?)", out, re.M)) - {"--help"}


class Cases:
    def __init__(self, args):
        self.a = args
        self.recipe = os.path.abspath(args.recipe)
        plugins = smelt_json(args, "plugins", "--json")
        self.plugins = {p["name"] for p in plugins}
        self.formats = {f["name"] for p in plugins for f in p["features"] if f["kind"] == "format"}
        self.dests = {f["name"] for p in plugins for f in p["features"] if f["kind"] == "destination"}

    def keys(self, feature):
        for p in smelt_json(self.a, "plugins", "--json"):
            for f in p["features"]:
                if f["name"] == feature:
                    info = smelt_json(self.a, "plugins", p["name"], "--json")
                    for g in info["features"]:
                        if g["name"] == feature:
                            return {o["key"] for o in g["options"]}
        raise AssertionError("no feature " + feature)

    def test_subcommands(self):
        got = set(complete(self.a, "smelt "))
        want = {"run", "export", "validate", "plugins", "inspect", "version"}
        assert want <= got, got
        assert complete(self.a, "smelt va") == ["validate"], complete(self.a, "smelt va")

    def test_run_options(self):
        got = set(complete(self.a, "smelt run --"))
        want = help_options(self.a, "run")
        assert want and want <= got, (want, got)
        assert got <= want | {"--help"}, got - want
        assert set(complete(self.a, "smelt export --")) >= help_options(self.a, "export")

    def test_recipe_files(self):
        d = os.path.join(self.a.workdir, "files")
        os.makedirs(os.path.join(d, "sub"))
        for f in ("a.smelt", "b.txt", "c.smelt.bak"):
            open(os.path.join(d, f), "w").close()
        got = set(complete(self.a, "smelt run ", cwd=d))
        assert got == {"a.smelt", "sub"}, got
        got = set(complete(self.a, "smelt validate a", cwd=d))
        assert got == {"a.smelt"}, got
        # after the recipe, no second recipe
        assert complete(self.a, "smelt run a.smelt ", cwd=d) == [], "offered a second recipe"

    def test_inspect_paths(self):
        d = os.path.join(self.a.workdir, "inspect")
        os.makedirs(os.path.join(d, "model"))
        for f in ("m.gguf", "w.safetensors", "notes.md"):
            open(os.path.join(d, f), "w").close()
        got = set(complete(self.a, "smelt inspect ", cwd=d))
        assert got == {"model", "m.gguf", "w.safetensors"}, got
        got = set(complete(self.a, "smelt export --model ", cwd=d))
        assert got == {"model", "m.gguf"}, got
        got = set(complete(self.a, "smelt export --adapter=", cwd=d))
        assert got == {"model"}, got

    def test_plugin_names(self):
        got = set(complete(self.a, "smelt plugins "))
        assert got == self.plugins, (got, self.plugins)

    def test_formats(self):
        got = set(complete(self.a, "smelt export --format "))
        assert got == self.formats, (got, self.formats)
        assert not got & self.dests, got & self.dests
        got = set(complete(self.a, "smelt export --format=gg"))
        assert got == {f for f in self.formats if f.startswith("gg")}, got

    def test_progress(self):
        want = {"auto", "bar", "plain", "json", "none"}
        assert set(complete(self.a, "smelt run x.smelt --progress=")) == want
        assert set(complete(self.a, "smelt run x.smelt --progress p")) == {"plain"}

    def test_set_groups(self):
        with open(self.recipe) as f:
            groups = set(re.findall(r"^\[(?:Destination|Export) ([^\]]+)\]", f.read(), re.M))
        assert groups, self.recipe
        got = set(complete(self.a, "smelt run %s --set " % self.recipe))
        assert got == {g + "." for g in groups} | {"Source.", "Recipe."}, got

    def test_set_keys(self):
        with open(self.recipe) as f:
            text = f.read()
        m = re.search(r"^\[Export (\S+)\]\nFormat=(\S+)", text, re.M)
        export, fmt = m.group(1), m.group(2)
        got = set(complete(self.a, "smelt run %s --set %s." % (self.recipe, export)))
        want = {"%s.%s=" % (export, k) for k in self.keys(fmt) | {"Format", "Destination"}}
        assert got == want, (got ^ want)
        m = re.search(r"^\[Destination (\S+)\]\nPlugin=(\S+)", text, re.M)
        dest, plugin = m.group(1), m.group(2)
        got = set(complete(self.a, "smelt validate %s --set=%s." % (self.recipe, dest)))
        want = {"%s.%s=" % (dest, k) for k in self.keys(plugin) | {"Plugin"}}
        assert got == want, (got ^ want)
        got = set(complete(self.a, "smelt run %s --set Source.Ad" % self.recipe))
        assert got == {"Source.Adapters=", "Source.AdapterWeights="}, got

    def test_set_choice_values(self):
        with open(self.recipe) as f:
            m = re.search(r"^\[Export (\S+)\]\nFormat=merged16", f.read(), re.M)
        export = m.group(1)
        info = smelt_json(self.a, "plugins", "merged16", "--json")
        dtype = [o for o in info["features"][0]["options"] if o["key"] == "DType"][0]
        want = {"%s.DType=%s" % (export, v) for v in dtype["type"].split("|")}
        line = "smelt run %s --set %s.DType=" % (self.recipe, export)
        # bash's current word is "=": the values come bare
        got = set(complete(self.a, line))
        assert {"%s.DType=%s" % (export, g) for g in got} == want, got
        got = set(complete(self.a, line + "b"))
        assert got == {v.split("=")[1] for v in want if v.split("=")[1].startswith("b")}, got

    def test_export_set(self):
        got = set(complete(self.a, "smelt export --format merged16 --set "))
        assert got == {k + "=" for k in self.keys("merged16")}, got

    def test_no_smelt(self):
        env_smelt = self.a.smelt
        self.a.smelt = os.path.join(self.a.workdir, "no-such-smelt")
        try:
            assert complete(self.a, "smelt plugins ") == []
        finally:
            self.a.smelt = env_smelt


def main():
    ap = argparse.ArgumentParser()
    for opt in ("smelt", "completion", "recipe", "workdir"):
        ap.add_argument("--" + opt, required=True)
    args = ap.parse_args()
    args.smelt = os.path.abspath(args.smelt)
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    cases = Cases(args)
    failed = 0
    for name in sorted(n for n in dir(cases) if n.startswith("test_")):
        try:
            getattr(cases, name)()
            print("ok", name)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL %s: %s" % (name, e))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

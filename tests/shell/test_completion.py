#!/usr/bin/env python3
"""data/smelt.bash-completion, driven the way bash drives it.

Two ways:
- the completion function called directly: a plain `bash --norc
  --noprofile` sources the completion file, sets COMP_LINE, COMP_POINT,
  COMP_WORDS and COMP_CWORD as bash would (words split at blanks outside
  quotes, and at the characters of COMP_WORDBREAKS that matter here, = and
  :, tried both with and without them), calls the function `complete`
  registered for smelt, and prints COMPREPLY;
- a real interactive bash on a pseudo-terminal, with no bash-completion
  package: keys are typed with TAB, and the line readline ends up with is
  read back through a `bind -x` key. This checks what the user sees:
  quoting, the / after folders, no space after "NAME." or "Key=".

The expected candidates come from the smelt binary itself (`smelt plugins
--json`, `smelt CMD --help`), from the recipe's key lists in
core/smelt-recipe.c or from the test's own files, never from the
completion script. Nothing may be printed on standard error.

Usage: test_completion.py --smelt BIN --completion FILE --recipe DEMO.smelt
       --recipe-source core/smelt-recipe.c --workdir DIR
       (SMELT_PLUGIN_PATH must point at the plugins)
"""

import argparse
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time


def comp_words(line, breaks):
    """Splits like bash: blanks separate words, and so does each run of
    COMP_WORDBREAKS characters; quoted text is never split."""
    words, cur, quote = [], "", None
    kind = None  # of the last character of cur: "b" a break, "w" a word
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch == "\\" and i + 1 < len(line):
            if kind == "b":
                words.append(cur)
                cur = ""
            cur += line[i:i + 2]
            kind = "w"
            i += 1
        elif ch.isspace():
            if cur:
                words.append(cur)
            cur, kind = "", None
        elif ch in breaks:
            if kind == "w":
                words.append(cur)
                cur = ""
            cur += ch
            kind = "b"
        else:
            if kind == "b":
                words.append(cur)
                cur = ""
            if ch in "\"'":
                quote = ch
            cur += ch
            kind = "w"
        i += 1
    if cur or not words or line[-1:].isspace():
        words.append(cur)
    return words


class Harness:
    """Calls the completion function with the variables bash would set."""

    SCRIPT = r"""
set -u
source "$COMPLETION"
COMP_WORDBREAKS=$BREAKS
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
func=$(complete -p smelt | sed -n 's/.*-F \([^ ]*\).*/\1/p')
"$func" smelt "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]:-}"
printf '%s\n' "${COMPREPLY[@]}"
"""

    def __init__(self, args):
        self.a = args

    def __call__(self, line, cwd=None, breaks=" \t\n\"'><=;|&(:"):
        words = comp_words(line, "=:" if "=" in breaks else ":" if ":" in breaks else "")
        env = dict(os.environ, COMPLETION=self.a.completion, SMELT=self.a.smelt, BREAKS=breaks)
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c", self.SCRIPT, "bash", line]
                           + words, capture_output=True, text=True, env=env, cwd=cwd)
        if p.returncode != 0 or p.stderr:
            raise AssertionError("%r: exit %d, stderr %r" % (line, p.returncode, p.stderr))
        return [w for w in p.stdout.split("\n") if w]


class Readline:
    """An interactive bash on a pseudo-terminal: keys go in, and the line
    (READLINE_LINE) comes back through a bind -x key, C-x C-p."""

    # What the completion function prints on stderr goes to a file
    # (readline itself writes to the terminal there too).
    RC = r"""
PS1='$ '
PS2=
unset PROMPT_COMMAND HISTFILE
bind 'set bell-style none'
source "$COMPLETION"
_smelt_test_func=$(complete -p smelt | sed -n 's/.*-F \([^ ]*\).*/\1/p')
_logged() { "$_smelt_test_func" "$@" 2>>'@ERRORS@'; }
complete -F _logged smelt
_line() { printf '%s' "$READLINE_LINE" > '@OUT@.tmp'; mv '@OUT@.tmp' '@OUT@'; }
bind -x '"\C-x\C-p": _line'
"""

    def __init__(self, args, cwd):
        self.dir = tempfile.mkdtemp(prefix="smelt-readline-", dir=args.workdir)
        self.out = os.path.join(self.dir, "line")
        self.errors = os.path.join(self.dir, "stderr")
        rc = os.path.join(self.dir, "rc")
        with open(rc, "w") as f:
            f.write(self.RC.replace("@ERRORS@", self.errors).replace("@OUT@", self.out))
        env = dict(os.environ, TERM="dumb", COMPLETION=args.completion, SMELT=args.smelt)
        env.pop("BASH_ENV", None)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execvpe("bash", ["bash", "--noprofile", "--rcfile", rc, "-i"], env)
        self.log = b""

    def _pump(self, secs):
        r, _, _ = select.select([self.fd], [], [], secs)
        if r:
            try:
                self.log += os.read(self.fd, 65536)
            except OSError:
                pass

    def line(self, keys, timeout=30):
        """The line after typing keys (\t for TAB)."""
        os.write(self.fd, keys.encode() + b"\x18\x10")
        end = time.time() + timeout
        while not os.path.exists(self.out):
            if time.time() > end:
                raise AssertionError("bash did not answer to %r: %r" % (keys, self.log[-300:]))
            self._pump(0.02)
        with open(self.out) as f:
            text = f.read()
        os.unlink(self.out)
        os.write(self.fd, b"\x01\x0b")  # C-a C-k: an empty line again
        return text

    def stderr(self):
        if not os.path.exists(self.errors):
            return ""
        with open(self.errors) as f:
            return f.read()

    def close(self):
        os.write(self.fd, b"exit\n")
        end = time.time() + 10
        while time.time() < end:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            self._pump(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def smelt_json(args, *a):
    return json.loads(subprocess.run([args.smelt, *a], capture_output=True, text=True,
                                     check=True).stdout)


def help_options(args, cmd):
    out = subprocess.run([args.smelt, cmd, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*=?)", out, re.M)) - {"--help"}


def core_keys(source):
    """{array name: keys} of the fixed recipe keys in smelt-recipe.c."""
    with open(source) as f:
        text = f.read()
    out = {}
    for m in re.finditer(r"static const char \* const (\w+)\[\] = \{([^}]*)\}", text):
        out[m.group(1)] = set(re.findall(r'"([^"]+)"', m.group(2)))
    for name in ("recipe_keys", "source_keys", "destination_reserved", "export_reserved"):
        assert out.get(name), "no %s in %s" % (name, source)
    return out


def touch(*paths):
    for p in paths:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").close()


class Cases:
    def __init__(self, args):
        self.a = args
        self.complete = Harness(args)
        self.recipe = os.path.abspath(args.recipe)
        with open(self.recipe) as f:
            self.recipe_text = f.read()
        self.core = core_keys(args.recipe_source)
        plugins = smelt_json(args, "plugins", "--json")
        self.plugins = {p["name"] for p in plugins}
        self.formats = {f["name"] for p in plugins for f in p["features"] if f["kind"] == "format"}
        self.dests = {f["name"] for p in plugins for f in p["features"]
                      if f["kind"] == "destination"}
        self.options = {}
        for p in plugins:
            for f in smelt_json(args, "plugins", p["name"], "--json")["features"]:
                self.options[f["name"]] = {o["key"]: o["type"] for o in f["options"]}
        # files: the test's own
        w = args.workdir
        self.files = os.path.join(w, "files")
        touch(*(os.path.join(self.files, f) for f in ("a.smelt", "b.txt", "c.smelt.bak",
                                                      "sub/x")))
        self.spaced = os.path.join(w, "sp dir", "my recipe.smelt")
        os.makedirs(os.path.dirname(self.spaced))
        shutil.copy(self.recipe, self.spaced)
        touch(os.path.join(w, "sp dir", "notes.txt"))
        self.inspect = os.path.join(w, "inspect")
        touch(*(os.path.join(self.inspect, f) for f in ("m.gguf", "w.safetensors", "notes.md",
                                                        "model/config.json")))

    def groups(self, kind):
        """{name: plugin or format} of a kind of group in the demo recipe."""
        return dict(re.findall(r"^\[%s (\S+)\]\n(?:Plugin|Format)=(\S+)" % kind,
                               self.recipe_text, re.M))

    def choices(self, feature, key):
        return self.options[feature][key].split("|")

    # -- the function called directly --

    def test_subcommands(self):
        got = set(self.complete("smelt "))
        want = {"run", "export", "validate", "plugins", "inspect", "version"}
        assert want <= got, got
        assert self.complete("smelt va") == ["validate"], self.complete("smelt va")

    def test_options(self):
        for cmd in ("run", "export", "validate", "plugins", "inspect"):
            got = set(self.complete("smelt %s --" % cmd))
            want = help_options(self.a, cmd)
            assert want and got == want | {"--help"}, (cmd, got ^ want)
        got = set(self.complete("smelt export --d"))
        assert got == {o for o in help_options(self.a, "export") if o.startswith("--d")}, got

    def test_recipe_files(self):
        got = set(self.complete("smelt run ", cwd=self.files))
        assert got == {"a.smelt", "sub"}, got
        got = set(self.complete("smelt validate a", cwd=self.files))
        assert got == {"a.smelt"}, got
        # after the recipe, no second recipe
        assert self.complete("smelt run a.smelt ", cwd=self.files) == [], "a second recipe"
        assert self.complete("smelt run -n a.smelt ", cwd=self.files) == []
        # an option's value is no recipe: the recipe is still to come
        got = set(self.complete("smelt run --jobs 2 ", cwd=self.files))
        assert got == {"a.smelt", "sub"}, got
        # quoted and escaped blanks
        w = self.a.workdir
        assert self.complete('smelt run "sp dir/my', cwd=w) == ["sp dir/my recipe.smelt"]
        assert self.complete("smelt run sp\\ dir/", cwd=w) == ["sp dir/my recipe.smelt"]

    def test_inspect_paths(self):
        d = self.inspect
        got = set(self.complete("smelt inspect ", cwd=d))
        assert got == {"model", "m.gguf", "w.safetensors"}, got
        assert self.complete("smelt inspect m.gguf ", cwd=d) == [], "a second path"
        got = set(self.complete("smelt export --model ", cwd=d))
        assert got == {"model", "m.gguf"}, got
        got = set(self.complete("smelt export --adapter=", cwd=d))
        assert got == {"model"}, got
        got = set(self.complete("smelt export --original m", cwd=d))
        assert got == {"model"}, got

    def test_plugin_names(self):
        got = set(self.complete("smelt plugins "))
        assert got == self.plugins, (got, self.plugins)
        assert self.complete("smelt plugins x ") == []

    def test_formats(self):
        got = set(self.complete("smelt export --format "))
        assert got == self.formats, (got, self.formats)
        assert not got & self.dests, got & self.dests
        got = set(self.complete("smelt export -f gg"))
        assert got == {f for f in self.formats if f.startswith("gg")}, got

    def test_progress(self):
        want = {"auto", "bar", "plain", "json", "none"}
        assert set(self.complete("smelt run x.smelt --progress=")) == want
        assert set(self.complete("smelt run x.smelt --progress p")) == {"plain"}

    def test_to(self):
        got = set(self.complete("smelt export --to ", cwd=self.inspect))
        assert got == {"model", "hf://"}, got
        # bash's word is what follows the ":"
        assert self.complete("smelt export --to hf:") == ["//"]
        assert self.complete("smelt export --to=h") == ["hf://"]

    def test_set_groups(self):
        groups = set(self.groups("Destination")) | set(self.groups("Export"))
        assert groups, self.recipe
        want = {g + "." for g in groups} | {"Source.", "Recipe."}
        got = set(self.complete("smelt run %s --set " % self.recipe))
        assert got == want, got ^ want
        # the recipe given quoted, with a blank in its path
        w = self.a.workdir
        got = set(self.complete('smelt validate "sp dir/my recipe.smelt" -s ', cwd=w))
        assert got == want, got ^ want
        got = set(self.complete("smelt validate sp\\ dir/my\\ recipe.smelt --set=", cwd=w))
        assert got == want, got ^ want
        # no recipe, or an unreadable one: only the fixed groups
        assert set(self.complete("smelt run --set ")) == {"Source.", "Recipe."}
        assert set(self.complete("smelt run /nonexistent.smelt --set ")) == {"Source.", "Recipe."}

    def test_set_keys(self):
        for export, fmt in self.groups("Export").items():
            got = set(self.complete("smelt run %s --set %s." % (self.recipe, export)))
            want = {"%s.%s=" % (export, k)
                    for k in set(self.options[fmt]) | self.core["export_reserved"]}
            assert got == want, (export, got ^ want)
        for dest, plugin in self.groups("Destination").items():
            got = set(self.complete("smelt validate %s --set=%s." % (self.recipe, dest)))
            want = {"%s.%s=" % (dest, k)
                    for k in set(self.options[plugin]) | self.core["destination_reserved"]}
            assert got == want, (dest, got ^ want)
        for group, array in (("Source", "source_keys"), ("Recipe", "recipe_keys")):
            got = set(self.complete("smelt run %s --set %s." % (self.recipe, group)))
            want = {"%s.%s=" % (group, k) for k in self.core[array]}
            assert got == want, (group, got ^ want)

    def test_set_values(self):
        exports, dests = self.groups("Export"), self.groups("Destination")
        export = [e for e, f in exports.items() if f == "merged16"][0]
        want = self.choices("merged16", "DType")
        line = "smelt run %s --set %s.DType=" % (self.recipe, export)
        # bash's current word is "=": the values come bare
        assert set(self.complete(line)) == set(want), self.complete(line)
        got = set(self.complete(line + "b"))
        assert got == {v for v in want if v.startswith("b")}, got
        got = set(self.complete("smelt run %s --set %s.Format=" % (self.recipe, export)))
        assert got == self.formats, got
        got = set(self.complete("smelt run %s --set %s.Destination=" % (self.recipe, export)))
        assert got == set(dests), got
        dest = list(dests)[0]
        got = set(self.complete("smelt run %s --set %s.Plugin=" % (self.recipe, dest)))
        assert got == self.dests, got
        got = set(self.complete("smelt run %s --set Source.Model=" % self.recipe,
                                cwd=self.inspect))
        assert got == {"model", "m.gguf"}, got
        got = set(self.complete("smelt run %s --set Source.MergeInto=" % self.recipe))
        assert got == {"dequantized", "original16"}, got

    def test_export_set(self):
        got = set(self.complete("smelt export --format merged16 --set "))
        assert got == {k + "=" for k in self.options["merged16"]}, got
        got = set(self.complete("smelt export --format=bnb4 -s QuantType="))
        assert got == set(self.choices("bnb4", "QuantType")), got
        assert self.complete("smelt export --set ") == [], "keys without a format"

    def test_dest_set(self):
        got = set(self.complete("smelt export --to out --dest-set "))
        assert got == {k + "=" for k in self.options["localfs"]}, got
        got = set(self.complete("smelt export --to=hf://me/x --dest-set "))
        assert got == {k + "=" for k in self.options["hf-hub"]}, got
        got = set(self.complete("smelt export -t hf://me/x --dest-set=RepoType="))
        assert got == set(self.choices("hf-hub", "RepoType")), got

    def test_wordbreaks(self):
        """Without = and : in COMP_WORDBREAKS, bash's word is the whole
        word, and so are the candidates."""
        nobreak = " \t\n\"'><;|&("
        got = set(self.complete("smelt run x --progress=pl", breaks=nobreak))
        assert got == {"--progress=plain"}, got
        line = "smelt run %s --set=Source.MergeInto=d" % self.recipe
        assert self.complete(line, breaks=nobreak) == ["--set=Source.MergeInto=dequantized"]
        got = set(self.complete("smelt export --to=hf", breaks=nobreak))
        assert got == {"--to=hf://"}, got
        got = set(self.complete("smelt export --model=m.", cwd=self.inspect, breaks=nobreak))
        assert got == {"--model=m.gguf"}, got

    def test_no_smelt(self):
        real = self.a.smelt
        self.a.smelt = os.path.join(self.a.workdir, "no-such-smelt")
        try:
            assert self.complete("smelt plugins ") == []
            assert self.complete("smelt run %s --set gguf." % self.recipe) == []
            # files need no smelt
            assert set(self.complete("smelt run ", cwd=self.files)) == {"a.smelt", "sub"}
        finally:
            self.a.smelt = real

    # -- a real interactive bash --

    def test_readline(self):
        w = self.a.workdir
        shutil.copy(self.recipe, os.path.join(w, "demo.smelt"))
        os.makedirs(os.path.join(w, "model"), exist_ok=True)
        exports = self.groups("Export")
        merged = [e for e, f in exports.items() if f == "merged16"][0]
        b16 = [v for v in self.choices("merged16", "DType") if v.startswith("b")]
        assert len(b16) == 1, b16
        gg = sorted(f for f in self.formats if f.startswith("gg"))
        assert len(gg) == 1, gg
        cases = [
            ("smelt va\t", "smelt validate "),
            ('smelt run "sp d\t\t', "smelt run sp\\ dir/my\\ recipe.smelt "),
            ("smelt run sp\\ d\t\t", "smelt run sp\\ dir/my\\ recipe.smelt "),
            ("smelt run demo.smelt --set %s.DT\t" % merged,
             "smelt run demo.smelt --set %s.DType=" % merged),
            ("smelt run demo.smelt --set=%s.DType=b\t" % merged,
             "smelt run demo.smelt --set=%s.DType=%s " % (merged, b16[0])),
            ("smelt run demo.smelt --set Source.Model=mo\t",
             "smelt run demo.smelt --set Source.Model=model/"),
            ("smelt export --to h\t", "smelt export --to hf://"),
            ("smelt export --model=mo\t", "smelt export --model=model/"),
            ("smelt export --adapter=sp\t", "smelt export --adapter=sp\\ dir/"),
            ("smelt export --progress=js\t", "smelt export --progress=json "),
            ("smelt export --format gg\t", "smelt export --format %s " % gg[0]),
        ]
        sessions = [("", cases),
                    # = and : no word breaks: the whole word is replaced
                    ("COMP_WORDBREAKS=${COMP_WORDBREAKS//[=:]}\n", cases[3:])]
        bad = []
        for setup, cs in sessions:
            rl = Readline(self.a, w)
            try:
                if setup:
                    os.write(rl.fd, setup.encode())
                for keys, want in cs:
                    got = rl.line(keys)
                    if got != want:
                        bad.append("%s%r gave %r, not %r" % (setup and "(no breaks) ", keys,
                                                             got, want))
                err = rl.stderr()
                if err:
                    bad.append("stderr: %r" % err)
            finally:
                rl.close()
        assert not bad, "; ".join(bad)


def main():
    ap = argparse.ArgumentParser()
    for opt in ("smelt", "completion", "recipe", "recipe-source", "workdir"):
        ap.add_argument("--" + opt, required=True)
    args = ap.parse_args()
    args.smelt = os.path.abspath(args.smelt)
    args.completion = os.path.abspath(args.completion)
    args.workdir = os.path.abspath(args.workdir)
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

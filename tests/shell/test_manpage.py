#!/usr/bin/env python3
"""doc/smelt.1 against the smelt binary it documents.

- groff reads it without a warning (-ww, every warning category);
- its .TH names the version `smelt version` prints;
- every subcommand `smelt --help` lists has a subsection under COMMANDS,
  and every subsection is a subcommand smelt knows;
- in each subsection, the options described (the heading lines of its
  .TP paragraphs) are exactly those `smelt COMMAND --help` prints (--help
  aside), with the same short forms: an option added to the code without
  documentation, or documented but gone, fails here; an option named in
  the prose must exist in some command;
- the SYNOPSIS has a line per subcommand, naming only options it has.

Usage: test_manpage.py --smelt BIN --man doc/smelt.1
"""

import argparse
import re
import subprocess
import sys

LONG = r"(?<![\w-])(--[a-z][a-z0-9-]*)"
SHORT = r"(?<![\w-])-([a-zA-Z])(?![\w-])"


def run(smelt, *args):
    return subprocess.run([smelt, *args], capture_output=True, text=True).stdout


def commands(smelt):
    block = run(smelt, "--help").split("Commands:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z-]*)\b", block, re.M)


def help_options(smelt, cmd):
    """{--long: short letter or None} from `smelt CMD --help`."""
    out = run(smelt, cmd, "--help")
    opts = {m.group(2): m.group(1)
            for m in re.finditer(r"^  (?:-(\w), )?(--[a-z][a-z0-9-]*)", out, re.M)}
    opts.pop("--help", None)
    return opts


def plain(text):
    """The roff source with escapes for - and font changes undone."""
    return re.sub(r"\\f[BIRP]", "", text.replace("\\-", "-"))


def man_sections(text):
    """{subcommand: ({--long: [short letters]} of the .TP headings,
    set of every --long in the subsection)} from the COMMANDS section."""
    body = text.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    out = {}
    for part in re.split(r"^\.SS ", body, flags=re.M)[1:]:
        title, rest = part.split("\n", 1)
        name = title.strip('"').split()[0]
        entries = {}
        for heading in re.findall(r"^\.TP\n(.*)$", rest, re.M):
            for long in re.findall(LONG, heading):
                entries[long] = re.findall(SHORT, heading)
        out[name] = (entries, set(re.findall(LONG, rest)))
    return out


def synopsis(text):
    """{subcommand: set of --long} from the .SY blocks of the SYNOPSIS."""
    body = text.split(".SH SYNOPSIS", 1)[1].split("\n.SH ", 1)[0]
    out = {}
    for block in re.findall(r"^\.SY (.*?)^\.YS", body, re.M | re.S):
        words = block.split("\n", 1)[0].strip('"').split()
        if len(words) > 1:
            out[words[1]] = set(re.findall(LONG, block))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--man", required=True)
    args = ap.parse_args()
    problems = []

    p = subprocess.run(["groff", "-man", "-ww", "-z", "-K", "utf8", args.man],
                       capture_output=True, text=True)
    if p.returncode != 0 or p.stderr.strip():
        problems.append("groff -ww: %s" % (p.stderr.strip() or "exit %d" % p.returncode))

    with open(args.man, encoding="utf-8") as f:
        text = plain(f.read())

    version = run(args.smelt, "version").split()[1]
    th = re.search(r"^\.TH .*\"smelt ([^\"]+)\"", text, re.M)
    if not th or th.group(1) != version:
        problems.append(".TH says smelt %s, the binary is %s"
                        % (th.group(1) if th else "(no version)", version))

    cmds = commands(args.smelt)
    if len(cmds) < 5:
        problems.append("smelt --help lists only %s" % cmds)
    code = {c: help_options(args.smelt, c) for c in cmds}
    # the prose may name these too: smelt --help, smelt --version
    every = set().union(*code.values())
    for o in ("--help", "--version"):
        if subprocess.run([args.smelt, o], capture_output=True).returncode == 0:
            every.add(o)
    sections = man_sections(text)
    for c in cmds:
        if c not in sections:
            problems.append("smelt %s has no subsection under COMMANDS" % c)
    for c in sections:
        if c not in cmds:
            problems.append("the man page documents '%s', which smelt --help does not list" % c)
    for c in cmds:
        if c not in sections:
            continue
        entries, mentioned = sections[c]
        for o in sorted(set(code[c]) - set(entries)):
            problems.append("smelt %s %s is not described in the man page" % (c, o))
        for o in sorted(set(entries) - set(code[c])):
            problems.append("the man page describes smelt %s %s, which smelt %s --help lacks"
                            % (c, o, c))
        for o in sorted(set(entries) & set(code[c])):
            want = [code[c][o]] if code[c][o] else []
            if entries[o] != want:
                problems.append("smelt %s %s: the man page gives short form %s, --help %s"
                                % (c, o, entries[o] or "none", want or "none"))
        for o in sorted(mentioned - every):
            problems.append("the man page's %s section names %s, which no command has" % (c, o))
        print("%s: %d options described" % (c, len(set(code[c]) & set(entries))))

    syn = synopsis(text)
    for c in cmds:
        if c not in syn:
            problems.append("the SYNOPSIS has no line for smelt %s" % c)
        else:
            for o in sorted(syn[c] - set(code[c])):
                problems.append("the SYNOPSIS gives smelt %s %s, which it lacks" % (c, o))
    for c in syn:
        if c not in cmds:
            problems.append("the SYNOPSIS gives 'smelt %s', which smelt --help does not list" % c)

    for pr in problems:
        print("FAIL", pr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

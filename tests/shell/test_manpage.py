#!/usr/bin/env python3
"""doc/smelt.1 against the smelt binary it documents.

- groff reads it without a warning (-ww, every warning category);
- every subcommand `smelt --help` lists has a subsection under COMMANDS,
  and every subsection is a subcommand smelt knows;
- in each subsection, the long options are exactly those that
  `smelt COMMAND --help` prints (--help aside): an option added to the
  code without documentation, or documented but gone, fails here.

Usage: test_manpage.py --smelt BIN --man doc/smelt.1
"""

import argparse
import re
import subprocess
import sys


def commands(smelt):
    out = subprocess.run([smelt, "--help"], capture_output=True, text=True).stdout
    block = out.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z-]*)\b", block, re.M)


def help_options(smelt, cmd):
    out = subprocess.run([smelt, cmd, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", out, re.M)) - {"--help"}


def man_sections(path):
    """{subcommand: set of long options} from the COMMANDS section."""
    with open(path) as f:
        text = f.read()
    text = text.replace("\\-", "-")
    text = re.sub(r"\\f[BIRP]", "", text)
    body = text.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    out = {}
    for part in re.split(r"^\.SS ", body, flags=re.M)[1:]:
        title, rest = part.split("\n", 1)
        name = title.strip('"').split()[0]
        out[name] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
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

    cmds = commands(args.smelt)
    if len(cmds) < 5:
        problems.append("smelt --help lists only %s" % cmds)
    sections = man_sections(args.man)
    for c in cmds:
        if c not in sections:
            problems.append("smelt %s has no subsection under COMMANDS" % c)
    for c in sections:
        if c not in cmds:
            problems.append("the man page documents '%s', which smelt --help does not list" % c)
    for c in cmds:
        if c not in sections:
            continue
        code, doc = help_options(args.smelt, c), sections[c]
        for o in sorted(code - doc):
            problems.append("smelt %s %s is not in the man page" % (c, o))
        for o in sorted(doc - code):
            # options of other commands may be named in the prose ("as for run")
            if not any(o in help_options(args.smelt, other) for other in cmds):
                problems.append("the man page's %s section names %s, which no command has" % (c, o))
        print("%s: %d options documented" % (c, len(code & doc)))
    for pr in problems:
        print("FAIL", pr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

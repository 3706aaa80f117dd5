#!/usr/bin/env python3
"""Keeps doc/recipe-format.md's key tables equal to what the plugins say.

Every `[Destination]`/`[Export]` key of a plugin is a GObject property of
its feature (nick = key, blurb = meaning); `smelt plugins --json` lists
them. The tables in doc/recipe-format.md between

    <!-- BEGIN keys FEATURE -->  and  <!-- END keys FEATURE -->

are generated from that output, so the reference cannot drift from the
code. The prose around them is written by hand.

    export SMELT_PLUGIN_PATH=build/plugins SMELT_PLUGIN_SYSTEM_PATH=
    doc/gen-recipe-format.py build/core/smelt doc/recipe-format.md --write
    doc/gen-recipe-format.py build/core/smelt doc/recipe-format.md --check \\
        --recipe-source core/smelt-recipe.c

--check exits 1, printing a diff, when a table is stale, a feature of the
JSON has no table, a table names a feature no plugin provides, or (with
--recipe-source) a key of the [Recipe]/[Source]/[Destination]/[Export]
groups that the recipe parser knows is not documented.
"""

import argparse
import difflib
import json
import re
import subprocess
import sys

BEGIN = re.compile(r"^<!-- BEGIN keys (\S+) -->$")
END = "<!-- END keys -->"


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def table(feature):
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for o in feature.get("options", []):
        default = o["default"]
        rows.append("| `%s` | %s | %s | %s |" % (
            o["key"], cell(o["type"]), "`%s`" % cell(default) if default else "",
            cell(o["description"])))
    if len(rows) == 2:
        rows.append("| (none) | | | |")
    return rows


def smelt_json(smelt, *args):
    p = subprocess.run([smelt, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("%s %s failed: %s" % (smelt, " ".join(args), p.stderr.strip()))
    return json.loads(p.stdout)


def features(plugins):
    out = {}
    for p in plugins:
        for f in p.get("features", []):
            out[f["name"]] = f
    return out


def regenerate(lines, feats, optional=()):
    """Returns (new lines, feature names with a table)."""
    out, seen, i = [], [], 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        start = i
        while i < len(lines) and lines[i] != END:
            i += 1
        if i == len(lines):
            raise SystemExit("recipe-format.md: no %r after the table of %s" % (END, name))
        seen.append(name)
        if name in feats:
            out.extend(table(feats[name]))
        elif name in optional:
            out.extend(lines[start:i])
        else:
            out.append("(no plugin provides %s)" % name)
        out.append(END)
        i += 1
    return out, seen


# smelt-recipe.c's key lists, and the group whose row documents them
KEY_ARRAYS = {"recipe_keys": "[Recipe]", "source_keys": "[Source]",
              "destination_reserved": "[Destination NAME]", "export_reserved": "[Export NAME]"}


def core_keys(source):
    """(group, key) for each key smelt-recipe.c accepts, from its key
    lists; every list must be found, or the check would pass on nothing."""
    with open(source) as f:
        text = f.read()
    keys = []
    for array, group in KEY_ARRAYS.items():
        m = re.search(r"static const char \* const %s\[\] = \{([^}]*)\}" % array, text)
        if not m:
            raise SystemExit("%s: no key list %s[] (renamed? update KEY_ARRAYS)" % (source, array))
        found = re.findall(r'"([^"]+)"', m.group(1))
        if not found:
            raise SystemExit("%s: key list %s[] is empty" % (source, array))
        keys += [(group, k) for k in found]
    return keys


def group_rows(lines):
    """The Groups table of the page: group -> its row's text."""
    rows = {}
    for ln in lines:
        m = re.match(r"\| `(\[[^]]+\])` \|(.*)\|\s*$", ln)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("smelt", help="the smelt binary whose plugins to document")
    ap.add_argument("doc")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    ap.add_argument("--recipe-source")
    ap.add_argument("--optional", action="append", default=[],
                    help="a feature this build lacks (hf-hub without libsoup): its table is kept")
    args = ap.parse_args()

    plugins = smelt_json(args.smelt, "plugins", "--json")
    broken = [p["name"] for p in plugins if p.get("state") != "loaded"]
    if broken:
        raise SystemExit("plugins that did not load: %s" % ", ".join(broken))
    # the list has no options: ask for each plugin
    feats = features([smelt_json(args.smelt, "plugins", p["name"], "--json") for p in plugins])
    with open(args.doc) as f:
        old = f.read().splitlines()
    new, seen = regenerate(old, feats, args.optional)

    problems = []
    problems += ["%s: no table for feature %s (add <!-- BEGIN keys %s --> … %s)"
                 % (args.doc, n, n, END) for n in sorted(set(feats) - set(seen))]
    problems += ["%s: a table for %s, which no plugin provides" % (args.doc, n)
                 for n in seen if n not in feats and n not in args.optional]
    if args.recipe_source:
        rows = group_rows(old)
        problems += ["%s: key %s of %s (%s) is not in that group's row of the Groups table"
                     % (args.doc, k, g, args.recipe_source)
                     for g, k in core_keys(args.recipe_source) if "`%s`" % k not in rows.get(g, "")]

    if args.write:
        if new != old:
            with open(args.doc, "w") as f:
                f.write("\n".join(new) + "\n")
            print("updated", args.doc)
    elif new != old:
        sys.stdout.writelines(difflib.unified_diff(
            [ln + "\n" for ln in old], [ln + "\n" for ln in new], args.doc, args.doc + " (generated)"))
        problems.append("%s is stale: run doc/gen-recipe-format.py --write (see its header)" % args.doc)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

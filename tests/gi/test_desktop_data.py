#!/usr/bin/python3
"""data/smelt-mime.xml and data/org.smelt.SmeltGtk.desktop, as the desktop
reads them.

Compiles the MIME definition with update-mime-database into a private
XDG data directory, then asks GIO (in a child process that sees only that
directory and the system's) what type `*.smelt` files have and which
application opens them: it must be application/x-smelt-recipe, a kind of
text/plain, opened by the desktop entry, whose command is smelt-gtk and
whose id matches the application id of doc/examples/smelt-gtk. (Which
application is the default is left to mimeinfo.cache, which distributions
make with update-desktop-database on installation.)
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
TYPE = "application/x-smelt-recipe"

CHILD = r"""
import sys
import gi
gi.require_version("Gio", "2.0")
from gi.repository import Gio
recipe, desktop_id = sys.argv[1], sys.argv[2]
guessed, uncertain = Gio.content_type_guess(recipe, None)
print("guess", guessed)
print("text", Gio.content_type_is_a(guessed, "text/plain"))
info = Gio.DesktopAppInfo.new(desktop_id)
print("found", info.get_id() if info else "none")
print("types", ",".join(info.get_supported_types()) if info else "")
print("exec", info.get_executable() if info else "")
print("cmdline", info.get_commandline() if info else "")
"""


from gi_check import check, fail  # noqa: E402,F401


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--app", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)

    mime_xml = os.path.join(args.data, "smelt-mime.xml")
    desktop = os.path.join(args.data, "org.smelt.SmeltGtk.desktop")
    root = ET.parse(mime_xml).getroot()
    types = root.findall(NS + "mime-type")
    check([t.get("type") for t in types] == [TYPE], f"types {[t.get('type') for t in types]}")
    check([g.get("pattern") for g in types[0].findall(NS + "glob")] == ["*.smelt"], "glob is not *.smelt")

    # the application id the desktop entry is named after is the example's
    with open(args.app) as f:
        app_id = re.search(r'^APP_ID = "([^"]+)"', f.read(), re.M).group(1)
    check(os.path.basename(desktop) == app_id + ".desktop", f"{desktop} is not named {app_id}.desktop")

    share = os.path.join(args.workdir, "share")
    os.makedirs(os.path.join(share, "mime", "packages"))
    os.makedirs(os.path.join(share, "applications"))
    shutil.copy(mime_xml, os.path.join(share, "mime", "packages", "smelt.xml"))
    shutil.copy(desktop, os.path.join(share, "applications"))
    # GIO lists an application only if its command is on PATH, as
    # `meson install` puts smelt-gtk in $bindir
    bindir = os.path.join(args.workdir, "bin")
    os.makedirs(bindir)
    os.symlink(os.path.abspath(args.app), os.path.join(bindir, "smelt-gtk"))
    env = dict(os.environ, XDG_DATA_HOME=share, XDG_DATA_DIRS="/usr/share",
               XDG_CONFIG_HOME=os.path.join(args.workdir, "config"), XDG_CONFIG_DIRS="/nonexistent",
               PATH=bindir + os.pathsep + os.environ.get("PATH", "/usr/bin"))
    subprocess.run(["update-mime-database", os.path.join(share, "mime")], check=True, env=env)

    out = subprocess.run([sys.executable, "-c", CHILD, args.recipe, app_id + ".desktop"],
                         env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    check(seen["guess"] == TYPE, f"GIO guesses {seen['guess']} for {args.recipe}")
    check(seen["text"] == "True", f"{TYPE} is not a kind of text/plain")
    check(seen["found"] == app_id + ".desktop", f"GIO does not find {app_id}.desktop by its id")
    check(TYPE in seen["types"].split(","), f"{app_id}.desktop does not open {TYPE}")

    check(seen["exec"] == "smelt-gtk", f"Exec runs {seen['exec']}")
    check(re.search(r"%[fF]", seen["cmdline"]) is not None, "Exec takes no file")
    print("ok")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The GTK 4 example (doc/examples/smelt-gtk) on a virtual X server.

Starts Xvfb, opens data/recipes/demo.smelt in the example with every
destination redirected into the work directory, lets its --autorun hook
run the `lora` export through the window (progress bar, result label),
and has it save a screenshot when the run ends; runs the `merged` export
again and has it press Cancel once the export is under way (the window
must report the cancel, exit 1 and leave no file). Then checks, without
smelt: the application exited 0; the adapter it wrote is a well-formed
safetensors file holding exactly the demo adapter's tensors with their
shapes, with a PEFT config beside it; the other destinations received
nothing (only the chosen export ran); no *.partial is left; and the
screenshot is a PNG of the window's size that is not blank.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import gi

gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf  # noqa: E402

from gi_check import check, fail, read_safetensors_header  # noqa: E402


def start_xvfb():
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp", "-noreset"], pass_fds=[w],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        display = f.readline().strip()
    check(display, "Xvfb did not start")
    return proc, ":" + display


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    out = {d: os.path.join(args.workdir, d) for d in ("merged-out", "lora-out", "gguf-out")}
    shot = os.path.join(args.workdir, "smelt-gtk.png")
    cancelled_out = {d: os.path.join(args.workdir, "cancelled", d) for d in out}
    xvfb, display = start_xvfb()
    try:
        runtime = tempfile.mkdtemp(prefix="smelt-gtk-run-")
        env = dict(os.environ, DISPLAY=display, GDK_BACKEND="x11",
                   GSK_RENDERER="cairo",           # no GL on a virtual server
                   GTK_A11Y="none", NO_AT_BRIDGE="1",
                   XDG_RUNTIME_DIR=runtime, GSETTINGS_BACKEND="memory")
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)

        def run_app(extra, dests):
            cmd = [sys.executable, args.app] + extra
            for dest, path in dests.items():
                cmd += ["--set", f"{dest}.Path={path}"]
            cmd.append(args.recipe)
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            print(p.stdout, end="")
            print(p.stderr, end="", file=sys.stderr)
            return p

        proc = run_app(["--autorun", "lora", "--screenshot", shot], out)
        check(proc.returncode == 0, f"smelt-gtk exited {proc.returncode}")
        # the Cancel button, pressed once the merged export is under way
        cancel = run_app(["--autorun", "merged", "--autocancel"], cancelled_out)
        check(cancel.returncode == 1, f"smelt-gtk exited {cancel.returncode} after a cancel")
        check("Cancelled" in cancel.stdout, "the window does not report the cancel")
        left = [os.path.join(r, f) for d in cancelled_out.values() for r, _, fs in os.walk(d) for f in fs]
        check(not left, f"files left behind after the cancel: {left}")
        shutil.rmtree(runtime, ignore_errors=True)
    finally:
        xvfb.terminate()
        xvfb.wait()

    check("Done" in proc.stdout, "the window does not report success")
    lora = out["lora-out"]
    files = sorted(os.listdir(lora))
    print("lora-out:", files)
    check(not [f for f in files if f.endswith(".partial")], f"partial files: {files}")
    written = read_safetensors_header(os.path.join(lora, "adapter_model.safetensors"))
    source = read_safetensors_header(os.path.join(args.demo, "adapter", "adapter_model.safetensors"))
    check(set(written) == set(source), f"tensors differ: {sorted(set(written) ^ set(source))}")
    for name in source:
        check(written[name]["shape"] == source[name]["shape"], f"{name}: shape")
    with open(os.path.join(lora, "adapter_config.json")) as f:
        check(json.load(f).get("peft_type") == "LORA", "adapter_config.json is not a LoRA config")
    for dest in ("merged-out", "gguf-out"):
        check(not os.path.exists(out[dest]) or not os.listdir(out[dest]),
              f"{dest} received files though only lora ran")

    with open(shot, "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
    pix = GdkPixbuf.Pixbuf.new_from_file(shot)
    w, h = pix.get_width(), pix.get_height()
    check(w >= 300 and h >= 200, f"the screenshot is {w}x{h}")
    data = pix.get_pixels()
    stride, n = pix.get_rowstride(), pix.get_n_channels()
    colors = {bytes(data[y * stride + x * n: y * stride + x * n + 3])
              for y in range(0, h, 7) for x in range(0, w, 7)}
    check(len(colors) > 8, f"the screenshot is nearly blank ({len(colors)} colours)")
    print(f"screenshot {w}x{h}, {len(colors)} colours sampled: {shot}")
    print("ok")


if __name__ == "__main__":
    main()

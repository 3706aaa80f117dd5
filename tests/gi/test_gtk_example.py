#!/usr/bin/python3
"""The GTK 4 example (doc/examples/smelt-gtk) on a virtual X server, driven
by real X input (xdotool: key presses and mouse clicks through XTEST).

Generates a 125 MB bf16 model with its adapter and writes two recipes
that export it as GGUF (Q4_K_M and Q6_K, on one thread: about 1.5 s of
real progress) and re-export the adapter. The application reports its
state on stdout as JSON lines (--trace): what the progress bar shows, the
result, and where its controls are in its X window.

With libadwaita: the mouse unticks the adapter export's check button,
Ctrl+Return runs, Ctrl+Q quits. The progress bar must have shown several
intermediate fractions, never going back, ending at 1.0, with the stage
and tensor as its text; the application exits 0; the two GGUF files are
well formed (read here from the format's specification, not by smelt),
one per type, holding every tensor of the model with its shape; the
unticked export wrote nothing; nothing was written outside the
destination; the screenshot shows the window, opaque, with a full bar.

Without libadwaita (SMELT_GTK_NO_ADW=1, the plain GTK 4 path), started
without a recipe: Ctrl+O, the recipe's path typed into the file chooser;
a mouse click on Run, Escape midway; Ctrl+Return, a mouse click on Cancel
midway; Ctrl+Return, Ctrl+Q midway. Every run must be reported as
cancelled, the application exits 1 and no file is left; the screenshot
shows a bar stopped midway.
"""
import argparse
import glob
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import gi

gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf  # noqa: E402

from gi_check import check, fail, files_under, make_mid_model, read_safetensors_header  # noqa: E402

TIMEOUT = 30   # seconds for any one thing to happen

# GGUF (docs/gguf.md of ggml): ggml type id -> (elements per block, bytes per block)
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144),
              13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}
# llama.cpp's llama_ftype values for general.file_type
FTYPE_Q4_K_M, FTYPE_Q6_K = 15, 18

RECIPE = """[Recipe]
Name={name}

[Source]
Model=../src/model
Adapters=../src/adapter

[Destination gguf-out]
Plugin=localfs
Path=../{out}/gguf

[Destination lora-out]
Plugin=localfs
Path=../{out}/lora

[Export gguf]
Format=gguf-quant
Destination=gguf-out
Types=q4_k_m;q6_k
Name={name}
Pre=gpt-2
Report=false

[Export adapter]
Format=safetensors-lora
Destination=lora-out
DType=auto
"""


# ---- independent readers ----

class Reader:
    def __init__(self, f):
        self.f = f

    def unpack(self, fmt):
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        check(len(data) == size, "GGUF: truncated header")
        return struct.unpack("<" + fmt, data)

    def string(self):
        (n,) = self.unpack("Q")
        check(n < 1 << 24, f"GGUF: string of {n} bytes")
        return self.f.read(n).decode()

    def value(self, vtype):
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
        if vtype in scalar:
            return self.unpack(scalar[vtype])[0]
        if vtype == 8:
            return self.string()
        check(vtype == 9, f"GGUF: value type {vtype}")
        etype, n = self.unpack("IQ")
        check(etype != 9, "GGUF: nested array")
        return [self.value(etype) for _ in range(n)]


def read_gguf(path):
    """A GGUF v3 file's keys and tensors, checking that the tensors' data
    lie back to back, each padded to the alignment, and end the file."""
    with open(path, "rb") as f:
        r = Reader(f)
        magic, version, n_tensors, n_kv = r.unpack("4sIQQ")
        check(magic == b"GGUF" and version == 3, f"{path}: magic {magic}, version {version}")
        kv = {}
        for _ in range(n_kv):
            key = r.string()
            (vtype,) = r.unpack("I")
            kv[key] = r.value(vtype)
        tensors = {}
        for _ in range(n_tensors):
            name = r.string()
            (n_dims,) = r.unpack("I")
            ne = r.unpack("Q" * n_dims)
            ttype, offset = r.unpack("IQ")
            check(ttype in GGML_TYPES, f"{path}: {name} has ggml type {ttype}")
            tensors[name] = {"ne": ne, "type": GGML_TYPES[ttype][0], "type_id": ttype, "offset": offset}
        align = kv.get("general.alignment", 32)
        data_start = -(-f.tell() // align) * align
    expected = 0
    for name, t in tensors.items():
        _, block, size = GGML_TYPES[t["type_id"]]
        check(t["ne"][0] % block == 0, f"{path}: {name} rows of {t['ne'][0]} in blocks of {block}")
        nbytes = t["ne"][0] // block * size
        for d in t["ne"][1:]:
            nbytes *= d
        check(t["offset"] == expected, f"{path}: {name} at offset {t['offset']}, expected {expected}")
        expected += -(-nbytes // align) * align
    size = os.path.getsize(path)
    check(size == data_start + expected, f"{path}: {size} bytes, the header accounts for {data_start + expected}")
    return kv, tensors


def tree(root, skip=()):
    """Every file under @root with its size and modification time."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
        for f in files:
            p = os.path.join(d, f)
            if p not in skip:
                st = os.stat(p)
                out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


# ---- the X server, the application and its input ----

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


class App:
    """smelt-gtk in a child process, its --trace events read as they come."""

    def __init__(self, cmd, env, name):
        self.name = name
        self.events = []
        self.queue = queue.Queue()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True)
        self.env = env
        threading.Thread(target=self.read, daemon=True).start()
        self.wid = None

    def read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print(f"[{self.name}] {line}", end="")
                continue
            self.queue.put(event)
        self.queue.put(None)

    def wait_for(self, what, pred=lambda e: True):
        """The next event @what that satisfies @pred; fails if the
        application exits or nothing comes in time."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.fail(f"no {what} event in {TIMEOUT} s")
            if event is None:
                self.fail(f"exited ({self.proc.wait()}) before a {what} event")
            self.events.append(event)
            if event["event"] == what and pred(event):
                return event
            if event["event"] == "finished":
                self.fail(f"the run ended ({event['result']}) before a {what} event")

    def fail(self, msg):
        self.stderr.seek(0)
        sys.stderr.write(self.stderr.read())
        print("events:", *self.events, sep="\n  ", file=sys.stderr)
        self.kill()
        fail(f"{self.name}: {msg}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def xdotool(self, *argv):
        p = subprocess.run(["xdotool", *argv], env=self.env, capture_output=True, text=True,
                           timeout=TIMEOUT)
        if p.returncode != 0:
            self.fail(f"xdotool {' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout

    def focus(self, title):
        """Finds a window of the application by its title and gives it the
        keyboard focus (there is no window manager to do it)."""
        wid = self.xdotool("search", "--sync", "--all", "--onlyvisible", "--pid", str(self.proc.pid),
                           "--name", title).split()[0]
        self.xdotool("windowfocus", "--sync", wid)
        return wid

    def key(self, keys):
        self.xdotool("key", "--clearmodifiers", keys)

    def click(self, layout, widget):
        x, y, w, h = layout["widgets"][widget]
        self.xdotool("mousemove", "--window", self.wid, "--sync", str(x + w // 2), str(y + h // 2),
                     "click", "1")

    def exit_status(self):
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("does not quit")
        self.stderr.seek(0)
        err = self.stderr.read()
        if err.strip():
            print(f"[{self.name} stderr]\n{err}", end="", file=sys.stderr)
        return rc


def run_and_collect(app, start):
    """Starts a run with @start(), then returns its progress events and
    the finished event."""
    start()
    app.wait_for("running")
    first = len(app.events)
    done = app.wait_for("finished")
    progress = [e for e in app.events[first:] if e["event"] == "progress"]
    return progress, done


def cancel_midway(app, start, cancel):
    """Starts a run with @start(), cancels it with @cancel() at the first
    report well into exporting, and returns the finished event."""
    start()
    app.wait_for("running")
    at = app.wait_for("progress", lambda e: e["stage"] == "exporting" and e["fraction"] >= 0.2)
    check(at["fraction"] <= 0.7, f"{app.name}: the first report past 0.2 is already at {at['fraction']}")
    cancel()
    cancelling = app.wait_for("cancelling")
    done = app.wait_for("finished")
    check(done["result"] == "cancelled", f"{app.name}: the run ended {done['result']} after a cancel")
    check(done["status"].startswith("Cancelled"), f"{app.name}: the window says {done['status']!r}")
    check(done["text"] == "cancelled", f"{app.name}: the bar says {done['text']!r} after a cancel")
    print(f"{app.name}: cancelled at fraction {cancelling['fraction']:.3f}")
    return done


# ---- checks on what the run left ----

def check_progress(progress):
    fractions = [e["fraction"] for e in progress]
    print(f"progress: {len(progress)} reports, fractions {[round(f, 3) for f in fractions]}")
    check(all(b >= a for a, b in zip(fractions, fractions[1:])), f"the bar went backwards: {fractions}")
    middle = {f for f in fractions if 0.0 < f < 1.0}
    check(len(middle) >= 4, f"only {len(middle)} intermediate fractions shown: {fractions}")
    check(fractions[-1] == 1.0, f"the bar ends at {fractions[-1]}")
    for e in progress:
        shown = f"{e['stage']} {e['tensor']}" if e["tensor"] else e["stage"]
        check(e["text"] == shown, f"the bar shows {e['text']!r} at stage {e['stage']}, tensor {e['tensor']}")
    stages = [e["stage"] for e in progress]
    check("exporting" in stages and stages[-1] == "done", f"stages {stages}")
    return {e["tensor"] for e in progress if e["stage"] == "exporting" and e["tensor"]}


def check_gguf_output(dest, base):
    files = files_under(dest)
    print("gguf-out:", files)
    check(len(files) == 2 and all(f.endswith(".gguf") for f in files), f"the GGUF destination holds {files}")
    ftypes = set()
    base_shapes = sorted(tuple(t["shape"]) for t in base.values())
    for f in files:
        kv, tensors = read_gguf(os.path.join(dest, f))
        check(kv.get("general.architecture") == "llama", f"{f}: architecture {kv.get('general.architecture')}")
        ftype = kv.get("general.file_type")
        ftypes.add(ftype)
        # GGUF lists dimensions innermost first, safetensors outermost first
        shapes = sorted(tuple(reversed(t["ne"])) for t in tensors.values())
        check(shapes == base_shapes, f"{f}: tensor shapes differ from the model's")
        types = {t["type"] for t in tensors.values() if len(t["ne"]) == 2}
        check(all(t["type"] == "F32" for t in tensors.values() if len(t["ne"]) == 1), f"{f}: vectors not F32")
        if ftype == FTYPE_Q6_K:
            check(types == {"Q6_K"}, f"{f}: Q6_K file with matrices of {types}")
        else:
            check("Q4_K" in types and types <= {"Q4_K", "Q5_K", "Q6_K"}, f"{f}: Q4_K_M file with matrices of {types}")
        print(f"{f}: file type {ftype}, {len(tensors)} tensors of {sorted(types)}")
    check(ftypes == {FTYPE_Q4_K_M, FTYPE_Q6_K}, f"file types {ftypes}")


def check_screenshot(path, done, full):
    with open(path, "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pix = GdkPixbuf.Pixbuf.new_from_file(path)
    w, h = pix.get_width(), pix.get_height()
    check([w, h] == done["size"], f"the screenshot is {w}x{h}, the window {done['size']}")
    data, stride, n = pix.get_pixels(), pix.get_rowstride(), pix.get_n_channels()

    def pixel(x, y):
        o = y * stride + x * n
        return tuple(data[o:o + n]) + ((255,) if n == 3 else ())

    colors = {pixel(x, y)[:3] for y in range(0, h, 7) for x in range(0, w, 7)}
    check(len(colors) > 8, f"the screenshot is nearly blank ({len(colors)} colours)")
    # the window's inside is painted: no transparent or translucent pixel
    # the picture is of the window itself, without the surface's margin
    x0, y0, pw, ph = done["widgets"]["progress"]
    x0, y0 = x0 - done["origin"][0], y0 - done["origin"][1]
    body = [pixel(x, y) for y in range(h // 4, 3 * h // 4, 5) for x in range(w // 8, 7 * w // 8, 5)]
    check(all(p[3] == 255 for p in body), "the window's inside is not opaque")
    # the progress bar's fill, in the theme's blue accent, across as much
    # of the bar as the fraction it ended at
    def accent(p):
        return p[2] > p[0] + 60 and p[2] > p[1] + 30
    filled = sum(1 for x in range(x0, x0 + pw) if any(accent(pixel(x, y)) for y in range(y0, y0 + ph)))
    ratio = filled / pw
    print(f"screenshot {w}x{h}, {len(colors)} colours sampled, bar {ratio:.2f} filled at fraction "
          f"{done['fraction']:.2f}: {path}")
    check(abs(ratio - done["fraction"]) < 0.1, f"the bar is {ratio:.2f} filled, the fraction {done['fraction']}")
    check(ratio > 0.95 if full else 0.05 < ratio < 0.95, f"the bar is {ratio:.2f} filled")


# ---- the two cases ----

def case_adw(args, env, work, recipe, base):
    out = os.path.join(work, "out-adw")
    shot = os.path.join(work, "adw.png")
    before = tree(work)
    app = App([sys.executable, args.app, "--trace", "--jobs", "1", "--screenshot", shot, recipe],
              env, "adw")
    t0 = time.monotonic()
    ready = app.wait_for("ready")
    check(ready["adw"] is True, "libadwaita is not in use")
    check(ready["exports"] == ["gguf", "adapter"], f"the window lists {ready['exports']}")
    app.wid = app.focus("^gtk-adw ")
    app.click(ready, "export:adapter")
    app.wait_for("toggled", lambda e: e["export"] == "adapter" and e["active"] is False)
    progress, done = run_and_collect(app, lambda: app.key("ctrl+Return"))
    running = [e for e in app.events if e["event"] == "running"]
    check(running[-1]["exports"] == ["gguf"], f"ran {running[-1]['exports']}, not only gguf")
    check(done["result"] == "ok", f"the run ended {done['result']}: {done['status']}")
    check(done["status"].startswith("Done"), f"the window says {done['status']!r}")
    app.key("ctrl+q")
    rc = app.exit_status()
    print(f"adw: exit {rc} after {time.monotonic() - t0:.1f} s, the run took {done['seconds']:.2f} s")
    check(rc == 0, f"smelt-gtk exited {rc}")

    tensors = check_progress(progress)
    check(tensors and tensors <= set(base), f"the bar named tensors the model lacks: {sorted(tensors - set(base))}")
    check_gguf_output(os.path.join(out, "gguf"), base)
    check(files_under(os.path.join(out, "lora")) == [], "the unticked adapter export wrote files")
    after = tree(work, skip={out, shot})
    check(after == before, f"written outside the destination: {sorted(set(after.items()) ^ set(before.items()))}")
    check_screenshot(shot, done, full=True)


def case_plain(args, env, work, recipe):
    out = os.path.join(work, "out-plain")
    shot = os.path.join(work, "plain.png")
    env = dict(env, SMELT_GTK_NO_ADW="1")
    app = App([sys.executable, args.app, "--trace", "--jobs", "1", "--screenshot", shot], env, "plain")
    t0 = time.monotonic()
    empty = app.wait_for("ready")
    check(empty["adw"] is False, "libadwaita is in use despite SMELT_GTK_NO_ADW=1")
    check(empty["recipe"] is None and empty["exports"] == [], f"a recipe without asking: {empty}")
    # Ctrl+O, then the path typed into the file chooser
    app.wid = app.focus("^smelt$")
    app.key("ctrl+o")
    app.focus("^Open a recipe$")
    app.xdotool("type", "--delay", "2", recipe)
    app.key("Return")
    ready = app.wait_for("ready", lambda e: e["recipe"] == recipe)
    check(ready["exports"] == ["gguf", "adapter"], f"the window lists {ready['exports']}")
    app.xdotool("windowfocus", "--sync", app.wid)
    cancel_midway(app, lambda: app.click(ready, "run"), lambda: app.key("Escape"))
    done = cancel_midway(app, lambda: app.key("ctrl+Return"), lambda: app.click(ready, "cancel"))
    # Ctrl+Q midway: the run is cancelled first, then the application quits
    cancel_midway(app, lambda: app.key("ctrl+Return"), lambda: app.key("ctrl+q"))
    running = [e for e in app.events if e["event"] == "running"]
    check(len(running) == 3 and all(r["exports"] == ["gguf", "adapter"] for r in running), f"ran {running}")
    rc = app.exit_status()
    print(f"plain: exit {rc} after {time.monotonic() - t0:.1f} s")
    check(rc == 1, f"smelt-gtk exited {rc} after a cancel")
    left = files_under(out)
    check(left == [], f"files left behind after the cancels: {left}")
    check_screenshot(shot, done, full=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    work = os.path.join(args.workdir, "tree")
    os.makedirs(os.path.join(work, "recipes"))

    t0 = time.monotonic()
    # the export takes over a second on one thread, so that the bar moves
    # and a cancel lands midway
    src = make_mid_model(os.path.join(work, "src"))
    base = {}
    for shard in glob.glob(os.path.join(src, "model", "*.safetensors")):
        base.update(read_safetensors_header(shard))
    recipes = {}
    for case in ("adw", "plain"):
        recipes[case] = os.path.join(work, "recipes", f"{case}.smelt")
        with open(recipes[case], "w") as f:
            f.write(RECIPE.format(name=f"gtk-{case}", out=f"out-{case}"))
    print(f"model generated in {time.monotonic() - t0:.1f} s")

    home = tempfile.mkdtemp(prefix="smelt-gtk-home-")
    xvfb, display = start_xvfb()
    try:
        env = dict(os.environ, DISPLAY=display, GDK_BACKEND="x11", GDK_SCALE="1",
                   GSK_RENDERER="cairo",           # no GL on a virtual server
                   GTK_A11Y="none", NO_AT_BRIDGE="1", GSETTINGS_BACKEND="memory",
                   XDG_RUNTIME_DIR=home, XDG_CONFIG_HOME=os.path.join(home, "config"),
                   XDG_DATA_HOME=os.path.join(home, "data"), XDG_CACHE_HOME=os.path.join(home, "cache"),
                   XDG_STATE_HOME=os.path.join(home, "state"))
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        env.pop("SMELT_GTK_NO_ADW", None)
        case_adw(args, env, work, recipes["adw"], base)
        case_plain(args, env, work, recipes["plain"])
    finally:
        xvfb.terminate()
        xvfb.wait()
        shutil.rmtree(home, ignore_errors=True)
    # the model and the GGUF files: 200 MB the build tree need not keep
    shutil.rmtree(src)
    shutil.rmtree(os.path.join(work, "out-adw", "gguf"))
    print(f"ok in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()

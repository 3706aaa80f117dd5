#!/usr/bin/python3
"""libsmelt from Python through GObject introspection (PyGObject).

Loads Smelt-1.typelib from the build tree (GI_TYPELIB_PATH and
LD_LIBRARY_PATH, set by tests/gi/meson.build), then:

- lists the plugins through the registry's GListModel and each feature's
  properties, and checks them against `smelt plugins --json` (the C
  tool's own listing, an independent path to the same plugins);
- builds a recipe in code and runs it with run_async() on a GLib main
  loop, reporting every block (progress-interval 0): every progress
  emission and notify::fraction must arrive on the main thread, the
  fraction must pass through intermediate values, never decrease and end
  at 1.0, current-tensor must name the model's tensors, and the files
  must be complete (checked here with a safetensors and GGUF
  reader written from the formats' specifications, not with smelt);
- runs the recipe on a 125 MB model (Q4_K_M on one thread, about a
  second) and cancels it from the first progress handler that sees the
  fraction between 0.25 and 0.75: the job must fail promptly with
  G_IO_ERROR_CANCELLED and leave no file behind, neither under a final
  name nor as a *.partial. The job waits, before committing, until the
  caller has seen every progress report, so a cancel from a handler
  always wins, however fast the machine. Its fractions must not decrease
  either;
- runs an export with a fresh registry whose plugins are not loaded yet,
  so they load on the job's worker thread: their notify::state must
  still arrive on the main thread.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

import gi

gi.require_version("GLib", "2.0")
gi.require_version("Gio", "2.0")
gi.require_version("GIRepository", "2.0")
gi.require_version("Smelt", "1")
from gi.repository import GIRepository, GLib, GObject, Gio, Smelt  # noqa: E402

from gi_check import check, fail, files_under, make_mid_model, read_safetensors_header  # noqa: E402,F401

MAIN_THREAD = threading.get_ident()


# ---- independent readers ----

def check_gguf(path):
    with open(path, "rb") as f:
        magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
    check(magic == b"GGUF", f"{path}: not a GGUF file")
    check(version == 3, f"{path}: GGUF version {version}")
    check(n_tensors > 0 and n_kv > 0, f"{path}: {n_tensors} tensors, {n_kv} keys")


# ---- plugins and their properties ----

def check_plugins(registry, smelt_tool):
    check(isinstance(registry, Gio.ListModel), "the registry is not a GListModel")
    check(registry.get_item_type() == Smelt.Plugin.__gtype__, "the registry's item type is not SmeltPlugin")
    plugins = [registry.get_item(i) for i in range(registry.get_n_items())]
    check(registry.get_item(registry.get_n_items()) is None, "get_item past the end is not None")
    names = sorted(p.get_name() for p in plugins)
    for want in ("gguf-quant", "localfs", "merged16", "safetensors-lora"):
        check(want in names, f"plugin {want} is not listed (have {names})")

    cli = json.loads(subprocess.run([smelt_tool, "plugins", "--json"], check=True,
                                    capture_output=True, text=True).stdout)
    check(sorted(p["name"] for p in cli) == names, f"the CLI lists {[p['name'] for p in cli]}, GI {names}")
    cli_options = {}
    for name in names:
        detail = json.loads(subprocess.run([smelt_tool, "plugins", name, "--json"], check=True,
                                           capture_output=True, text=True).stdout)
        for feat in detail["features"]:
            cli_options[feat["name"]] = {o["key"]: o["description"] for o in feat.get("options", [])}

    n_props = 0
    for plugin in plugins:
        plugin.load()
        check(plugin.get_state() == Smelt.PluginState.LOADED, f"{plugin.get_name()} did not load")
        for feature in plugin.list_features():
            ok, kind = plugin.get_feature_kind(feature)
            check(ok, f"{feature}: no kind")
            gtype = plugin.get_feature_type(feature)
            base = Smelt.Format if kind == Smelt.FeatureKind.FORMAT else Smelt.Destination
            check(gtype.is_a(base.__gtype__), f"{feature}: {gtype.name} is not a {base.__gtype__.name}")
            props = {p.nick: p.blurb for p in GObject.list_properties(gtype)
                     if p.flags & GObject.ParamFlags.WRITABLE and p.name != "name"}
            print(f"{plugin.get_name()}/{feature} ({kind.value_nick}): {sorted(props)}")
            check(props == cli_options.get(feature, {}),
                  f"{feature}: GI sees {props}, the CLI {cli_options.get(feature)}")
            n_props += len(props)
    check(n_props > 0, "no plugin has a property")


# ---- a recipe built in code ----

def make_recipe(demo, dest):
    recipe = Smelt.Recipe.new()
    recipe.set_name("gi-python")
    recipe.set_model(os.path.join(demo, "model"))
    recipe.add_adapter(os.path.join(demo, "adapter"), 1.0)
    recipe.add_destination("out", "localfs")
    recipe.set_option("out", "Path", dest)
    recipe.set_option("out", "Overwrite", "true")
    recipe.add_export("merged", "merged16", "out")
    recipe.set_option("merged", "DType", "bf16")
    recipe.add_export("gguf", "gguf-quant", "out")
    recipe.set_option("gguf", "Types", "q8_0")
    recipe.set_option("gguf", "Name", "gi")
    recipe.set_option("gguf", "Pre", "gpt-2")
    return recipe


def run_on_loop(job, cancellable, on_progress):
    """Runs @job with run_async on a fresh main loop; returns (ok, error, seconds)."""
    loop = GLib.MainLoop()
    result = {}

    def done(source, res):
        check(threading.get_ident() == MAIN_THREAD, "the result arrived on another thread")
        try:
            result["ok"] = source.run_finish(res)
        except GLib.Error as e:
            result["ok"] = False
            result["error"] = e
        loop.quit()

    job.connect("progress", on_progress)
    start = time.monotonic()
    job.run_async(cancellable, done)
    GLib.timeout_add_seconds(120, lambda: fail("the job never finished") or False)
    loop.run()
    return result["ok"], result.get("error"), time.monotonic() - start


def test_export(registry, demo, workdir):
    dest = os.path.join(workdir, "export")
    recipe = make_recipe(demo, dest)
    recipe.validate(registry)
    check(sorted(recipe.list_exports()) == ["gguf", "merged"], f"exports {recipe.list_exports()}")
    job = Smelt.ExportJob.new(recipe, registry)
    job.set_n_threads(2)
    check(job.props.progress_interval == 100, f"progress-interval {job.props.progress_interval}")
    job.props.progress_interval = 0  # every block: the demo takes milliseconds
    check(job.get_progress_interval() == 0, "progress-interval was not set")

    fractions, stages, notified, tensors = [], [], [], []

    def on_progress(j):
        check(threading.get_ident() == MAIN_THREAD, "progress was emitted on another thread")
        fractions.append(j.props.fraction)
        if not stages or stages[-1] != j.props.stage:
            stages.append(j.props.stage)
        if j.props.stage == "exporting" and j.props.current_tensor:
            tensors.append(j.props.current_tensor)

    def on_tensor(j, pspec):
        check(threading.get_ident() == MAIN_THREAD, "notify::current-tensor on another thread")

    job.connect("notify::current-tensor", on_tensor)

    def on_notify(j, pspec):
        check(threading.get_ident() == MAIN_THREAD, "notify::fraction on another thread")
        notified.append(j.get_fraction())

    job.connect("notify::fraction", on_notify)
    ok, error, seconds = run_on_loop(job, None, on_progress)
    check(ok and error is None, f"the export failed: {error and error.message}")
    print(f"export: {len(fractions)} progress emissions, stages {stages}, {seconds:.2f} s")
    check(len(fractions) >= 3, f"only {len(fractions)} progress emissions")
    between = sorted(set(f for f in fractions if 0.0 < f < 1.0))
    check(len(between) >= 5, f"only {len(between)} fractions between 0 and 1: {fractions}")
    check(all(b >= a for a, b in zip(fractions, fractions[1:])), f"fraction went backwards: {fractions}")
    check(all(b >= a for a, b in zip(notified, notified[1:])), f"notify::fraction went backwards: {notified}")
    check(fractions[-1] == 1.0 and job.get_fraction() == 1.0, f"fraction ends at {fractions[-1]}")
    check(stages[0] == "preparing" and stages[-1] == "done", f"stages {stages}")
    check("exporting" in stages, f"no exporting stage in {stages}")
    check(job.get_bytes_done() == job.get_bytes_total() > 0,
          f"bytes {job.get_bytes_done()} of {job.get_bytes_total()}")

    files = files_under(dest)
    print("files:", files)
    check(not [f for f in files if f.endswith(".partial")], f"partial files left: {files}")
    planned = set()
    for name in ("merged", "gguf"):
        for pf in job.get_planned_files(name):
            planned.add(pf.path)
    check(planned <= set(files), f"planned {sorted(planned)} but wrote {files}")
    base = {}
    with open(os.path.join(demo, "model", "model.safetensors.index.json")) as f:
        for shard in sorted(set(json.load(f)["weight_map"].values())):
            base.update(read_safetensors_header(os.path.join(demo, "model", shard)))
    shards = [f for f in files if f.endswith(".safetensors")]
    check(shards, "no safetensors written")
    merged = {}
    for s in shards:
        merged.update(read_safetensors_header(os.path.join(dest, s)))
    check(set(merged) == set(base), f"merged tensors {sorted(set(merged) ^ set(base))} differ from the base's")
    # the tensors being exported, in the names of the model being read
    check(tensors and set(tensors) <= set(base),
          f"current-tensor names {sorted(set(tensors) - set(base))} are not the model's")
    check(len(set(tensors)) >= len(base) // 2,
          f"current-tensor named {len(set(tensors))} of the {len(base)} tensors")
    for name, info in merged.items():
        check(info["shape"] == base[name]["shape"], f"{name}: shape {info['shape']} vs {base[name]['shape']}")
        check(info["dtype"] == "BF16", f"{name}: dtype {info['dtype']}")
    ggufs = [f for f in files if f.endswith(".gguf")]
    check(len(ggufs) == 1 and "Q8_0" in ggufs[0], f"gguf files {ggufs}")
    check_gguf(os.path.join(dest, ggufs[0]))
    with open(os.path.join(dest, "config.json")) as f:
        check(json.load(f).get("torch_dtype") == "bfloat16", "config.json does not say bfloat16")


def test_cancel(registry, workdir):
    mid = make_mid_model(os.path.join(workdir, "mid"))
    dest = os.path.join(workdir, "cancelled")
    recipe = make_recipe(mid, dest)
    recipe.set_option("gguf", "Types", "q4_k_m")
    recipe.set_option("gguf", "Report", "false")
    job = Smelt.ExportJob.new(recipe, registry)
    job.set_n_threads(1)
    cancellable = Gio.Cancellable()
    seen = {"fractions": []}

    def on_progress(j):
        check(threading.get_ident() == MAIN_THREAD, "progress was emitted on another thread")
        seen["fractions"].append(j.props.fraction)
        if j.props.stage == "exporting" and 0.25 <= j.props.fraction <= 0.75 and "at" not in seen:
            seen["at"] = time.monotonic()
            seen["fraction"] = j.props.fraction
            cancellable.cancel()

    ok, error, _ = run_on_loop(job, cancellable, on_progress)
    check("at" in seen, f"no progress report midway through exporting: {seen['fractions']}")
    fr = seen["fractions"]
    check(all(b >= a for a, b in zip(fr, fr[1:])), f"fraction went backwards: {fr}")
    check(len(set(f for f in fr if 0.0 < f < seen["fraction"])) >= 1,
          f"too few reports before the cancel: {fr}")
    latency = time.monotonic() - seen["at"]
    check(not ok and error is not None, "the cancelled job succeeded")
    check(error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED),
          f"error {error.domain} {error.code}: {error.message}")
    print(f"cancelled at fraction {seen['fraction']:.3f}, finished {latency * 1000:.0f} ms later: {error.message}")
    check(latency < 5.0, f"cancellation took {latency:.1f} s")
    check(job.get_stage() != "done", "stage is done after a cancel")
    left = files_under(dest)
    check(left == [], f"files left behind after the cancel: {left}")
    shutil.rmtree(mid)


def test_plugin_state(demo, workdir, plugin_path):
    """Plugins first used by a job load on its worker thread; UIs bound to
    their state must still be told on the main thread."""
    registry = Smelt.Registry.new([plugin_path])
    plugins = {p.get_name(): p for p in (registry.get_item(i) for i in range(registry.get_n_items()))}
    used = ("merged16", "gguf-quant", "localfs")
    changes = []

    def on_state(p, pspec):
        check(threading.get_ident() == MAIN_THREAD,
              f"notify::state of {p.get_name()} was emitted on another thread")
        changes.append((p.get_name(), p.get_state()))

    for name in used:
        check(plugins[name].get_state() == Smelt.PluginState.LISTED, f"{name} is already loaded")
    for p in plugins.values():
        p.connect("notify::state", on_state)
    job = Smelt.ExportJob.new(make_recipe(demo, os.path.join(workdir, "state")), registry)
    ok, error, _ = run_on_loop(job, None, lambda j: None)
    check(ok, f"the export failed: {error and error.message}")
    # the job's result may come before the notifications queued after it
    ctx = GLib.MainContext.default()
    while ctx.pending():
        ctx.iteration(False)
    for name in used:
        check(plugins[name].get_state() == Smelt.PluginState.LOADED, f"{name} was not loaded")
        check((name, Smelt.PluginState.LOADED) in changes, f"no notify::state for {name}: {changes}")
    check(len(changes) == len(set(changes)), f"a state change was notified twice: {changes}")
    print(f"plugin state: {len(changes)} notifications on the main thread")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--typelib-dir", required=True)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)

    typelib = GIRepository.Repository.get_default().get_typelib_path("Smelt")
    check(os.path.realpath(typelib).startswith(os.path.realpath(args.typelib_dir)), f"Smelt came from {typelib}, not {args.typelib_dir}")
    print("Smelt", Smelt.get_major_version(), Smelt.get_minor_version(), Smelt.get_micro_version())
    registry = Smelt.Registry.get_default()
    check_plugins(registry, args.smelt)
    test_export(registry, args.demo, args.workdir)
    test_cancel(registry, args.workdir)
    test_plugin_state(args.demo, args.workdir, os.environ["SMELT_PLUGIN_PATH"])
    print("ok")


if __name__ == "__main__":
    main()

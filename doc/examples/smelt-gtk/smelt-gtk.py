#!/usr/bin/python3
# smelt-gtk: run smelt recipes from a GTK 4 window.
#
# An example of libsmelt through GObject introspection: it opens a recipe
# (Open…, a file given on the command line or by the desktop), lists its
# exports, runs the ticked ones with SmeltExportJob.run_async() while a
# progress bar follows the job's "progress" signal, can cancel, and says
# how it ended. libadwaita is used when it is installed, unless
# SMELT_GTK_NO_ADW=1 is set (plain GTK 4 then).
#
#   smelt-gtk [--set NAME.Key=Value]... [--jobs N] [RECIPE]
#
# Keyboard shortcuts:
#   Ctrl+O        open a recipe
#   Ctrl+Return   run the ticked exports
#   Escape        cancel the run
#   Ctrl+Q        quit (a run under way is cancelled first)
#
# The exit status is 0, or 1 if the last run failed or was cancelled, or 2
# if the last recipe opened could not be read.
#
# For tests and scripts (tests/gi/test_gtk_example.py): --trace prints the
# window's state on stdout as JSON lines (what the progress bar shows, the
# result, and where the controls are, so that a test can click them), and
# --screenshot PNG saves the window each time a run ends.
#
# Installed as smelt-gtk (data/meson.build), this file learns the paths
# from its own folder to the typelib and libsmelt, and looks there first,
# so an installation works at any prefix, staged or moved.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import os
import sys
import time

import gi

# Replaced by data/meson.build in the installed copy: the folders of
# Smelt-1.typelib and of libsmelt, relative to the installed script's.
TYPELIB_DIR_FROM_BINDIR = "@SMELT_GTK_TYPELIB_DIR@"
LIB_DIR_FROM_BINDIR = "@SMELT_GTK_LIB_DIR@"


def look_beside_installation():
    """Puts the installation's typelib and library folders first in GI's
    search paths: GI only looks in the system's own typelib folder, which
    a /usr/local or staged installation does not write to. Nothing to do
    in the source tree, where the paths are not filled in and tests set
    GI_TYPELIB_PATH and LD_LIBRARY_PATH."""
    if TYPELIB_DIR_FROM_BINDIR.startswith("@"):
        return
    here = os.path.dirname(os.path.realpath(__file__))
    typelib_dir = os.path.normpath(os.path.join(here, TYPELIB_DIR_FROM_BINDIR))
    lib_dir = os.path.normpath(os.path.join(here, LIB_DIR_FROM_BINDIR))
    if not os.path.isdir(typelib_dir):
        return
    gi.require_version("GIRepository", "2.0")
    from gi.repository import GIRepository
    GIRepository.Repository.prepend_search_path(typelib_dir)
    # the typelib names libsmelt by its soname; look for it here first
    GIRepository.Repository.prepend_library_path(lib_dir)


look_beside_installation()
gi.require_version("Gtk", "4.0")
gi.require_version("Smelt", "1")
Adw = None
if os.environ.get("SMELT_GTK_NO_ADW", "") in ("", "0"):
    try:
        gi.require_version("Adw", "1")
        from gi.repository import Adw
    except (ValueError, ImportError):
        Adw = None
from gi.repository import GLib, Gio, Gtk, Smelt  # noqa: E402

APP_ID = "org.smelt.SmeltGtk"

SHORTCUTS = [
    ("win.open", "<Control>o", "Ctrl+O", "open a recipe"),
    ("win.run", "<Control>Return", "Ctrl+Return", "run the ticked exports"),
    ("win.cancel", "Escape", "Escape", "cancel the run"),
    ("app.quit", "<Control>q", "Ctrl+Q", "quit (a run under way is cancelled first)"),
]


def recipe_subset(recipe, keep):
    """A copy of @recipe with only the exports named in @keep, the
    destinations they use and the source, so that a run writes nothing
    else."""
    data, _ = recipe.to_data()
    kf = GLib.KeyFile()
    kf.load_from_data(data, len(data.encode()), GLib.KeyFileFlags.KEEP_COMMENTS)
    used = set()
    for group in kf.get_groups()[0]:
        if group.startswith("Export "):
            if group[len("Export "):] not in keep:
                kf.remove_group(group)
            elif "Destination" in kf.get_keys(group)[0]:
                used.add(kf.get_string(group, "Destination"))
    for group in kf.get_groups()[0]:
        if group.startswith("Destination ") and group[len("Destination "):] not in used:
            kf.remove_group(group)
    text, _ = kf.to_data()
    return Smelt.Recipe.new_from_data(text, -1, recipe.get_base_dir())


class ExportRow(Gtk.ListBoxRow):
    def __init__(self, recipe, name):
        super().__init__(activatable=False, selectable=False)
        self.name = name
        fmt = recipe.get_export_format(name) or "?"
        dest = recipe.get_export_destination(name) or "?"
        box = Gtk.Box(spacing=12, margin_top=8, margin_bottom=8, margin_start=12, margin_end=12)
        self.check = Gtk.CheckButton(active=True, tooltip_text=f"Run {name}")
        box.append(self.check)
        labels = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, hexpand=True)
        title = Gtk.Label(label=name, xalign=0)
        title.add_css_class("heading")
        labels.append(title)
        sub = Gtk.Label(label=f"{fmt} → {dest}", xalign=0)
        sub.add_css_class("dim-label")
        labels.append(sub)
        box.append(labels)
        self.set_child(box)


class Window((Adw.ApplicationWindow if Adw else Gtk.ApplicationWindow)):
    def __init__(self, app):
        super().__init__(application=app, default_width=560, default_height=460,
                         title="smelt")
        self.app = app
        self.recipe = None
        self.path = None
        self.job = None
        self.cancellable = None
        self.started = 0.0
        self.quit_when_done = False
        self.actions = {}
        for name, handler in (("open", self.choose_recipe), ("run", self.run),
                              ("cancel", self.cancel)):
            action = Gio.SimpleAction.new(name, None)
            action.connect("activate", lambda _a, _p, h=handler: h())
            self.add_action(action)
            self.actions[name] = action
        self.connect("close-request", self.on_close_request)

        header = (Adw.HeaderBar() if Adw else Gtk.HeaderBar())
        self.open_button = Gtk.Button(label="Open…", action_name="win.open",
                                      tooltip_text="Open a recipe (Ctrl+O)")
        header.pack_start(self.open_button)
        self.title = Gtk.Label(label="smelt")
        self.title.add_css_class("title")
        header.set_title_widget(self.title)

        body = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12,
                       margin_top=12, margin_bottom=12, margin_start=12, margin_end=12)
        self.description = Gtk.Label(label="Open a recipe (.smelt) to see its exports.",
                                     xalign=0, wrap=True)
        body.append(self.description)
        self.list = Gtk.ListBox()
        self.list.add_css_class("boxed-list")
        scroller = Gtk.ScrolledWindow(vexpand=True, hscrollbar_policy=Gtk.PolicyType.NEVER)
        scroller.set_child(self.list)
        body.append(scroller)
        self.progress = Gtk.ProgressBar(show_text=True, text="")
        body.append(self.progress)
        self.status = Gtk.Label(xalign=0, wrap=True, selectable=True)
        body.append(self.status)
        buttons = Gtk.Box(spacing=6, halign=Gtk.Align.END)
        self.cancel_button = Gtk.Button(label="Cancel", action_name="win.cancel",
                                        tooltip_text="Cancel the run (Escape)")
        buttons.append(self.cancel_button)
        self.run_button = Gtk.Button(label="Run", action_name="win.run",
                                     tooltip_text="Run the ticked exports (Ctrl+Return)")
        self.run_button.add_css_class("suggested-action")
        buttons.append(self.run_button)
        body.append(buttons)

        if Adw:
            outer = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
            outer.append(header)
            outer.append(body)
            self.set_content(outer)
        else:
            self.set_titlebar(header)
            self.set_child(body)
        self.update_actions()

    def running(self):
        return self.job is not None

    def update_actions(self):
        running = self.running()
        self.actions["open"].set_enabled(not running)
        self.actions["run"].set_enabled(not running and bool(self.selected_exports()))
        self.actions["cancel"].set_enabled(running and not self.cancellable.is_cancelled())

    # ---- opening ----

    def choose_recipe(self):
        chooser = Gtk.FileChooserNative(title="Open a recipe", transient_for=self,
                                        action=Gtk.FileChooserAction.OPEN)
        flt = Gtk.FileFilter(name="smelt recipes")
        flt.add_mime_type("application/x-smelt-recipe")
        flt.add_pattern("*.smelt")
        chooser.add_filter(flt)

        def on_response(dialog, response):
            if response == Gtk.ResponseType.ACCEPT:
                self.open_recipe(dialog.get_file().get_path(), self.app.overrides)
            self.chooser = None

        chooser.connect("response", on_response)
        self.chooser = chooser  # keep it alive while it is shown
        chooser.show()

    def open_recipe(self, path, overrides=()):
        try:
            recipe = Smelt.Recipe.new_from_file(path)
            for assignment in overrides:
                recipe.override(assignment)
            recipe.validate(Smelt.Registry.get_default())
        except GLib.Error as e:
            self.show_status(f"Cannot open {path}: {e.message}", error=True)
            self.app.status = 2
            self.app.trace("open-failed", path=path, status=self.status.get_label())
            return False
        self.recipe = recipe
        self.path = path
        self.app.status = 0
        name = recipe.get_name()
        self.title.set_label(name)
        self.set_title(f"{name} — smelt")
        self.description.set_label(path)
        while (row := self.list.get_row_at_index(0)) is not None:
            self.list.remove(row)
        for export in recipe.list_exports():
            row = ExportRow(recipe, export)
            row.check.connect("toggled", self.on_toggled, export)
            self.list.append(row)
        self.progress.set_fraction(0.0)
        self.progress.set_text("")
        self.show_status(f"{len(recipe.list_exports())} exports")
        self.update_actions()
        self.report_ready()
        return True

    def report_ready(self):
        """--trace: the window shows the recipe (if any) and takes input."""
        path, exports = self.path, [row.name for row in self.rows()]
        self.after_next_paint(lambda: self.app.trace("ready", recipe=path, exports=exports,
                                                     adw=Adw is not None, **self.layout()))

    def on_toggled(self, check, name):
        self.update_actions()
        self.app.trace("toggled", export=name, active=check.get_active())

    # ---- running ----

    def rows(self):
        i = 0
        while (row := self.list.get_row_at_index(i)) is not None:
            yield row
            i += 1

    def selected_exports(self):
        return [row.name for row in self.rows() if row.check.get_active()]

    def run(self):
        names = self.selected_exports()
        if self.running() or not names:
            return
        try:
            recipe = recipe_subset(self.recipe, names)
        except GLib.Error as e:
            self.show_status(e.message, error=True)
            return
        self.job = Smelt.ExportJob.new(recipe, Smelt.Registry.get_default())
        if self.app.jobs > 0:
            self.job.set_n_threads(self.app.jobs)
        self.job.connect("progress", self.on_progress)
        self.cancellable = Gio.Cancellable()
        self.progress.set_fraction(0.0)
        self.progress.set_text("")
        self.show_status("Running " + ", ".join(names) + "…")
        self.update_actions()
        self.app.trace("running", exports=names)
        self.started = time.monotonic()
        self.job.run_async(self.cancellable, self.on_done, names)

    def cancel(self):
        if self.running() and not self.cancellable.is_cancelled():
            self.cancellable.cancel()
            self.show_status("Cancelling…")
            self.update_actions()
            self.app.trace("cancelling", fraction=self.progress.get_fraction())

    def on_progress(self, job):
        self.progress.set_fraction(job.props.fraction)
        tensor = job.props.current_tensor
        self.progress.set_text(f"{job.props.stage} {tensor}" if tensor else job.props.stage)
        # what the bar shows now, read back from it
        self.app.trace("progress", fraction=self.progress.get_fraction(),
                       text=self.progress.get_text(), stage=job.props.stage, tensor=tensor)

    def on_done(self, job, result, names):
        seconds = time.monotonic() - self.started
        try:
            job.run_finish(result)
            where = "\n".join(f"{n}: {job.describe_destination(n)}" for n in names)
            self.show_status(f"Done in {seconds:.1f} s.\n{where}")
            outcome = "ok"
        except GLib.Error as e:
            if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED):
                self.show_status("Cancelled; nothing was written.")
                self.progress.set_text("cancelled")
                outcome = "cancelled"
            else:
                self.show_status(f"Failed: {e.message}", error=True)
                self.progress.set_text("failed")
                outcome = "failed"
        self.job = None
        self.update_actions()
        self.app.status = 0 if outcome == "ok" else 1
        finished = dict(result=outcome, seconds=round(seconds, 3), status=self.status.get_label(),
                        fraction=self.progress.get_fraction(), text=self.progress.get_text())
        if self.quit_when_done:
            self.app.trace("finished", **finished)
            self.app.quit()
            return

        def report():
            shot = self.app.screenshot
            if shot:
                try:
                    self.save_screenshot(shot)
                except Exception as e:  # a missing picture fails the test
                    print(f"screenshot: {e}", file=sys.stderr)
                    shot = None
            self.app.trace("finished", **finished, screenshot=shot, **self.layout())
        # once the final state is on screen, so that the picture shows it
        self.after_next_paint(report)

    def show_status(self, text, error=False):
        self.status.set_label(text)
        if error:
            print(text, file=sys.stderr)
            self.status.add_css_class("error")
        else:
            self.status.remove_css_class("error")

    # ---- closing ----

    def on_close_request(self, window):
        if not self.running():
            return False
        # let the job remove what it started writing, then close
        self.quit_when_done = True
        self.cancel()
        return True

    # ---- for --trace and --screenshot ----

    def after_next_paint(self, func):
        """Calls @func once the window has been laid out and drawn again."""
        if not self.app.tracing and not self.app.screenshot:
            return
        clock = self.get_frame_clock()
        if clock is None:   # not realized yet: wait for it
            handler = None

            def on_realize(_w):
                self.disconnect(handler)
                self.after_next_paint(func)
            handler = self.connect("realize", on_realize)
            return
        handler = None

        def on_paint(_clock):
            clock.disconnect(handler)
            func()
        handler = clock.connect("after-paint", on_paint)
        self.queue_draw()

    def layout(self):
        """Where the window's controls are, as [x, y, width, height] in
        the pixels of its X window (surface coordinates, for input); the
        window's size and its origin in them (the surface may have a
        margin for resizing or a shadow)."""
        ox, oy = self.get_surface_transform()

        def where(widget):
            ok, rect = widget.compute_bounds(self)
            if not ok:
                return None
            return [round(ox + rect.get_x()), round(oy + rect.get_y()),
                    round(rect.get_width()), round(rect.get_height())]
        widgets = {"open": where(self.open_button), "run": where(self.run_button),
                   "cancel": where(self.cancel_button), "progress": where(self.progress)}
        for row in self.rows():
            widgets["export:" + row.name] = where(row.check)
        return {"origin": [round(ox), round(oy)], "size": [self.get_width(), self.get_height()],
                "widgets": widgets}

    def save_screenshot(self, path):
        """Renders the window as it is on screen into a PNG: a
        GtkWidgetPaintable of the window, snapshotted into a render node
        that the window's own GskRenderer turns into a texture.

        PyGObject 3.42 (Debian 12) cannot hold a GskRenderNode, so the three
        calls that pass one around go straight to GTK through ctypes."""
        import ctypes

        width, height = self.get_width(), self.get_height()
        paintable = Gtk.WidgetPaintable.new(self)
        snapshot = Gtk.Snapshot()
        paintable.snapshot(snapshot, width, height)

        def ptr(obj):
            get = ctypes.pythonapi.PyCapsule_GetPointer
            get.restype = ctypes.c_void_p
            get.argtypes = [ctypes.py_object, ctypes.c_char_p]
            return get(obj.__gpointer__, None)

        gtk = ctypes.CDLL("libgtk-4.so.1")
        gtk.gtk_snapshot_to_node.restype = ctypes.c_void_p
        gtk.gtk_snapshot_to_node.argtypes = [ctypes.c_void_p]
        gtk.gsk_renderer_render_texture.restype = ctypes.c_void_p
        gtk.gsk_renderer_render_texture.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        gtk.gdk_texture_save_to_png.restype = ctypes.c_int
        gtk.gdk_texture_save_to_png.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        gtk.gsk_render_node_unref.argtypes = [ctypes.c_void_p]
        gtk.g_object_unref.argtypes = [ctypes.c_void_p]

        node = gtk.gtk_snapshot_to_node(ptr(snapshot))
        if not node:
            raise RuntimeError("the window drew nothing")
        rect = (ctypes.c_float * 4)(0, 0, width, height)   # graphene_rect_t
        renderer = ptr(self.get_native().get_renderer())
        texture = gtk.gsk_renderer_render_texture(renderer, node, ctypes.addressof(rect))
        gtk.gsk_render_node_unref(node)
        if not texture:
            raise RuntimeError("the renderer made no texture")
        saved = gtk.gdk_texture_save_to_png(texture, os.fsencode(path))
        gtk.g_object_unref(texture)
        if not saved:
            raise RuntimeError(f"cannot write {path}")


class App((Adw.Application if Adw else Gtk.Application)):
    def __init__(self):
        super().__init__(application_id=APP_ID,
                         flags=Gio.ApplicationFlags.HANDLES_OPEN | Gio.ApplicationFlags.NON_UNIQUE)
        self.window = None
        self.overrides = []
        self.jobs = 0
        self.tracing = False
        self.screenshot = None
        self.status = 0
        self.set_option_context_parameter_string("[RECIPE]")
        # libsmelt's version: also shows that the library loads
        self.set_option_context_summary(
            "Run the exports of a smelt recipe with progress and cancel "
            f"(libsmelt {Smelt.get_major_version()}.{Smelt.get_minor_version()}.{Smelt.get_micro_version()}).")
        self.set_option_context_description(
            "Keyboard shortcuts:\n" +
            "".join(f"  {keys:<14}{what}\n" for _, _, keys, what in SHORTCUTS) +
            "\nExit status: 0, or 1 if the last run failed or was cancelled,"
            " 2 if the recipe could not be read.")
        self.add_main_option("set", ord("s"), GLib.OptionFlags.NONE, GLib.OptionArg.STRING_ARRAY,
                             "Override a recipe key, as smelt run --set", "NAME.Key=Value")
        self.add_main_option("jobs", ord("j"), GLib.OptionFlags.NONE, GLib.OptionArg.INT,
                             "Worker threads (default: one per CPU)", "N")
        self.add_main_option("trace", 0, GLib.OptionFlags.NONE, GLib.OptionArg.NONE,
                             "Print the window's state on stdout as JSON lines (for tests)", None)
        self.add_main_option("screenshot", 0, GLib.OptionFlags.NONE, GLib.OptionArg.FILENAME,
                             "Save the window as PNG when a run ends (for tests)", "PNG")
        self.connect("handle-local-options", self.on_local_options)
        quit_action = Gio.SimpleAction.new("quit", None)
        quit_action.connect("activate", lambda *_: self.request_quit())
        self.add_action(quit_action)
        for action, accel, _, _ in SHORTCUTS:
            self.set_accels_for_action(action, [accel])

    def on_local_options(self, app, options):
        d = options.end().unpack()
        self.overrides = d.get("set", [])
        self.jobs = max(0, d.get("jobs", 0))
        self.tracing = bool(d.get("trace"))
        shot = d.get("screenshot")   # a filename: its bytes and a NUL, as a list
        self.screenshot = os.fsdecode(bytes(shot).rstrip(b"\0")) if shot else None
        if self.tracing:
            sys.stdout.reconfigure(line_buffering=True)
        return -1

    def trace(self, event, **fields):
        if self.tracing:
            print(json.dumps({"event": event, **fields}), flush=True)

    def get_window(self):
        if self.window is None:
            self.window = Window(self)
        return self.window

    def do_activate(self):
        win = self.get_window()
        win.present()
        win.report_ready()

    def do_open(self, files, n_files, hint):
        win = self.get_window()
        win.present()
        win.open_recipe(files[0].get_path(), self.overrides)

    def request_quit(self):
        if self.window is not None and self.window.running():
            self.window.quit_when_done = True
            self.window.cancel()
        else:
            self.quit()


def main():
    app = App()
    rc = app.run(sys.argv)
    app.trace("exit", status=rc or app.status)
    return rc or app.status


if __name__ == "__main__":
    sys.exit(main())

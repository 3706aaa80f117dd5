#!/usr/bin/python3
# smelt-gtk: run smelt recipes from a GTK 4 window.
#
# An example of libsmelt through GObject introspection: it opens a recipe
# (the Open button, or a file given on the command line or by the desktop),
# lists its exports, runs the ticked ones with SmeltExportJob.run_async()
# while a progress bar follows the job's "progress" signal, can cancel, and
# says how it ended. libadwaita is used when it is installed.
#
#   smelt-gtk [RECIPE] [--set NAME.Key=Value]...
#
# Test hooks (tests/gi/test_gtk_example.py): --autorun EXPORT runs that one
# export as soon as the recipe is open, --autocancel presses Cancel at the
# run's first progress report in stage "exporting", --screenshot PNG saves
# the window once the run ends, and the application then quits with status
# 0 if the export succeeded, 1 if not.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import sys
import time

import gi

gi.require_version("Gtk", "4.0")
gi.require_version("Smelt", "1")
try:
    gi.require_version("Adw", "1")
    from gi.repository import Adw
except (ValueError, ImportError):
    Adw = None
from gi.repository import GLib, Gio, Gtk, Smelt  # noqa: E402

APP_ID = "org.smelt.SmeltGtk"


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
    copy = Smelt.Recipe.new_from_data(text, -1, recipe.get_base_dir())
    return copy


class ExportRow(Gtk.ListBoxRow):
    def __init__(self, recipe, name):
        super().__init__(activatable=False, selectable=False)
        self.name = name
        fmt = recipe.get_export_format(name) or "?"
        dest = recipe.get_export_destination(name) or "?"
        box = Gtk.Box(spacing=12, margin_top=8, margin_bottom=8, margin_start=12, margin_end=12)
        self.check = Gtk.CheckButton(active=True)
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
        self.job = None
        self.cancellable = None
        self.started = 0.0

        header = (Adw.HeaderBar() if Adw else Gtk.HeaderBar())
        self.open_button = Gtk.Button(label="Open…")
        self.open_button.connect("clicked", lambda *_: self.choose_recipe())
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
        self.cancel_button = Gtk.Button(label="Cancel", sensitive=False)
        self.cancel_button.connect("clicked", lambda *_: self.cancellable and self.cancellable.cancel())
        buttons.append(self.cancel_button)
        self.run_button = Gtk.Button(label="Run", sensitive=False)
        self.run_button.add_css_class("suggested-action")
        self.run_button.connect("clicked", lambda *_: self.run(None))
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
                self.open_recipe(dialog.get_file().get_path())
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
            return False
        self.recipe = recipe
        name = recipe.get_name()
        self.title.set_label(name)
        self.description.set_label(path)
        while (row := self.list.get_row_at_index(0)) is not None:
            self.list.remove(row)
        for export in recipe.list_exports():
            self.list.append(ExportRow(recipe, export))
        self.run_button.set_sensitive(True)
        self.progress.set_fraction(0.0)
        self.progress.set_text("")
        self.show_status(f"{len(recipe.list_exports())} exports")
        return True

    # ---- running ----

    def selected_exports(self):
        out, i = [], 0
        while (row := self.list.get_row_at_index(i)) is not None:
            if row.check.get_active():
                out.append(row.name)
            i += 1
        return out

    def run(self, only):
        if only:
            i = 0
            while (row := self.list.get_row_at_index(i)) is not None:
                row.check.set_active(row.name == only)
                i += 1
        names = self.selected_exports()
        if not names:
            self.show_status("Tick at least one export.", error=True)
            return False
        try:
            recipe = recipe_subset(self.recipe, names)
        except GLib.Error as e:
            self.show_status(e.message, error=True)
            return False
        self.job = Smelt.ExportJob.new(recipe, Smelt.Registry.get_default())
        self.job.connect("progress", self.on_progress)
        self.cancellable = Gio.Cancellable()
        self.run_button.set_sensitive(False)
        self.open_button.set_sensitive(False)
        self.cancel_button.set_sensitive(True)
        self.show_status("Running " + ", ".join(names) + "…")
        self.started = time.monotonic()
        self.job.run_async(self.cancellable, self.on_done, names)
        return True

    def on_progress(self, job):
        if self.app.autocancel and job.props.stage == "exporting" and self.cancel_button.get_sensitive():
            self.cancel_button.emit("clicked")      # test hook: as a click would
            self.cancel_button.set_sensitive(False)
        self.progress.set_fraction(job.props.fraction)
        tensor = job.props.current_tensor
        self.progress.set_text(f"{job.props.stage} {tensor}" if tensor else job.props.stage)

    def on_done(self, job, result, names):
        self.cancel_button.set_sensitive(False)
        self.run_button.set_sensitive(True)
        self.open_button.set_sensitive(True)
        seconds = time.monotonic() - self.started
        try:
            job.run_finish(result)
            where = "\n".join(f"{n}: {job.describe_destination(n)}" for n in names)
            self.show_status(f"Done in {seconds:.1f} s.\n{where}")
            ok = True
        except GLib.Error as e:
            if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED):
                self.show_status("Cancelled; nothing was written.")
            else:
                self.show_status(f"Failed: {e.message}", error=True)
            ok = False
        self.job = None
        self.app.run_finished(ok)

    def show_status(self, text, error=False):
        self.status.set_label(text)
        if error:
            print(text, file=sys.stderr)
            self.status.add_css_class("error")
        else:
            self.status.remove_css_class("error")

    # ---- screenshot (test hook) ----

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
        self.autorun = None
        self.autocancel = False
        self.screenshot = None
        self.status = 0
        self.add_main_option("set", 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING_ARRAY,
                             "Override a recipe key, as smelt run --set", "NAME.Key=Value")
        self.add_main_option("autorun", 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
                             "Run this export at once, then quit (for tests)", "EXPORT")
        self.add_main_option("autocancel", 0, GLib.OptionFlags.NONE, GLib.OptionArg.NONE,
                             "With --autorun: press Cancel once the export is under way", None)
        self.add_main_option("screenshot", 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
                             "With --autorun: save the window as PNG when the run ends", "PNG")
        self.connect("handle-local-options", self.on_local_options)

    def on_local_options(self, app, options):
        d = options.end().unpack()
        self.overrides = d.get("set", [])
        self.autorun = d.get("autorun")
        self.autocancel = bool(d.get("autocancel"))
        self.screenshot = d.get("screenshot")
        return -1

    def get_window(self):
        if self.window is None:
            self.window = Window(self)
        return self.window

    def do_activate(self):
        self.get_window().present()

    def do_open(self, files, n_files, hint):
        win = self.get_window()
        win.present()
        if not win.open_recipe(files[0].get_path(), self.overrides):
            self.status = 2
            if self.autorun:
                self.quit()
            return
        if self.autorun:
            # run once the window is mapped, so that the screenshot shows it
            GLib.timeout_add(200, self.start_autorun)

    def start_autorun(self):
        try:
            started = self.window.run(self.autorun)
        except Exception as e:
            print(f"autorun: {e}", file=sys.stderr)
            started = False
        if not started:
            print(self.window.status.get_label(), file=sys.stderr)
            self.status = 2
            self.quit()
        return GLib.SOURCE_REMOVE

    def run_finished(self, ok):
        if not self.autorun:
            return
        self.status = 0 if ok else 1
        # let the final state paint before taking the picture
        GLib.timeout_add(300, self.finish_autorun)

    def finish_autorun(self):
        if self.screenshot:
            try:
                self.window.save_screenshot(self.screenshot)
            except Exception as e:  # a missing picture fails the test
                print(f"screenshot: {e}", file=sys.stderr)
                self.status = 3
        print(self.window.status.get_label())
        self.quit()
        return GLib.SOURCE_REMOVE


def main():
    app = App()
    rc = app.run(sys.argv)
    return rc or app.status


if __name__ == "__main__":
    sys.exit(main())

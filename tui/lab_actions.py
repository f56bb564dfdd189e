"""The dashboard's lab keys: compare (m), save and load the config (s, l), export (e), SVG (p).

A mixin of GradTUI, kept apart so app.py stays about the run. Every key that
asks for a path opens a PathDialog; the work is done by the callbacks here,
which turn every failure into one line naming the field ("path: …", or the
config key a loaded file got wrong) and leave the form, the run and any
existing file as they were.

The records of the run are kept by a RecordSpool per session (see
tui/record_spool.py for why on disk): `e` exports every step since the last
reset, in a worker thread so a long run does not freeze the screen.
"""

from __future__ import annotations

import os
from functools import partial

from engine.config import ConfigError, RunConfig
from engine.config_io import load_config, save_config
from engine.export import check_output_path
from engine.presets import PRESETS
from engine.session import RUNNING
from tui.compare import CompareBackScreen, CompareScreen
from tui.record_spool import RecordSpool
from tui.runs import run_label
from tui.widgets.path_dialog import PathDialog
from tui.widgets.preset_picker import PresetPicker
from tui.widgets.sidebar import Sidebar


def check_path(path: str, extensions: tuple[str, ...]) -> str | None:
    """Why `path` cannot be written (one line naming the field), or None."""
    extension = os.path.splitext(path)[1].lower()
    if extensions and extension not in extensions:
        return f"path: {path!r} must end in {' or '.join(extensions)}"
    if os.path.isdir(path):
        return f"path: {path!r} is a directory"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"path: directory {directory!r} does not exist"
    if not os.access(directory, os.W_OK):
        return f"path: directory {directory!r} is not writable"
    return None


class LabActions:
    """Actions and state the lab adds to the dashboard (mixed into GradTUI)."""

    spools: dict  # session -> RecordSpool, set up by GradTUI

    # -- every frame -------------------------------------------------------------
    def lab_frame(self, ctx) -> None:
        """Per frame: the rnn heat map in place of the mean plot; old runs' spools closed."""
        # Found once at mount, not queried per frame (a query walks the whole form).
        grid = getattr(self, "gradient_grid", None)
        if grid is not None:
            grid.set_class(ctx.config.model == "rnn", "-rnn")
        for session, spool in list(self.spools.items()):
            if session is not self.session:
                spool.close()
                del self.spools[session]

    def check_action(self, action: str, parameters) -> bool | None:
        """Dashboard keys act on the dashboard only: not under a dialog or the compare view."""
        if self.screen is not self.default_screen and action in _actions(type(self)):
            return False
        return True

    # -- compare -------------------------------------------------------------------
    def _form_config(self, what: str) -> RunConfig | None:
        form = self.query_one(Sidebar).form
        config = form.validate()
        if config is None:
            reasons = "; ".join(f"{k}: {v}" for k, v in form.errors.items())
            self.notify(f"cannot {what}, the form is invalid: {reasons}", severity="error")
        return config

    def action_compare(self) -> None:
        """m: compare the form's config with a preset, side by side."""
        config = self._form_config("compare")
        if config is None:
            return
        label = run_label(config, self.form_preset)

        def chosen(name: str | None) -> None:
            if name is None:
                return
            if self.session.status().state == RUNNING:
                self.session.pause()
                self.notify("the dashboard's run is paused while you compare")
            screen = CompareBackScreen(
                (label, config),
                (name, PRESETS[name].config),
                fps=self.fps,
                speed=self.speed,
                on_close=self._compare_closed,
            )
            self.push_screen(screen)

        self.push_screen(PresetPicker(f"Compare {label} with…", self.form_preset), chosen)

    def _compare_closed(self, screen: CompareScreen) -> None:
        # Its sessions are stopping in the background; the app joins them at exit.
        self._retired.extend(screen.sessions())
        self.pop_screen()
        self._apply_size(self.size.width, self.size.height)  # a resize may have come meanwhile
        self.call_after_refresh(self.refresh_frame, True)

    # -- keep and share --------------------------------------------------------------
    def _slug(self) -> str:
        return self.form_preset or "custom"

    def action_save_config(self) -> None:
        """s: save the form's config as TOML (gradtui --config FILE loads it)."""
        config = self._form_config("save")
        if config is None:
            return
        label = run_label(config, self.form_preset)

        def submit(path: str) -> str | None:
            try:
                save_config(config, path, title=f"gradtui config: {label}")
            except ConfigError as error:
                return f"path: {error.reason}"
            self.notify(f"saved {label} to {path}")
            return None

        self.push_screen(
            PathDialog(
                "Save the form's config as TOML",
                f"gradtui-{self._slug()}.toml",
                submit,
                hint="load it with l, or: gradtui --config FILE",
            )
        )

    def action_load_config(self) -> None:
        """l: load a TOML config into the form (r then starts it)."""
        form = self.query_one(Sidebar).form

        def submit(path: str) -> str | None:
            try:
                config = load_config(path, base=form.config or self.session.config)
            except ConfigError as error:
                if error.field == "config":
                    return f"path: {error.reason}"
                return f"{error.field} (in {path}): {error.reason}"
            # A preset's config on another device is still that preset (as run_label says).
            same = [
                n for n, p in PRESETS.items() if p.config.replace(device=config.device) == config
            ]
            self.form_preset = same[0] if same else None
            form.load(config)
            self.query_one(Sidebar).explain(self.form_preset)
            self._update_form_notice()
            self.notify(f"loaded {path} into the form: r starts it")
            return None

        self.push_screen(
            PathDialog(
                "Load a config (TOML) into the form",
                f"gradtui-{self._slug()}.toml",
                submit,
                hint="the running session is untouched until r",
                overwrite_check=False,
            )
        )

    def action_export(self) -> None:
        """e: write every record since the last reset to a .jsonl or .csv file."""
        spool = self.spools.get(self.session)
        if spool is None or spool.count == 0:
            self.notify("nothing to export yet: no step has been trained", severity="warning")
            return
        if spool.error:
            self.notify(f"export incomplete: {spool.error}", severity="warning")

        def submit(path: str) -> str | None:
            try:
                check_output_path(path)
            except ConfigError as error:
                return f"path: {error.reason}"
            self.run_worker(partial(self._export, spool, path), thread=True, exit_on_error=False)
            return None

        self.push_screen(
            PathDialog(
                "Export the run's records",
                f"gradtui-{self._slug()}-{spool.count}steps.jsonl",
                submit,
                hint="every step since the last reset; .jsonl or .csv",
            )
        )

    def _export(self, spool: RecordSpool, path: str) -> None:
        """In a worker thread: write the file, then say how it went."""
        try:
            count = spool.export(path)
        except (ConfigError, OSError, ValueError) as error:
            message = f"path: export to {path} failed: {getattr(error, 'reason', error)}"
            self.call_from_thread(self.notify, message, severity="error")
            return
        self.exported = (path, count)
        self.call_from_thread(self.notify, f"exported {count} records to {path}")

    def action_screenshot(self) -> None:
        """p: save the screen as SVG (Textual's own screenshot)."""
        step = self.session.status().step

        def submit(path: str) -> str | None:
            error = check_path(path, (".svg",))
            if error is None:
                # After the dialog has gone, so it is not in the picture.
                self.call_after_refresh(self._save_svg, path)
            return error

        self.push_screen(
            PathDialog("Save a screenshot (SVG)", f"gradtui-{self._slug()}-step{step}.svg", submit)
        )

    def _save_svg(self, path: str) -> None:
        directory, name = os.path.split(os.path.abspath(path))
        try:
            self.save_screenshot(filename=name, path=directory)
        except OSError as error:
            self.notify(f"path: cannot write {path}: {error.strerror or error}", severity="error")
            return
        self.notify(f"screenshot saved to {path}")


def _actions(app_class) -> set[str]:
    """The actions of the dashboard's own bindings."""
    return {binding.action for binding in app_class.BINDINGS}

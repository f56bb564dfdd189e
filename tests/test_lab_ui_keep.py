"""Keep and share: save/load the config (s, l), export the records (e), an SVG (p), the footer.

Bad paths give one line naming the field in the dialog, which stays open with
the path as typed; the form, the run and existing files are left as they were.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from textual.widgets import Input, Static

from engine.config_io import load_config
from engine.export import record_to_json
from engine.presets import PRESETS
from tui.app import GradTUI
from tui.testing import mounted_form, press_step, screen_text, wait_until
from tui.widgets.path_dialog import PathDialog


def _app() -> GradTUI:
    return GradTUI(PRESETS["clip-value"].config.replace(device="cpu"), "clip-value")


async def _dialog(pilot, app, key: str, path) -> PathDialog:
    """Press `key`, type `path` into the dialog and press enter; the dialog (maybe closed)."""
    await pilot.press(key)
    assert await wait_until(pilot, lambda: isinstance(app.screen, PathDialog))
    dialog = app.screen
    dialog.query_one("#path", Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()
    return dialog


def _error(dialog: PathDialog) -> str:
    return str(dialog.query_one("#path-error", Static).render())


def test_save_then_load_round_trips_through_the_form(tmp_path):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            target = tmp_path / "mine.toml"
            dialog = await _dialog(pilot, app, "s", target)
            assert app.screen is not dialog and target.is_file()
            form = await mounted_form(pilot, app)
            assert load_config(target) == form.config
            form.field("lr").value = "0.5"  # an edit, not applied: the run is untouched
            await pilot.pause()
            assert form.config.lr == 0.5
            await _dialog(pilot, app, "l", target)
            assert form.field("lr").value == "0.1" and form.config == load_config(target)
            assert app.form_preset == "clip-value"  # the file matches the preset
            assert app.session.config == PRESETS["clip-value"].config.replace(device="cpu")

    asyncio.run(scenario())


def test_bad_paths_and_files_give_one_line_naming_the_field(tmp_path):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            form = await mounted_form(pilot, app)
            before = form.config
            dialog = await _dialog(pilot, app, "s", tmp_path / "missing" / "x.toml")
            assert app.screen is dialog  # still open, the path as typed
            assert _error(dialog).startswith("path: cannot write")
            await pilot.press("escape")
            bad = tmp_path / "bad.toml"
            bad.write_text('lr = "fast"\n')
            dialog = await _dialog(pilot, app, "l", bad)
            assert _error(dialog) == f"lr (in {bad}): expected a number, got string 'fast'"
            await pilot.press("escape")
            dialog = await _dialog(pilot, app, "l", tmp_path / "nowhere.toml")
            assert _error(dialog).startswith("path: cannot read")
            await pilot.press("escape")
            assert form.config == before and app.screen is app.default_screen

    asyncio.run(scenario())


def test_an_existing_file_is_replaced_only_after_a_second_enter(tmp_path):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            target = tmp_path / "kept.toml"
            target.write_text("mine\n")
            dialog = await _dialog(pilot, app, "s", target)
            assert app.screen is dialog and "exists" in _error(dialog)
            assert target.read_text() == "mine\n"
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is not dialog and "clip = " in target.read_text()

    asyncio.run(scenario())


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_e_exports_every_step_since_the_reset(tmp_path, suffix):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("e")  # nothing yet: a warning, no dialog
            await pilot.pause()
            assert app.screen is app.default_screen
            await press_step(pilot, app, 3)
            target = tmp_path / f"run{suffix}"
            await _dialog(pilot, app, "e", target)
            assert await wait_until(pilot, lambda: getattr(app, "exported", None) is not None)
            assert app.exported == (str(target), 3)
            lines = target.read_text().splitlines()
            if suffix == ".jsonl":
                assert [json.loads(line)["step"] for line in lines] == [0, 1, 2]
                latest = json.loads(json.dumps(record_to_json(app.session.history.latest)))
                assert json.loads(lines[-1]) == latest
            else:
                assert lines[0].startswith("step,epoch,loss") and len(lines) == 4

    asyncio.run(scenario())


def test_export_refuses_a_wrong_extension_in_one_line(tmp_path):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 1)
            dialog = await _dialog(pilot, app, "e", tmp_path / "run.txt")
            assert _error(dialog) == f"path: '{tmp_path / 'run.txt'}' must end in .jsonl or .csv"
            assert not (tmp_path / "run.txt").exists()

    asyncio.run(scenario())


def test_p_saves_an_svg_screenshot(tmp_path):
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 1)
            target = tmp_path / "shot.svg"
            await _dialog(pilot, app, "p", target)
            assert await wait_until(pilot, target.is_file)
            svg = target.read_text()
            assert svg.lstrip().startswith("<svg") and "Save a screenshot" not in svg
            dialog = await _dialog(pilot, app, "p", tmp_path / "shot.png")
            assert _error(dialog) == f"path: '{tmp_path / 'shot.png'}' must end in .svg"

    asyncio.run(scenario())


def test_an_invalid_form_is_not_saved():
    async def scenario():
        app = _app()
        async with app.run_test(size=(120, 40)) as pilot:
            (await mounted_form(pilot, app)).field("lr").value = "fast"
            await pilot.pause()
            await pilot.press("escape", "s")
            await pilot.pause()
            assert app.screen is app.default_screen  # refused before any dialog

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48)])
def test_every_binding_shows_in_the_footer(size):
    async def scenario():
        app = _app()
        async with app.run_test(size=size) as pilot:

            def missing() -> list[str]:
                text = screen_text(app)
                return [
                    b.description
                    for b in GradTUI.BINDINGS
                    if f"{app.get_key_display(b)} {b.description}" not in text
                ]

            # The footer recomposes once the config form mounts (after the first frame).
            await mounted_form(pilot, app)
            await wait_until(pilot, lambda: not missing())
            assert not missing(), size

    asyncio.run(scenario())

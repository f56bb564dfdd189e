"""The dashboard starts on every preset, names the layers at once, and never waits for torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from engine.presets import DEFAULT_PRESET, PRESETS
from tui.app import GradTUI
from tui.layers import expected_layers
from tui.plotting import short_name
from tui.testing import mounted_form, press_step, screen_text, wait_for_frame


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_launches_and_its_first_frame_names_its_layers(name):
    async def scenario():
        app = GradTUI(PRESETS[name].config, name)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_frame(pilot, app)
            layers = expected_layers(app.session.config)
            if not layers:  # a model whose names only the built model knows
                await press_step(pilot, app)
                layers = app.session.status().layer_names
            text = screen_text(app)
            assert name in text.splitlines()[0]  # the status line names the preset
            for layer in layers:
                assert f"━{layer}" in text, f"{layer} missing from the legends"
            flow = app.query_one("#flow")
            flow_text = flow.surface.cells.plain
            assert all(short_name(layer, 9) in flow_text for layer in layers)

    asyncio.run(scenario())


def test_first_frame_is_painted_before_torch_is_imported():
    # A fresh interpreter: the dashboard paints with the torch warm-up disabled,
    # and neither torch nor sklearn may have been imported by then.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        import tui.app
        tui.app.warm_torch = lambda: None
        from engine.presets import PRESETS
        from tui.testing import screen_text, wait_for_frame

        async def main():
            app = tui.app.GradTUI(PRESETS[{DEFAULT_PRESET!r}].config, {DEFAULT_PRESET!r})
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for_frame(pilot, app)
                assert "━h1" in screen_text(app)
                print("torch" in sys.modules, "sklearn" in sys.modules)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_torch_is_warmed_up_in_the_background_once_the_first_frame_is_drawn(monkeypatch):
    # The import holds the interpreter's lock for seconds: begun at mount, it slowed
    # the first layout and paint by a fifth. It must still begin, unasked.
    import threading

    import tui.app

    seen: list[bool] = []  # whether a frame was drawn when the warm-up began
    ran = threading.Event()

    async def scenario():
        app = GradTUI(PRESETS[DEFAULT_PRESET].config, DEFAULT_PRESET)

        def warm() -> None:
            seen.append(app.frame_ms > 0)  # a frame was drawn (one attribute read)
            ran.set()

        monkeypatch.setattr(tui.app, "warm_torch", warm)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_frame(pilot, app)
            for _ in range(100):
                if ran.is_set():
                    break
                await pilot.pause(0.02)
            assert ran.is_set()
            assert seen == [True]

    asyncio.run(scenario())


def test_cli_style_construction_with_fps():
    async def scenario():
        config = PRESETS["relu-kaiming"].config.replace(lr=0.05)
        app = GradTUI(config=config, preset="relu-kaiming", fps=4)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for_frame(pilot, app)
            assert app.session.config == config
            # A config edited from its preset says which field differs.
            assert "relu-kaiming + lr=0.05" in screen_text(app)
            assert (await mounted_form(pilot, app)).field("lr").value == "0.05"

    asyncio.run(scenario())

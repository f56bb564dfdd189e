"""The config form mounts after the dashboard's first frame, and answers before it does.

212 of the dashboard's 270 widgets are the form's; mounted with the rest they
held the first frame back by half (tui.widgets.sidebar). Until it mounts, a
preset chosen or a reset asked for works on the config it will show.
"""

from __future__ import annotations

import asyncio

from textual.app import App

from engine.presets import PRESETS
from tui.app import GradTUI
from tui.testing import mounted_form
from tui.widgets.config_form import ConfigForm
from tui.widgets.sidebar import Sidebar


def test_a_form_not_yet_mounted_takes_a_preset_and_shows_it_once_mounted():
    form = ConfigForm(PRESETS["sigmoid-normal"].config, id="form")
    chosen = PRESETS["clip-norm"].config
    form.load(chosen)
    assert form.validate() == chosen and form.config == chosen and not form.errors

    class Host(App):
        def compose(self):
            yield form

    async def scenario():
        async with Host().run_test(size=(60, 80)) as pilot:
            await pilot.pause()
            assert form.is_mounted
            assert form.field("clip").value == chosen.clip
            assert form.field("max_norm").value == repr(chosen.max_norm)
            assert form.validate() == chosen

    asyncio.run(scenario())


def test_the_form_mounts_after_the_rest_of_the_dashboard_then_shows_the_run_s_config(monkeypatch):
    # textual.lazy.Lazy mounts it after the screen's first refresh; the panel
    # around it is mounted (and explains its preset) without it.
    seen_when_the_panel_mounted = []
    panel_mounted = Sidebar.on_mount

    def watched(self) -> None:
        seen_when_the_panel_mounted.append(self.form.is_mounted)
        panel_mounted(self)

    monkeypatch.setattr(Sidebar, "on_mount", watched)

    async def scenario():
        config = PRESETS["sigmoid-normal"].config
        app = GradTUI(config, "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            form = await mounted_form(pilot, app)
            assert seen_when_the_panel_mounted == [False]
            assert app.query_one("#form") is form and form.validate() == config

    asyncio.run(scenario())

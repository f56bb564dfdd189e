"""The dashboard is usable at 80×24, uses the room at 200×60, and says when it is too small."""

from __future__ import annotations

import asyncio

import pytest

from engine.presets import PRESETS
from tui.app import GradTUI
from tui.testing import press_step, screen_text, wait_for_frame

PLOTS = ("#loss", "#grad-mean", "#grad-norm", "#flow")
HISTOGRAMS = ("#hist-weight", "#hist-act", "#hist-grad")
TITLES = (
    "Loss per step",
    "Gradient mean per layer",
    "Gradient norm per layer",
    "Gradient flow now",
)


def _assert_visible(app, selectors, min_width, min_height):
    screen = app.screen.region
    for selector in selectors:
        panel = app.query_one(selector)
        region = panel.region
        assert region.width >= min_width and region.height >= min_height, (selector, region)
        assert screen.contains_region(region), (selector, region)


@pytest.mark.parametrize(("size", "sidebar"), [((80, 24), False), ((200, 60), True)])
def test_resizing_keeps_every_plot_visible(size, sidebar):
    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config, "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app)
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await wait_for_frame(pilot, app)
            app.refresh_frame()
            await pilot.pause()
            width, height = size
            # 80×24: plots of at least 38×8 cells; 200×60: they grow to use the room.
            least = (38, 8) if width == 80 else (75, 25)
            _assert_visible(app, PLOTS, *least)
            text = screen_text(app)
            assert all(title in text for title in TITLES)
            assert app.query_one("#sidebar").display == sidebar
            await pilot.press("d")
            await pilot.pause()
            await wait_for_frame(pilot, app)
            views = app.query_one("#views").region
            _assert_visible(app, HISTOGRAMS, views.width // 3 - 1, views.height)
            assert "Gradients · step 0" in screen_text(app)

    asyncio.run(scenario())


def test_the_side_panel_can_be_shown_at_80_columns_and_plots_stay_visible():
    async def scenario():
        app = GradTUI(PRESETS["exploding"].config, "exploding")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for_frame(pilot, app)
            assert not app.query_one("#sidebar").display
            await pilot.press("c")
            await pilot.pause()
            assert app.query_one("#sidebar").display
            _assert_visible(app, PLOTS, 12, 6)
            text = screen_text(app)
            assert "sigmoid-normal" in text and "Presets" in text

    asyncio.run(scenario())


def test_a_tiny_terminal_gets_a_clear_message():
    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config, "sigmoid-normal")
        async with app.run_test(size=(36, 10)) as pilot:
            await pilot.pause()
            assert "terminal too small" in screen_text(app)
            await pilot.resize_terminal(100, 30)
            await pilot.pause()
            await pilot.pause()
            assert "terminal too small" not in screen_text(app)

    asyncio.run(scenario())


def test_the_status_line_keeps_its_height_when_the_budget_spaces_captures_out():
    """The rows the status line needs once the budget binds are kept from the start.

    "stats every ~11 (≤0.5% of time)" appears a second into a fast run; a bar
    that grew then would re-arrange the whole screen mid-run (0.1-0.3 s of the
    main thread) and make every panel below it jump.
    """
    from textual.app import App

    from engine.session_status import SessionStatus
    from tui.widgets.status_bar import StatusBar

    config = PRESETS["sigmoid-normal"].config

    def status(state: str, step: int, periods: tuple | None) -> SessionStatus:
        acts, stats = periods or (None, None)
        return SessionStatus(
            state, step, step, 2000, 250.0, None, None, ("h1",), "cpu", acts, stats
        )

    class Host(App):
        def compose(self):
            yield StatusBar()

    async def scenario() -> None:
        app = Host()
        async with app.run_test(size=(84, 12)) as pilot:
            bar = app.query_one(StatusBar)

            def show(state: str, step: int, periods: tuple | None = None) -> None:
                bar.show(status(state, step, periods), config, "sigmoid-normal", None, None, None)

            show("idle", 0)
            await pilot.pause()
            show("idle", 0)  # now laid out: its rows are counted
            await pilot.pause()
            height = bar.region.height
            idle_text = str(bar.render())
            assert "(≤0.5% of time)" not in idle_text
            layouts = []
            original = app.screen._refresh_layout
            app.screen._refresh_layout = lambda *a, **k: (layouts.append(1), original(*a, **k))
            for step, periods in ((5, None), (900, (56, 11)), (1500, (4321, 9876))):
                show("running", step, periods)
                await pilot.pause()
                assert bar.region.height == height
            assert "(≤0.5% of time)" in str(bar.render())
            assert layouts == []
            assert bar.region.height > 2  # the phrase wraps at this width: room kept for it

    asyncio.run(scenario())


@pytest.mark.parametrize(("size", "sidebar"), [((120, 40), True), ((90, 30), False)])
def test_the_screen_is_styled_for_its_size_before_its_widgets_mount(monkeypatch, size, sidebar):
    # A class set on the screen restyles every widget on it: set at mount, it
    # styled the whole dashboard twice before the first frame (~0.3 s of a
    # 1.8 s start on 2 cores). The panels mount seeing the classes already.
    from tui.widgets.sidebar import Sidebar

    seen = []
    original = Sidebar.on_mount

    def on_mount(self) -> None:
        seen.append(self.app.screen.has_class("-sidebar"))
        original(self)

    monkeypatch.setattr(Sidebar, "on_mount", on_mount)

    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config, "sigmoid-normal")
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            assert seen == [sidebar]
            assert app.screen.has_class("-sidebar") is sidebar

    asyncio.run(scenario())

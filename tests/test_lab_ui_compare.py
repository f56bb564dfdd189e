"""Compare: two configs side by side, same seeds, shared axes, one set of keys, two verdicts."""

from __future__ import annotations

import asyncio

from textual.widgets import OptionList

from engine.presets import PRESETS
from engine.session import PAUSED, RUNNING
from tui.app import GradTUI
from tui.compare import CompareApp, CompareScreen, seeded_pair
from tui.frames import visible_panels
from tui.testing import screen_text, wait_until
from tui.widgets.diagnosis_panel import VerdictLine
from tui.widgets.panel import HistoryPanel
from tui.widgets.preset_picker import PresetPicker


def _side(name: str):
    return name, PRESETS[name].config.replace(device="cpu")


def _compare(left: str, right: str) -> CompareApp:
    app = CompareApp(_side(left), _side(right))
    app.compare.show_rate = False
    return app


async def _steps(pilot, screen: CompareScreen, count: int) -> None:
    """Press n `count` times, each waited for on both sides, then wait for both sides' frames."""
    for _ in range(count):
        target = [s.step + 1 for s in screen.pair.status()]
        await pilot.press("n")
        assert await wait_until(
            pilot,
            lambda t=target: all(s.step >= g for s, g in zip(screen.pair.status(), t, strict=True)),
        )
    await _settled(pilot, screen)


async def _settled(pilot, screen: CompareScreen) -> None:
    def drawn() -> bool:
        if not screen.contexts:
            return False
        versions = [s.history.version for s in screen.pair.sessions]
        if [c.version for c in screen.contexts] != versions:
            return False
        panels = visible_panels(screen.query(HistoryPanel))
        return all(p.drawn and not p.needs_draw(screen.contexts[p.side]) for p in panels)

    assert await wait_until(pilot, drawn)
    await pilot.pause()


def _verdict(screen: CompareScreen, side: int) -> str:
    return screen.query_one(f"#verdict-{side}", VerdictLine).surface.cells.plain


def test_two_presets_side_by_side_on_shared_axes_with_their_verdicts():
    async def scenario():
        app = _compare("sigmoid-normal", "relu-kaiming")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.compare
            await _steps(pilot, screen, 3)
            text = screen_text(app)
            assert "A: sigmoid-normal" in text and "B: relu-kaiming" in text
            assert "differs: activation: sigmoid → relu, init: normal → kaiming_uniform" in text
            assert "same seeds (seed 13" in text
            assert [s.step for s in screen.pair.status()] == [3, 3]
            assert "VANISHING" in _verdict(screen, 0) and "HEALTHY" in _verdict(screen, 1)
            for name in ("loss", "grad-norm"):
                left, right = (screen.query_one(f"#{name}-{side}") for side in (0, 1))
                assert left.shared == right.shared and None not in left.shared, name
            # Flow bars: the same decades on both sides (gutter labels row by row).
            gutters = [
                [
                    row[:6]
                    for row in screen.query_one(f"#flow-{side}").surface.cells.plain.split("\n")
                ]
                for side in (0, 1)
            ]
            assert gutters[0] == gutters[1] and any(g.strip() for g in gutters[0])

    asyncio.run(scenario())


def test_space_n_r_and_q_drive_both_runs():
    async def scenario():
        app = _compare("clip-value", "clip-hook")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.compare
            assert "differs: clip: value → hook" in screen_text(app)
            await pilot.press("minus", "minus", "minus", "minus")  # 20 steps/s: still running
            assert screen.speed == 20 and all(
                s.max_steps_per_second == 20 for s in screen.pair.sessions
            )
            assert "speed 20/s" in screen_text(app)
            await pilot.press("space")
            assert await wait_until(pilot, lambda: all(s.step >= 2 for s in screen.pair.status()))
            assert all(s.state == RUNNING for s in screen.pair.status())
            await pilot.press("space")
            assert await wait_until(
                pilot, lambda: all(s.state == PAUSED for s in screen.pair.status())
            )
            old = screen.pair
            await pilot.press("r")
            assert screen.pair is not old
            assert [s.step for s in screen.pair.status()] == [0, 0]
            await _steps(pilot, screen, 1)
            sessions = screen.sessions()
            await pilot.press("q")
        assert all(s.stop(timeout=5) for s in sessions)
        assert not any(s.alive for s in sessions)

    asyncio.run(scenario())


def test_the_right_side_takes_the_left_sides_seeds_and_says_so():
    left, right = seeded_pair(_side("exploding"), _side("clip-value"))
    assert right[0] == "clip-value (seeds of exploding)"
    assert right[1].init_seed == left[1].init_seed and right[1].seed == left[1].seed
    same = seeded_pair(_side("clip-value"), _side("clip-hook"))[1]
    assert same == _side("clip-hook")  # already the same seeds: unchanged, no note


def test_rnn_pairs_get_heat_maps_on_one_colour_scale():
    async def scenario():
        config = PRESETS["rnn-exploding"].config.replace(device="cpu")
        app = CompareApp(("rnn-exploding", config), ("timestep", config.replace(clip="timestep")))
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.compare
            await _steps(pilot, screen, 1)
            assert "differs: clip: none → timestep" in screen_text(app)
            legends = [
                screen.query_one(f"#timesteps-{side}").surface.cells.plain.splitlines()[-1]
                for side in (0, 1)
            ]
            assert legends[0] == legends[1] and "NaN/inf" in legends[0]

    asyncio.run(scenario())


def test_m_in_the_dashboard_compares_the_form_with_a_preset_and_q_comes_back():
    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config.replace(device="cpu"), "sigmoid-normal")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("m")
            assert await wait_until(pilot, lambda: isinstance(app.screen, PresetPicker))
            options = app.screen.query_one(OptionList)
            options.highlighted = list(PRESETS).index("relu-kaiming")
            await pilot.press("enter")
            assert await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
            screen = app.screen
            assert screen.sides[0][0] == "sigmoid-normal" and screen.sides[1][0] == "relu-kaiming"
            await _steps(pilot, screen, 2)
            text = screen_text(app)
            assert "q Back" in text and "Save cfg" not in text  # the dashboard's keys are off
            await pilot.press("d")
            assert app.view == "gradients"  # d belongs to the dashboard: nothing happened
            assert app.session.status().step == 0  # the dashboard's run was not stepped
            sessions = screen.sessions()
            await pilot.press("q")
            assert await wait_until(pilot, lambda: app.screen is app.default_screen)
            assert all(s in app._retired for s in sessions)
            await pilot.press("n")
            assert await wait_until(pilot, lambda: app.session.status().step == 1)

    asyncio.run(scenario())


def test_a_short_terminal_keeps_loss_and_flow_and_drops_the_norm_pair():
    async def scenario():
        app = _compare("sigmoid-normal", "relu-kaiming")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.compare
            await _steps(pilot, screen, 1)
            assert not screen.query_one("#grad-norm-0").display
            assert screen.query_one("#loss-0").size.height >= 6  # inside the border
            assert screen.query_one("#flow-1").size.height >= 6
            await pilot.resize_terminal(120, 40)
            await pilot.pause()
            assert screen.query_one("#grad-norm-0").display

    asyncio.run(scenario())

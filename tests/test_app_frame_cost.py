"""The dashboard stays cheap while a run trains unthrottled (issue 4 §3).

The UI thread shares the interpreter's lock with the training thread, so
what it draws costs training steps: frames of a running run must not lay the
screen out again, and plot redraws are spaced by a CPU budget (PlotPacer)
while the cheap panels keep the frame rate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.presets import PRESETS
from tui import frames
from tui.app import GradTUI
from tui.frames import PlotPacer, draw_frame, visible_panels
from tui.testing import screen_text, wait_for_frame, wait_until
from tui.widgets.line_plot import LinePlotPanel


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_waits_the_charged_time_divided_by_its_share(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(frames.time, "monotonic", clock)
    pacer = PlotPacer(share=0.05)
    assert pacer.ready()
    pacer.charge(0.01)  # 10 ms of CPU at 5% of a core: 200 ms
    assert not pacer.ready()
    clock.now += 0.19
    assert not pacer.ready()
    clock.now += 0.02
    assert pacer.ready()
    clock.now += 60.0  # an idle minute is not saved up for a burst
    pacer.charge(0.01)
    assert not pacer.ready()


@dataclass
class _Panel:
    HEAVY: bool
    stale: bool = True
    drawn_at: float = 0.0
    render_time: float = 0.0
    drawn: bool = True

    def needs_draw(self, ctx) -> bool:
        return self.stale

    def update_frame(self, ctx, force: bool = False) -> bool:
        drew = self.stale or force
        self.stale = False
        return drew

    def take_render_time(self) -> float:
        spent, self.render_time = self.render_time, 0.0
        return spent


def test_a_plot_waits_for_the_pacer_and_cheap_panels_do_not(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(frames.time, "monotonic", clock)
    pacer = PlotPacer(share=0.05)
    pacer.charge(0.01)
    cheap, plot = _Panel(HEAVY=False), _Panel(HEAVY=True, render_time=0.02)
    assert not draw_frame([cheap, plot], None, pacer=pacer)
    assert not cheap.stale and plot.stale
    assert pacer.free_at > clock.now + 0.6  # the plot's render was charged as well
    clock.now = pacer.free_at
    assert draw_frame([cheap, plot], None, pacer=pacer)
    # Without a pacer (a paused, stepped or throttled run) a stale plot draws at once.
    plot.stale = True
    assert draw_frame([cheap, plot], None)


def test_a_running_dashboard_draws_without_relayouts_and_its_plots_stay_live():
    async def scenario():
        app = GradTUI(PRESETS["standardized"].config.replace(epochs=1000), "standardized")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.session.status().step >= 50)
            await pilot.pause(0.5)  # the status line has grown to its running height
            layouts = []
            screen = app.screen
            original = screen._refresh_layout

            def counting(*args, **kwargs):
                layouts.append(1)
                return original(*args, **kwargs)

            screen._refresh_layout = counting
            plots = [p for p in visible_panels(app.query(LinePlotPanel))]
            since = {plot: plot.drawn_at for plot in plots}
            step = app.session.status().step
            # Every plot is redrawn while the run goes on (at its paced rate) ...
            live = await wait_until(
                pilot, lambda: all(p.drawn_at > since[p] for p in plots), timeout=30
            )
            assert live and app.session.status().step > step
            # ... and the frames meanwhile (ten a second) moved the status line and the flow
            # bars without laying the screen out each time (a layout redraws every plot);
            # the status line may still grow a row once, when its text gets longer.
            assert len(layouts) <= 2, len(layouts)
            await pilot.press("space")
            app.session.pause(wait=True)
            await wait_for_frame(pilot, app)  # paused: every plot catches up at once
            assert app.drawn_version == app.session.history.version

    asyncio.run(scenario())


def test_frames_of_an_unthrottled_run_take_turns_with_it_and_always_let_it_go():
    """Each frame holds the run between steps until painted (engine.gate); none is left held."""

    async def scenario():
        app = GradTUI(PRESETS["standardized"].config.replace(epochs=1000), "standardized")
        async with app.run_test(size=(120, 40)) as pilot:
            assert app.speed is None  # unthrottled: the frames take turns
            await pilot.press("space")
            assert await wait_until(pilot, lambda: app.frame_hold_seconds > 0)
            shown = app.session.status().step
            # The run goes on between frames, and the status line follows it.
            assert await wait_until(pilot, lambda: app.session.status().step > shown + 100)
            assert await wait_until(pilot, lambda: f"trained {shown}" not in screen_text(app))
            # A throttled run sleeps between steps: its frames do not hold it.
            await pilot.press("minus")
            assert await wait_until(pilot, lambda: app._held is None)  # a frame in flight ends
            held = app.frame_hold_seconds
            await pilot.pause(0.5)
            assert app.frame_hold_seconds == held
            await pilot.press("space")
            app.session.pause(wait=True)
            assert app._held is None  # nothing is left waiting for a release

    asyncio.run(scenario())


class _HeldSession:
    """A session that counts the releases a frame loop gives it."""

    released = 0

    def release_hold(self) -> None:
        self.released += 1


def _paced_loop(monkeypatch):
    # A FrameLoop whose frames only count, on a clock the test moves.
    from tui import frame_loop

    clock = _Clock()
    monkeypatch.setattr(frame_loop.time, "perf_counter", clock)

    class Loop(frame_loop.FrameLoop):
        def __init__(self) -> None:
            self.frames = 0

        def refresh_frame(self, force: bool = False) -> None:
            self.frames += 1

    return Loop(), clock


def _hold(loop, clock, seconds: float) -> _HeldSession:
    # A frame held the run for `seconds`, until painted, and released it.
    session = _HeldSession()
    loop._held, loop._held_since = session, clock.now
    clock.now += seconds
    loop.release_training()
    return session


def test_timer_frames_are_spaced_to_their_share_of_a_held_run(monkeypatch):
    from tui import frame_loop

    loop, clock = _paced_loop(monkeypatch)
    loop.frame_tick()
    assert loop.frames == 1
    session = _hold(loop, clock, 0.004)
    assert session.released == 1 and abs(loop.frame_hold_seconds - 0.004) < 1e-9
    # At FRAME_SHARE of the time, the next timer frame comes 4 ms / share later.
    gap = 0.004 / frame_loop.FRAME_SHARE - 0.004
    clock.now += gap * 0.9
    loop.frame_tick()
    assert loop.frames == 1
    clock.now += gap * 0.2
    loop.frame_tick()
    assert loop.frames == 2


def test_a_slow_paint_neither_freezes_the_dashboard_nor_counts_past_the_gate(monkeypatch):
    from engine.gate import HOLD_LIMIT
    from tui import frame_loop

    loop, clock = _paced_loop(monkeypatch)
    loop.frame_tick()
    _hold(loop, clock, 0.5)  # one paint took half a second (a slow minute, a collection)
    # the run went on by itself after the gate's limit: that is what it waited
    assert abs(loop.frame_hold_seconds - HOLD_LIMIT) < 1e-9
    clock.now += frame_loop.MAX_FRAME_GAP  # not 0.5 / share (9.5 s) of a frozen screen
    loop.frame_tick()
    assert loop.frames == 2

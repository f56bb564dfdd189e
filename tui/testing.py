"""Helpers for driving the dashboard headless: tests, snapshots and frame benchmarks.

Waits are bounded polling loops (a number of short pauses), never a sleep
sized to the machine's speed, so a slow machine makes a test slower, not
wrong.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

POLL = 0.05  # seconds per pause while waiting


async def wait_until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Pause until predicate() holds or `timeout` seconds of pauses have passed."""
    for _ in range(int(timeout / POLL)):
        if predicate():
            return True
        await pilot.pause(POLL)
    return predicate()


async def wait_for_frame(pilot: Pilot, app) -> None:
    """Wait until the plots have drawn the history's current version, then repaint."""
    await wait_until(pilot, lambda: app.drawn_version == app.session.history.version)
    await pilot.pause()


async def mounted_form(pilot: Pilot, app):
    """The side panel's config form, once mounted: it mounts after the first frame."""
    from tui.widgets.sidebar import Sidebar

    form = app.query_one(Sidebar).form
    assert await wait_until(pilot, lambda: form.is_mounted), "the config form never mounted"
    return form


async def press_step(pilot: Pilot, app, count: int = 1, timeout: float = 60.0) -> None:
    """Press n `count` times, each time waiting for its step to arrive and be drawn."""
    for _ in range(count):
        target = app.session.status().step + 1
        await pilot.press("n")
        reached = await wait_until(
            pilot, lambda target=target: app.session.status().step >= target, timeout
        )
        assert reached, f"step {target} did not arrive: {app.session.status()}"
    await wait_for_frame(pilot, app)


def screen_text(app: App) -> str:
    """What the terminal shows now, as plain text (one line per row)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
    )
    # The same render the app's own SVG screenshots use.
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def synthetic_history(steps: int, layers: int = 10, nan_at: int | None = None):
    """A History filled with `steps` made-up records of a `layers`-layer model.

    Gradients shrink toward the input like a vanishing net; with `nan_at`, the
    loss and the first layer's gradient turn NaN from that step on. For frame
    benchmarks and bounded-read tests; no torch involved.
    """
    import math

    from engine.history import History
    from engine.records import Histogram, LayerStats, StepRecord

    history = History()
    names = [f"h{i}" for i in range(1, layers)] + ["o"]
    hist = Histogram(-1.0, 1.0, tuple(float(abs(12 - b)) for b in range(24)))
    for step in range(steps):
        bad = nan_at is not None and step >= nan_at
        loss = math.nan if bad else 1.0 / (1 + step) + 0.1
        stats = {}
        for i, name in enumerate(names):
            norm = 10.0 ** (i - layers) * (1 + 0.1 * math.sin(step / 50))
            mean = norm * 0.01 * (-1) ** i
            if bad and i == 0:
                norm = mean = math.nan
            stats[name] = LayerStats(
                grad_mean=mean,
                grad_std=norm,
                grad_norm=norm,
                grad_abs_max=norm,
                raw_grad_mean=mean,
                raw_grad_std=norm,
                raw_grad_norm=norm,
                raw_grad_abs_max=norm,
                weight_mean=0.0,
                weight_std=0.1,
            )
        hists = None
        if step % 10 == 0:
            hists = {kind: {name: hist for name in names} for kind in ("weight", "grad", "act")}
        history.append(
            StepRecord(
                step=step,
                epoch=step // 32,
                loss=loss,
                grad_norm=1.0,
                grad_norm_clipped=1.0,
                clipped_frac=0.0,
                layers=stats,
                histograms=hists,
                captured=True,
                activations_captured=hists is not None,
            )
        )
    return history


def full_frame_ms(app) -> float:
    """Milliseconds for one complete frame: every visible panel redrawn, the screen rendered.

    A worst case: the app's timer only redraws panels whose data moved and
    Textual repaints only what changed; this forces both for every panel.
    """
    import time

    started = time.perf_counter()
    app.refresh_frame(force=True)
    app.screen._compositor.render_update(full=True)
    return (time.perf_counter() - started) * 1000

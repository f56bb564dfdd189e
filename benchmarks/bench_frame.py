"""Issue 4 §2: the cost of a dashboard frame, against the length of the run.

Histories of 1,000, 100,000 and 1,000,000 steps of a 10-layer model (synthetic
records, see benchmarks.synthetic) are handed to a headless GradTUI at
120x40 and 200x60. Two figures per case, median of several frames:

- full frame: every visible panel redrawn and the whole screen composed
  (tui.testing.full_frame_ms), the worst a frame can cost;
- timer frame: one new record appended, then the app's own frame
  (`refresh_frame`: only panels whose data moved, one line plot a frame).

Both views are measured: the gradient plots (default) and the histograms (d).
Target: <= 50 ms per frame at 120x40, flat in the history's length.

Run alone: `.venv/bin/python -m benchmarks.bench_frame [--quick]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from benchmarks.common import Result
from benchmarks.synthetic import LAYERS, records

LENGTHS = (1_000, 100_000, 1_000_000)
SIZES = ((120, 40), (200, 60))
FRAMES = 5
TARGET = "<= 50"  # ms, at 120x40


def _histories(lengths):
    """One History grown through every length in turn (the million includes the rest)."""
    from engine.history import History

    history, done = History(), 0
    for length in lengths:
        for record in records(length - done, LAYERS, start=done):
            history.append(record)
        done = length
        yield length, history


async def _measure(history, size, frames: int) -> dict[str, float]:
    import engine.trainer  # noqa: F401  (so the app's torch warm-up has nothing left to do)
    import tui.app
    from engine.config import RunConfig
    from engine.session import TrainingSession
    from tui.testing import full_frame_ms

    config = RunConfig(n_layers=LAYERS - 1)
    app = tui.app.GradTUI(config, None)
    out = {}
    async with app.run_test(size=size) as pilot:
        app.use_session(TrainingSession(config, history=history), "benchmark")
        await pilot.pause()
        for view in ("gradients", "distributions"):
            if app.view != view:
                await pilot.press("d")
                await pilot.pause()
            full = [full_frame_ms(app) for _ in range(frames)]
            timer = []
            extra = records(frames, LAYERS, start=history.count)
            for record in extra:
                history.append(record)
                started = time.perf_counter()
                app.refresh_frame()
                app.screen._compositor.render_update(full=False)
                timer.append((time.perf_counter() - started) * 1000)
            out[f"{view} full"] = statistics.median(full)
            out[f"{view} timer"] = statistics.median(timer)
        app.session.stop()
    return out


def run(quick: bool = False, emit=None) -> list[Result]:
    """Every length and size; `emit` sees each result as it comes."""
    try:
        import tui.app  # noqa: F401
    except ImportError as exc:  # the dashboard is optional for the engine's benchmarks
        return [Result("frame", "dashboard frame", None, "ms", note=f"tui.app missing: {exc}")]
    lengths = LENGTHS[:2] if quick else LENGTHS
    frames = 3 if quick else FRAMES
    results = []
    for length, history in _histories(lengths):
        for size in SIZES:
            figures = asyncio.run(_measure(history, size, frames))
            for what, ms in figures.items():
                target = TARGET if size == (120, 40) else ""
                ok = None if not target else ms <= 50
                name = f"{length:>9,} steps {size[0]}x{size[1]}: {what}"
                result = Result("frame", name, ms, "ms", target, ok)
                results.append(result)
                if emit is not None:
                    emit(result)
    results.append(_growth(results))
    if emit is not None:
        emit(results[-1])
    return results


def _growth(results: list[Result]) -> Result:
    """Largest over smallest history's full frame at 120x40: must stay near 1."""
    full = [r for r in results if "120x40: gradients full" in r.name]
    ratio = full[-1].value / full[0].value if len(full) > 1 and full[0].value else None
    return Result(
        "frame", "frame cost, longest / shortest history (120x40)", ratio, "x", "<= 1.5",
        None if ratio is None else ratio <= 1.5, "must not grow with the run's length",
    )  # fmt: skip


def main() -> None:
    """Print the figures of this benchmark alone."""
    print("bench_frame")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

"""Issue 4 §3: the engine under the dashboard, against the engine alone.

Steps/s of an unthrottled TrainingSession while a headless GradTUI shows it
(120x40, its frame timer at the default 10 fps), against headless training
as `gradtui run` does it (the Trainer and a History in the main thread, on
all of torch's threads: the target's figure), and against the same session
with no app at all (which, like the dashboard's, leaves a core to the UI),
interleaved. The app runs in this process as in real use: the training
thread and the UI's event loop share the interpreter. Target: >= 0.8x.

Run alone: `.venv/bin/python -m benchmarks.bench_engine_ui [--quick]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from benchmarks.common import Result, median_and_spread

PRESETS = ("sigmoid-normal", "standardized")  # the block model; the regression model
SECONDS = 2.0  # measured per block, after a warm-up
WARM_STEPS = 20
TARGET = ">= 0.8"


def _config(preset: str):
    from engine.presets import get_preset

    return get_preset(preset).config.replace(epochs=1_000_000, device="cpu")


def _rate(session, seconds: float) -> float:
    """Steps per second of a running session over `seconds` (after its warm-up)."""
    deadline = time.monotonic() + 120
    while session.status().step < WARM_STEPS and time.monotonic() < deadline:
        time.sleep(0.01)
    s0, t0 = session.status().step, time.perf_counter()
    time.sleep(seconds)
    s1, t1 = session.status().step, time.perf_counter()
    return (s1 - s0) / (t1 - t0)


_THREADS = None  # torch's own thread count, before a session leaves a core free


def gradtui_run(preset: str, seconds: float) -> float:
    """Steps/s of training as `gradtui run` does it: no thread, torch's own thread count."""
    import torch

    from engine.history import History
    from engine.trainer import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(_THREADS or threads)
    trainer, history = Trainer(_config(preset)), History()
    try:
        for _ in range(WARM_STEPS):
            history.append(trainer.step())
        s0, t0 = trainer.step_index, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            history.append(trainer.step())
        return (trainer.step_index - s0) / (time.perf_counter() - t0)
    finally:
        trainer.close()
        torch.set_num_threads(threads)


def headless(preset: str, seconds: float) -> float:
    """The session alone."""
    from engine.session import TrainingSession

    session = TrainingSession(_config(preset))
    session.start()
    try:
        return _rate(session, seconds)
    finally:
        session.stop()


def with_dashboard(preset: str, seconds: float) -> float:
    """The session while the dashboard draws it."""
    import tui.app

    async def scenario() -> float:
        app = tui.app.GradTUI(_config(preset), preset)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.session.start()
            for _ in range(2400):
                if app.session.status().step >= WARM_STEPS:
                    break
                await pilot.pause(0.05)
            s0, t0 = app.session.status().step, time.perf_counter()
            await pilot.pause(seconds)  # the event loop runs: frames are drawn
            s1, t1 = app.session.status().step, time.perf_counter()
            app.stop_sessions(timeout=5.0)
        return (s1 - s0) / (t1 - t0)

    return asyncio.run(scenario())


def run(quick: bool = False, emit=None) -> list[Result]:
    """Each preset: rounds of gradtui run, session, dashboard, ...; ratios of steps/s."""
    global _THREADS
    try:
        import tui.app  # noqa: F401
    except ImportError as exc:
        return [Result("engine_ui", "engine under the dashboard", None, "x", note=str(exc))]
    import torch

    _THREADS = _THREADS or torch.get_num_threads()
    rounds = 2 if quick else 3
    seconds = 2.0 if quick else SECONDS
    results = []
    for preset in PRESETS:
        vs_run, vs_session, rates = [], [], []
        run_before, session_before = gradtui_run(preset, seconds), headless(preset, seconds)
        for _ in range(rounds):
            ui = with_dashboard(preset, seconds)
            run_after, session_after = gradtui_run(preset, seconds), headless(preset, seconds)
            vs_run.append(ui / ((run_before + run_after) / 2))
            vs_session.append(ui / ((session_before + session_after) / 2))
            rates.append(ui)
            run_before, session_before = run_after, session_after
        med, spread = median_and_spread(vs_run)
        note = f"{spread}; {statistics.median(rates):.0f} steps/s with the dashboard"
        found = [
            Result(
                "engine_ui", f"{preset}: steps/s with dashboard / gradtui run", med, "x",
                TARGET, med >= 0.8, note,
            ),
        ]  # fmt: skip
        med, spread = median_and_spread(vs_session)
        found.append(
            Result("engine_ui", f"{preset}: with dashboard / same session alone", med, "x",
                   note=spread)
        )  # fmt: skip
        for result in found:
            results.append(result)
            if emit is not None:
                emit(result)
    return results


def main() -> None:
    """Print the figures of this benchmark alone."""
    print("bench_engine_ui")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

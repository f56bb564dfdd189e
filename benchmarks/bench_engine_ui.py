"""Issue 4 §3: the engine under the dashboard, against headless training.

Steps/s of an unthrottled run while the dashboard shows it (a headless
GradTUI at 120x40, its frame timer at the default 10 fps), against training
as `gradtui run` does it (a Trainer and a History, stepped in a loop on
torch's own thread count). Target: >= 0.8x.

The two alternate in one process, run, dashboard, run, ..., each dashboard
timed against the mean of the two runs around it; the figure is the median
of those ratios. Both settle for half a second after their first steps
(first frames, first captures) before the timed window.

The headless run trains in a thread of its own that ends before the next
dashboard opens (steps/s are the same as on the main thread, measured
0.98-1.02x). Not on the main thread: a Trainer stepped there leaves that
thread's OpenMP worker pool alive for the rest of the process, and the
session's own pool then trains beside it; on 2 cores the dashboard measured
105-180 steps/s after a main-thread run and 250-310 alone. A thread's pool
ends with the thread, and no user's dashboard has a second one. For the
same reason the command (`python -m benchmarks`) runs this benchmark in a
process of its own (benchmarks.apart): after bench_probe's main-thread
training the sigmoid-normal dashboard trained at 76 steps/s, against 182.

The first dashboard of each preset also reports, as a second figure, steps/s
with its frames drawn against the same dashboard with its frame timer
stopped, in alternating windows of a third of a second: on this VM steps/s
move by 20-30% from one second to the next (2-thread matrix products flip
between two speeds), and only alternation this fine sees through that. The
share of the run's time its training thread waited for frames to paint
(tui.frame_loop, engine.gate) is in the first figure's note.

The dashboard runs under Textual's test harness (`run_test`), but its timed
windows are plain `asyncio.sleep`s, during which the app runs as it does in
a terminal. Not `Pilot.pause`: that first waits for every widget on the
screen to handle a callback (`Pilot._wait_for_screen`: a `call_later` on
each of the dashboard's ~270 widgets, each paying Textual's
`inspect.signature` of a closure made for the call), 25-80 ms of the main
thread a pause beside the training. Alternated in one dashboard, windows
timed by `Pilot.pause` trained 0.94x (sigmoid-normal) and 0.957x
(standardized) the steps of windows timed by `asyncio.sleep` (0.5 s
windows, 23 pairs each). No user's dashboard has a pilot.

Run alone: `.venv/bin/python -m benchmarks.bench_engine_ui [--quick]`.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks.common import Budget, Result, median_and_spread

PRESETS = ("sigmoid-normal", "standardized")  # the block model; the regression model
SECONDS = 1.0  # the timed window of each process
SETTLE = 0.5  # seconds trained before the window: past the first, heavier frames
TOGGLE_PAIRS, TOGGLE_WINDOW = 6, 0.3  # frames on / frames off, in the first dashboard
WARM_STEPS = 20
TARGET = ">= 0.8"


def _config(preset: str):
    from engine.presets import get_preset

    return get_preset(preset).config.replace(epochs=1_000_000, device="cpu")


def gradtui_run(preset: str, seconds: float) -> dict:
    """Steps/s of training as `gradtui run` does it: a Trainer and a History, torch's threads."""
    from engine.history import History
    from engine.trainer import Trainer

    trainer, history = Trainer(_config(preset)), History()
    try:
        settle_until = time.perf_counter() + SETTLE
        while trainer.step_index < WARM_STEPS or time.perf_counter() < settle_until:
            history.append(trainer.step())
        s0, t0 = trainer.step_index, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            history.append(trainer.step())
        return {"rate": (trainer.step_index - s0) / (time.perf_counter() - t0)}
    finally:
        trainer.close()


def with_dashboard(preset: str, seconds: float, toggle: bool = False) -> dict:
    """Steps/s of the session while the dashboard draws it; the share of time held for frames."""
    import asyncio

    import tui.app

    async def scenario() -> dict:
        app = tui.app.GradTUI(_config(preset), preset)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.session.start()
            for _ in range(2400):
                if app.session.status().step >= WARM_STEPS:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(SETTLE)
            s0, t0, h0 = app.session.status().step, time.perf_counter(), app.frame_hold_seconds
            await asyncio.sleep(seconds)  # the event loop runs the app: frames are drawn
            s1, t1, h1 = app.session.status().step, time.perf_counter(), app.frame_hold_seconds
            on_off = []
            for pair in range(TOGGLE_PAIRS if toggle else 0):
                rates = {}
                for frames in (True, False) if pair % 2 else (False, True):
                    app._timer.resume() if frames else app._timer.pause()
                    await asyncio.sleep(0.1)
                    a0, b0 = app.session.status().step, time.perf_counter()
                    await asyncio.sleep(TOGGLE_WINDOW)
                    rates[frames] = (app.session.status().step - a0) / (time.perf_counter() - b0)
                on_off.append(rates[True] / rates[False])
            app.stop_sessions(timeout=5.0)
        figures = {"rate": (s1 - s0) / (t1 - t0), "held": (h1 - h0) / (t1 - t0)}
        if on_off:
            figures["on_off"] = statistics.median(on_off)
        return figures

    return asyncio.run(scenario())


def headless_in_a_thread(preset: str, seconds: float) -> dict:
    """`gradtui_run` in a thread that ends with it (see the module doc for why)."""
    import threading

    result = {}
    worker = threading.Thread(target=lambda: result.update(gradtui_run(preset, seconds)))
    worker.start()
    worker.join()
    if "rate" not in result:
        raise RuntimeError(f"the headless run of {preset} failed")
    return result


def run(quick: bool = False, emit=None, budget: Budget | None = None) -> list[Result]:
    """Each preset: run, dashboard, run, ...; ratios of steps/s.

    `budget`: the time all of it may take, each preset its share; past two
    rounds, a preset runs only the rounds that fit.
    """
    try:
        import textual  # noqa: F401
    except ImportError as exc:
        return [Result("engine_ui", "engine under the dashboard", None, "x", note=str(exc))]
    rounds = 2 if quick else 3
    seconds = 0.7 if quick else SECONDS
    results = []
    budget = budget or Budget()
    for k, preset in enumerate(PRESETS):
        ratios, rates, held, on_off = [], [], [], []
        share = budget.part(1, len(PRESETS) - k)
        before = headless_in_a_thread(preset, seconds)["rate"]
        for round_ in share.rounds(rounds, 2):
            ui = with_dashboard(preset, seconds, toggle=round_ == 0)
            after = headless_in_a_thread(preset, seconds)["rate"]
            ratios.append(ui["rate"] / ((before + after) / 2))
            rates.append(ui["rate"])
            held.append(ui["held"])
            on_off += [ui["on_off"]] if "on_off" in ui else []
            before = after
        med, spread = median_and_spread(ratios, rounds)
        note = (
            f"{spread}; {statistics.median(rates):.0f} steps/s with the dashboard, "
            f"{statistics.median(held):.1%} of it waiting for frames"
        )
        found = [
            Result(
                "engine_ui", f"{preset}: steps/s with dashboard / gradtui run", med, "x",
                TARGET, med >= 0.8, note,
            ),
            Result(
                "engine_ui", f"{preset}: frames drawn / frames stopped", statistics.median(on_off),
                "x", note=f"median of {TOGGLE_PAIRS} pairs of {TOGGLE_WINDOW} s in one dashboard: "
                "what drawing costs the run, free of the processes' spread",
            ),
        ]  # fmt: skip
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

"""Issue 4 §3: the engine under the dashboard, against headless training.

Steps/s of an unthrottled run while the dashboard shows it (a headless
GradTUI at 120x40, its frame timer at the default 10 fps), against training
as `gradtui run` does it (the Trainer and a History in the main thread, on
torch's own thread count). Target: >= 0.8x.

Each variant runs in a fresh process, as a user runs one or the other, and
the processes alternate: run, dashboard, run, ... Each dashboard is timed
against the mean of the two runs around it; the figure is the median of
those ratios. Both settle for a second after their first steps (first
frames, first captures) before the timed window.

Why not in one process: a Trainer stepped on the main thread leaves that
thread's OpenMP worker pool alive, and the session's own pool then trains
beside it; on 2 cores the dashboard measured 105-180 steps/s after a
main-thread run and 250-310 steps/s alone. No user's dashboard has a second
pool.

The dashboard child also reports the share of the run's time its training
thread waited for frames to paint (tui.frame_loop, engine.gate), and, as a
second figure, steps/s with its frames drawn against the same dashboard with
its frame timer stopped, in alternating windows of a third of a second: on
this VM a process's steps/s moves by 20-30% from one second to the next
(2-thread matrix products flip between two speeds), and only alternation
within one process sees through that.

Run alone: `.venv/bin/python -m benchmarks.bench_engine_ui [--quick]`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks.common import Result, median_and_spread

PRESETS = ("sigmoid-normal", "standardized")  # the block model; the regression model
SECONDS = 1.5  # the timed window of each process
SETTLE = 0.5  # seconds trained before the window
TOGGLE_PAIRS, TOGGLE_WINDOW = 6, 0.35  # frames on / frames off, within one dashboard
WARM_STEPS = 20
TARGET = ">= 0.8"


def _config(preset: str):
    from engine.presets import get_preset

    return get_preset(preset).config.replace(epochs=1_000_000, device="cpu")


def gradtui_run(preset: str, seconds: float) -> dict:
    """Steps/s of training as `gradtui run` does it: the main thread, torch's threads."""
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


def with_dashboard(preset: str, seconds: float) -> dict:
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
                await pilot.pause(0.05)
            await pilot.pause(SETTLE)
            s0, t0, h0 = app.session.status().step, time.perf_counter(), app.frame_hold_seconds
            await pilot.pause(seconds)  # the event loop runs: frames are drawn
            s1, t1, h1 = app.session.status().step, time.perf_counter(), app.frame_hold_seconds
            on_off = []
            for pair in range(TOGGLE_PAIRS):
                rates = {}
                for frames in (True, False) if pair % 2 else (False, True):
                    app._timer.resume() if frames else app._timer.pause()
                    await pilot.pause(0.1)
                    a0, b0 = app.session.status().step, time.perf_counter()
                    await pilot.pause(TOGGLE_WINDOW)
                    rates[frames] = (app.session.status().step - a0) / (time.perf_counter() - b0)
                on_off.append(rates[True] / rates[False])
            app.stop_sessions(timeout=5.0)
        return {
            "rate": (s1 - s0) / (t1 - t0),
            "held": (h1 - h0) / (t1 - t0),
            "on_off": statistics.median(on_off),
        }

    return asyncio.run(scenario())


def _child(variant: str, preset: str, seconds: float, threads: int | None) -> dict:
    """Run one variant in a fresh interpreter; its figures."""
    command = [sys.executable, "-m", "benchmarks.bench_engine_ui", "--child", variant, preset]
    command += [str(seconds), str(threads or 0)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {preset} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, emit=None) -> list[Result]:
    """Each preset: run, dashboard, run, ... in fresh processes; ratios of steps/s."""
    try:
        import textual  # noqa: F401
    except ImportError as exc:
        return [Result("engine_ui", "engine under the dashboard", None, "x", note=str(exc))]
    import torch

    threads = torch.get_num_threads()  # --threads, or torch's default
    rounds = 2 if quick else 3
    seconds = 1.5 if quick else SECONDS
    results = []
    for preset in PRESETS:
        ratios, rates, held, on_off = [], [], [], []
        before = _child("run", preset, seconds, threads)["rate"]
        for _ in range(rounds):
            ui = _child("dashboard", preset, seconds, threads)
            after = _child("run", preset, seconds, threads)["rate"]
            ratios.append(ui["rate"] / ((before + after) / 2))
            rates.append(ui["rate"])
            held.append(ui["held"])
            on_off.append(ui["on_off"])
            before = after
        med, spread = median_and_spread(ratios)
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
                "x", note=f"one dashboard, {TOGGLE_PAIRS} pairs of {TOGGLE_WINDOW} s, median of "
                f"{rounds}: what drawing costs the run, free of the processes' spread",
            ),
        ]  # fmt: skip
        for result in found:
            results.append(result)
            if emit is not None:
                emit(result)
    return results


def main() -> None:
    """Print the figures of this benchmark alone (or, with --child, one process's)."""
    if "--child" in sys.argv:
        variant, preset, seconds, threads = sys.argv[sys.argv.index("--child") + 1 :][:4]
        if int(threads):
            import torch

            torch.set_num_threads(int(threads))
        measure = gradtui_run if variant == "run" else with_dashboard
        print(json.dumps(measure(preset, float(seconds))))
        return
    print("bench_engine_ui")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

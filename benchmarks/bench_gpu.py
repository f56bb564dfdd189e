"""Issue 4 §6: the probe on a CUDA GPU: overhead, and one device-to-host copy per step.

Skipped (one line, no failure) where torch sees no CUDA device. Otherwise:

- steps/s of the bare loop against the probe (statistics every step, the
  default policy) on the block model and the large MLP, interleaved as in
  bench_probe (on a GPU the loop's own `loss.item()` is its one sync too);
- synchronizations: with `torch.cuda.set_sync_debug_mode("warn")`, every
  synchronizing call warns; a sentinel step, a captured step and an
  activation step of the probe must each warn exactly once (their one read),
  and so must every step the Trainer takes (what `gradtui run` drives) on
  two presets, one of them clipping.

Run alone: `.venv/bin/python -m benchmarks.bench_gpu [--quick]`.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import warnings

from benchmarks.common import Budget, Result, Schedule, check, interleaved, median_and_spread


def _available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def sync_counts() -> dict[str, int]:
    """Synchronizing calls made by the probe in each kind of step (want 1 each)."""
    import torch

    from benchmarks.loops import Loop
    from engine.config import RunConfig
    from engine.probe import GradientProbe

    loop = Loop(RunConfig(device="cuda"))
    loop.to("cuda")
    probe = GradientProbe(loop.model, capture_every=2, activation_every=4, lr=0.01).__enter__()
    counts = {}
    names = {1: "sentinel step", 2: "captured step", 4: "activation step"}
    try:
        for step in range(6):
            x, y = loop.batch()
            probe.begin_step(step)
            loss = loop.loss_fn(loop.model(x), y)
            loop.optimizer.zero_grad()
            loss.backward()
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    probe.after_backward()
                    loop.optimizer.step()
                    probe.end_step(loss, 0)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            if step in names:
                counts[names[step]] = sum("synchroniz" in str(w.message) for w in caught)
    finally:
        probe.close()
    return counts


def trainer_syncs(preset: str, steps: int) -> tuple[dict[str, tuple[int, int]], int]:
    """Synchronizing calls per Trainer step, by the kind of step: ({kind: (most, steps)}, replays).

    `replays`: the sentinel steps replayed as a CUDA graph (engine.graphed_sentinels),
    whose captures are among the steps counted.

    The Trainer is what `gradtui run` and the dashboard drive; on a GPU box
    `device=auto` trains there. Its time-budgeted policy decides which steps
    capture, so every kind of step it took is counted.
    """
    import torch

    from engine.presets import get_preset
    from engine.trainer import Trainer

    trainer = Trainer(get_preset(preset).config.replace(device="cuda"))
    seen: dict[str, tuple[int, int]] = {}
    try:
        for _ in range(min(steps, trainer.total_steps)):
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    record = trainer.step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            n = sum("synchroniz" in str(w.message) for w in caught)
            if record.activations_captured:
                kind = "activation step"
            elif record.captured:
                kind = "captured step"
            else:
                kind = "sentinel step"
            most, count = seen.get(kind, (0, 0))
            seen[kind] = (max(most, n), count + 1)
        graphs = trainer.probe.sentinel_graphs
        replays = 0 if graphs is None else graphs.replays
    finally:
        trainer.close()
    return seen, replays


def overhead(quick: bool, budget: Budget | None = None) -> list[Result]:
    """Bare against the probe, and the Trainer's step against a bare loop, on the GPU.

    `budget`: the time the four sets may take, a quarter each; past four
    rounds, a set runs only the rounds that fit.
    """
    from benchmarks.bench_probe import SETTLE_SECONDS
    from benchmarks.engine_loops import Engine, EngineBare
    from benchmarks.loops import (
        NEVER,
        Bare,
        Loop,
        Probe,
        block_runner,
        replays,
    )
    from benchmarks.probe_plans import DEFAULTS, PLANS

    results = []
    schedule = Schedule(budget or Budget(), [1.0] * 4)
    for model in ("block", "large MLP"):
        config = PLANS[model][0].replace(device="cuda")
        loop = Loop(config)
        loop.to("cuda")
        # A GPU step of these models is a few milliseconds at most: blocks of
        # 150 steps keep a block well above the timer's and the launches' jitter.
        steps, rounds = (50, 3) if quick else (150, 7)
        bare = block_runner(Bare(loop), steps)
        policy = Probe(loop, DEFAULTS.capture_every, DEFAULTS.activation_every, budgeted=True)
        kept_policy = Probe(
            loop, DEFAULTS.capture_every, DEFAULTS.activation_every, budgeted=True, kept=True
        )
        engine = Engine(config)
        # A long run's steady state, as in bench_probe.
        for budgeted in (policy, kept_policy, engine):
            budgeted.settle(SETTLE_SECONDS)
        probes = {
            "sentinels only": Probe(loop, NEVER, NEVER),
            # The same steps without engine.placement_graphs' replays, side by side.
            "sentinels only, op by op": Probe(loop, NEVER, NEVER, graphs=False),
            "stats every step": Probe(loop, 1, NEVER),
            # One probe for every block, as a user's loop keeps it: what a
            # probe's first steps and captures cost each block, side by side.
            "stats every step, one probe kept": Probe(loop, 1, NEVER, kept=True),
            "stats every step, op by op": Probe(loop, 1, NEVER, graphs=False),
            "default policy": policy,
            "default policy, one probe kept": kept_policy,
        }
        runners = {name: block_runner(probe, steps) for name, probe in probes.items()}
        # How often the graphs applied: graphs given up read as op by op.
        timed = _ratios(model, bare, runners, rounds, steps, schedule.next())
        results += [
            _replayed(result, probe.replays, probe.step_index, probe.policy)
            for result, probe in zip(timed, probes.values(), strict=True)
        ]
        engine_step = {"engine step, default policy": block_runner(engine, steps)}
        (timed,) = _ratios(
            model, block_runner(EngineBare(config), steps), engine_step, rounds, steps,
            schedule.next(),
        )  # fmt: skip
        trainer = engine.trainer
        results.append(_replayed(timed, replays(trainer.probe), trainer.step_index, trainer.policy))
    return results


def _replayed(result: Result, replayed: int, steps: int, policy=None) -> Result:
    # `result` with how many of its variant's steps a CUDA graph replayed, and
    # where a time-budgeted policy decided the captures, how often each tier came.
    note = f"{result.note}; {replayed} of {steps} steps replayed"
    if policy is not None:
        note += (
            f"; captured stats every ~{policy.stats.period},"
            f" activations every ~{policy.activations.period} steps"
        )
    return dataclasses.replace(result, note=note)


def _ratios(
    model: str, bare, runners: dict, rounds: int, steps: int, budget: Budget
) -> list[Result]:
    from benchmarks.bench_probe import EVERY_TARGET

    bare_times: list[float] = []
    results = []
    timed = interleaved(
        bare, runners, rounds, baseline_times=bare_times, budget=budget, minimum=min(rounds, 4)
    )
    for name, values in timed.items():
        med, spread = median_and_spread(values, rounds)
        # The targets of the CPU's figures (bench_probe): issue 4 asks for a CUDA variant of them.
        if "default policy" in name and "kept" not in name:  # the kept rows are for comparison
            target = "<= 1.05"
        elif name == "stats every step":
            target = EVERY_TARGET[model]
        else:
            target = ""
        ms = 1000 * statistics.median(bare_times) / steps
        results.append(
            Result("gpu", f"cuda {model}: {name} / bare", med, "x", target,
                   check(med, target), f"{spread}; bare {ms:.3f} ms/step")
        )  # fmt: skip
    return results


def run(quick: bool = False, emit=None, budget: Budget | None = None) -> list[Result]:
    """Everything above, or one skipped line without a GPU (`budget`: see `overhead`)."""
    if not _available():
        results = [Result("gpu", "CUDA probe overhead and syncs", None, "x",
                          note="no CUDA device: skipped")]  # fmt: skip
    else:
        results = []
        for kind, n in sync_counts().items():
            results.append(
                Result("gpu", f"cuda syncs in a {kind}", float(n), "calls", "<= 1", n <= 1)
            )
        for preset in ("sigmoid-normal", "clip-norm"):
            seen, replays = trainer_syncs(preset, 60 if quick else 200)
            for kind, (most, count) in seen.items():
                note = f"most in one step, over {count} steps"
                if kind == "sentinel step":
                    note += f"; {replays} replayed as a CUDA graph"
                results.append(
                    Result("gpu", f"cuda syncs in a Trainer {kind}, {preset}", float(most),
                           "calls", "<= 1", most <= 1, note)
                )  # fmt: skip
        results += overhead(quick, budget)
    for result in results:
        if emit is not None:
            emit(result)
    return results


def main() -> None:
    """Print the figures of this benchmark alone."""
    print("bench_gpu")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

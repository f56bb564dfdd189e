"""Issue 4 §1: what watching the gradients costs a training step.

Steps/s of a bare PyTorch loop against the same loop watched by gradtui's
GradientProbe (statistics every step, everything every 10th step, the
Trainer's default policy) and by what people use instead: the slides'
capture_gradients (whole gradients kept every step), TensorBoard's
add_histogram per layer per step, and per-layer `.item()` statistics. Then
the engine's own step as `gradtui run` drives it (Trainer + History) against
a bare loop drawing the same batches.

Every figure is the median of pairwise ratios: a block of the variant timed
against the mean of the bare blocks just before and after it. A set whose
bare loop ran over SLOW_SPELL times slower than the model's best (timed
before its sets) is measured once more; its note says so. Blocks are long
enough to hold an activation step of the default policy wherever its period
allows; the large MLP times its sampled policies on longer blocks, fewer times.
The variants that do the same work every step (SHORT_BLOCKS: sentinels,
statistics every step, and on the block model the source's way) are timed
in short blocks instead, many of them, each against one bare neighbour
(common.interleaved): this VM's slow spells last seconds, so a block read
about as far from its neighbours at 10 steps as at 50 (IQR 0.97-1.05
against 0.96-1.06, block model), and five times the pairs in the same time
narrowed the median's standard error from ~3% to ~1%. Sets with sampled
policies (the Trainer's included) run rounds of short pieces whose times
are summed (a plan's `pieces`), so that their rare activation steps count.
The regression model's share of the source's overhead (`overhead_share`)
comes from a set alternated step by step, each variant on its own copy of
the model beside two bare copies (benchmarks/step_pairs.py): its 0.5 ms
steps are too short for blocks to tell a 0% overhead from a 7% one.

Run alone: `.venv/bin/python -m benchmarks.bench_probe [--quick] [--model block]`.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import torch

from benchmarks.alternatives import Source
from benchmarks.common import (
    Budget,
    Result,
    Schedule,
    check,
    interleaved,
    median_and_spread,
)
from benchmarks.engine_loops import Engine
from benchmarks.loops import NEVER, Bare, FlatBare, Loop, Probe, block_runner
from benchmarks.probe_plans import PLANS, Plan
from benchmarks.probe_sets import SOURCE, TENSORBOARD, variants
from benchmarks.step_pairs import STEP_BY_STEP, step_pair_set
from engine.config import RunConfig
from engine.heap import keep_freed_memory

EVERY_TARGET = {"block": "<= 1.05", "large MLP": "<= 1.02"}  # issue 4's targets
DEFAULT_TARGET = "<= 1.05"
FLAT_BARE = "bare, zeroed through one flat buffer"
NO_TENSORBOARD = "tensorboard is not installed: bash setup.sh --bench"
SOURCE_SHARE = 0.1  # gradtui's overhead at most a tenth of the source's way's (10x less)
WARM_STEPS = 5  # untimed steps of each variant before its set's rounds
SETTLE_SECONDS = 1.0  # budgeted variants run this long untimed first: a long run's steady state
CALIBRATION_BLOCKS = 3  # bare blocks timed before a model's sets, the best one kept
SLOW_SPELL = 1.25  # a set whose bare loop ran this much slower than its best is measured again
# The sets holding targets. The engine set's bare loop draws shuffled batches
# as the Trainer does, ~5% slower than the plain bare loop held against it.
# "sampled" since session 24, when the block model's default policy moved
# there; the large MLP's sampled set (~20 s) is re-measured only where its
# share of the time left allows it, which a slow hour's never has.
RETRIED = ("probe", "every step", "sampled", "engine")
# At most this long spent re-measuring, all models together (268-279 s for
# the command with one re-measured set); a re-measured set also gets only its
# share of the time budget left, so the sets after it give up rounds, not the
# command its five minutes.
RETRY_SECONDS = 25.0
# Sets of variants that do the same work every step, timed in short blocks,
# each against one bare neighbour (see below and common.interleaved).
SHORT_BLOCKS = ("every step",)
_retry_spent = [0.0]  # seconds re-measuring so far, in this process


def _target(name: str, model: str) -> str:
    if name == "stats every step":
        return EVERY_TARGET.get(model, "")
    if name in ("default policy", "engine step, default policy"):
        return DEFAULT_TARGET
    return ""


def _timed_set(loop: Loop, config: RunConfig, plan: Plan, budget: Budget, quick: bool):
    """(ratios by variant, the bare loop's median ms a step, the variants) of one set."""
    kind, steps, rounds, minimum = plan.kind, plan.steps, plan.rounds, plan.minimum
    if quick:
        rounds = minimum = max(1, rounds // 3)
    short = kind in SHORT_BLOCKS or plan.pieces > 1
    named, baseline = variants(kind, loop, config, kept=short)
    for variant in named.values():
        if getattr(variant, "policy", None) is not None or isinstance(variant, Engine):
            variant.settle(SETTLE_SECONDS)
    # A few untimed steps of each variant take its first-call costs (a whole
    # block each, as `interleaved` would warm up, cost ~10 s of the command).
    for variant in (baseline, *named.values()):
        block_runner(variant, min(steps, WARM_STEPS))()
    runners = {name: block_runner(v, steps) for name, v in named.items()}
    bare_times: list[float] = []
    neighbours = "one" if short else "both"
    try:
        ratios = interleaved(
            block_runner(baseline, steps), runners, rounds, 0, bare_times, budget, minimum,
            neighbours, plan.pieces,
        )  # fmt: skip
    finally:
        for variant in named.values():
            variant.close()
    return ratios, statistics.median(bare_times) / steps * 1000, named


def _captures(variant) -> str:
    # What an engine variant's policy settled at: a reading far off its set's
    # usual one says first whether the policy captured more than it should.
    trainer = getattr(variant, "trainer", None)
    if trainer is None:
        return ""
    policy = trainer.policy
    return (
        f"; captured stats every ~{policy.stats.period},"
        f" activations every ~{policy.activations.period} steps"
    )


def _bare_ms(loop: Loop, steps: int) -> float:
    # The bare loop's speed before a model's sets: what a set's own bare blocks
    # are held against, to tell a set taken in one of the machine's slow spells.
    run = block_runner(Bare(loop), steps)
    run()
    return min(run() for _ in range(CALIBRATION_BLOCKS)) / steps * 1000


def measure(model: str, quick: bool, emit=None, schedule: Schedule | None = None) -> list[Result]:
    """Every set of variants of one model, each interleaved with its baseline.

    `schedule`: the sets' shares of the time budget, in order (see `run`).
    """
    config, plans = PLANS[model]
    schedule = schedule or Schedule(Budget(), [plan.seconds for plan in plans])
    loop = Loop(config)
    results, medians = [], {}
    reference = _bare_ms(loop, plans[0].steps)  # the bare loop's ms a step at its best so far
    for plan in plans:
        kind = plan.kind
        if kind == "step pairs":
            pairs = {
                "stats every step": lambda loop: Probe(loop, 1, NEVER),
                SOURCE: Source,
                FLAT_BARE: FlatBare,  # what the probe's loop saves before the probe's work
            }
            found, pair_medians = step_pair_set(model, config, pairs, plan, schedule.next(), quick)
            medians |= pair_medians
            results += found
            for result in found if emit is not None else ():
                emit(result)
            continue
        started = time.perf_counter()
        ratios, bare_ms, named = _timed_set(loop, config, plan, schedule.next(), quick)
        took = time.perf_counter() - started
        retried = ""
        slow = bare_ms > SLOW_SPELL * reference
        # Re-measured only where it fits its share of the time left: in a slow
        # hour, when the sets are cut to their minimums already, it does not.
        again_budget = schedule.again(plan.seconds)
        fits = again_budget.left() >= took
        if kind in RETRIED and slow and fits and _retry_spent[0] < RETRY_SECONDS:
            # The bare loop ran far slower than it can on this machine: the set
            # fell in a slow spell of a shared host (+50% for seconds at a time),
            # where the variants do not slow alike: the block model's statistics
            # every step read 1.048-1.055x with bare at 4.2 ms a step, 0.99-1.01x
            # at 2.6-3.0. Measured once more, whatever the figures said, and the
            # set whose bare loop ran faster is kept; both bare speeds are shown.
            started = time.perf_counter()
            again = _timed_set(loop, config, plan, again_budget, quick)
            _retry_spent[0] += time.perf_counter() - started
            retried = f"; re-measured: bare {bare_ms:.3g} then {again[1]:.3g} ms/step"
            if again[1] < bare_ms:
                ratios, bare_ms, named = again
        if kind != "engine":
            reference = min(reference, bare_ms)
        if kind == "alternatives" and TENSORBOARD not in named:
            result = Result(
                "probe", f"{model}: {TENSORBOARD} / bare", None, "x", note=NO_TENSORBOARD
            )
            results.append(result)
            if emit is not None:
                emit(result)
        for name, values in ratios.items():
            med, spread = median_and_spread(values, 0 if quick else plan.rounds)
            spread += f"; bare {bare_ms:.3g} ms/step{retried}{_captures(named[name])}"
            medians[name] = med
            target = _target(name, model)
            result = Result(
                "probe", f"{model}: {name} / bare", med, "x", target, check(med, target), spread
            )
            results.append(result)
            if emit is not None:
                emit(result)
    # The step-by-step set's figures where the model has one (its steps are
    # too short for blocks to tell the two overheads apart: step_pairs).
    how = STEP_BY_STEP if SOURCE + STEP_BY_STEP in medians else ""
    every, theirs = medians["stats every step" + how] - 1, medians[SOURCE + how] - 1
    share, note = overhead_share(every, theirs)
    note += how
    if FLAT_BARE + how in medians:  # the probe's own work, over the loop it runs in
        own = medians["stats every step" + how] / medians[FLAT_BARE + how] - 1
        note += f"; the probe's work over a bare loop zeroed as its own is: {own:+.3f}"
    target = f"<= {SOURCE_SHARE:g}"
    result = Result(
        "probe", f"{model}: probe's overhead / source's (every step)", share, "x",
        target, check(share, target), note,
    )  # fmt: skip
    if emit is not None:
        emit(result)
    return results + [result]


def overhead_share(probe: float, source: float) -> tuple[float | None, str]:
    """(the probe's overhead as a share of the source's way's, a note), from their overheads.

    Issue 4 asks for "at least 10x less overhead than the source's way": a
    share of at most 0.1. The share, not the factor (the source's over the
    probe's): a probe measured at or below 0% has no factor to give, and
    flooring its overhead at a resolution capped the factor at the source's
    overhead over that floor, so a probe that cost nothing read as a miss
    wherever the source's way cost under ten floors (F52: the probe +0.3%,
    the source's way +4.7%, "9.43x"). A share at or below zero is a watched
    loop that ran as fast as the bare one or faster. None where the source's
    way measured no overhead (nothing to compare with).
    """
    note = f"the probe {probe:+.3f}, the source's way {source:+.3f}"
    if math.isnan(source):
        return None, note + ": the source's way was not measured"
    if not source > 0:
        return None, note + ": the source's way measured no overhead"
    if probe > 0:
        note += f": {source / probe:.1f}x less"
    elif probe <= 0:  # not NaN
        note += ": the watched loop ran at least as fast as the bare one"
    return probe / source, note


def run(quick: bool = False, emit=None, models=None, budget: Budget | None = None) -> list[Result]:
    """Every model (the large MLP last: it is the slow one); `emit` sees each result.

    `budget`: the time all of it may take, shared out over the sets by their weights.
    """
    models = models or list(PLANS)
    weights = [plan.seconds for model in models for plan in PLANS[model][1]]
    schedule = Schedule(budget or Budget(), weights)
    results = []
    for model in models:
        results += measure(model, quick, emit, schedule)
    return results


def main() -> None:
    """Print the figures of this benchmark alone (`--model block` for one model)."""
    quick = "--quick" in sys.argv
    models = [sys.argv[sys.argv.index("--model") + 1]] if "--model" in sys.argv else None
    kept = keep_freed_memory()  # as `machine()` does for the whole command
    print(
        f"bench_probe (torch {torch.__version__}, {torch.get_num_threads()} threads,"
        f" freed memory {'kept' if kept else 'given back'})"
    )
    run(quick, emit=lambda r: print(r.line(), flush=True), models=models)


if __name__ == "__main__":
    main()

"""Variants alternated step by step, each on its own copy of the model, with an A/A control.

The slides' regression model takes ~0.5 ms a step. Interleaved in blocks of
300 steps (A B A B ...), its variants still read 10-25 points apart on this
VM (IQRs in benchmarks/RESULTS.md), because a slow spell of a few
milliseconds lands in one block and not in its neighbour. That noise is wider
than the overheads it should tell apart: the probe's statistics at about 0%,
the source's way at about 7%. Alternating single steps puts each variant's
step within a millisecond of the baseline's, so spells touch all of them
alike, and each round's medians drop the steps a spell did hit.

A probe's hooks cannot come and go between steps, so each variant trains its
own copy of the model, built from the same seed. Two copies can still differ
in speed, by where their tensors lie in memory (~1% here: the copies made
later ran faster, which put the probe 1-2% below the bare loop). So the
copies change hands every round, each variant taking the next one (hooks
are set up at a round's start), and a run of a multiple of the variants'
number of rounds gives each variant every copy equally. A second bare
variant, the A/A control, measures what is left of the gap. The baseline is
the mean of the two bare variants, and the gap between them is printed
beside each figure: a variant whose overhead is no larger than that gap is
not resolved.

Only for models whose tensors fit in the caches. Every step here follows
other copies' steps, so it starts with cold caches, where a training loop's
steps follow each other warm. On the regression model (a few KB of tensors)
that changes nothing measurable. On the block model (~3 MB a step) it put
the probe's statistics every step at +11% and the source's way at +141%,
against ~0-5% and ~60% in blocks. So the block model and the large MLP keep
their blocks.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.common import Budget, Result, median_and_spread, now
from benchmarks.loops import Bare, Loop, Variant
from engine.config import RunConfig

BARE, CONTROL = "bare", "bare, a second copy"


def step_pairs(
    config: RunConfig,
    factories: dict[str, Callable[[Loop], Variant]],
    steps: int,
    rounds: int,
    minimum: int,
    budget: Budget,
) -> tuple[dict[str, list[float]], list[float], float]:
    """(per variant its rounds' ratios to the bare copies' mean, the A/A ratios, bare ms a step).

    Each round hands each variant the next copy of the model, starts every
    variant, runs `steps` steps of each, one step of
    each in turn (the order rotating every turn, so no variant always follows
    the same neighbour), and stops them. A round's ratio for a variant is the
    median of its step times over the mean of the two bare copies' medians.
    """
    loops = [Loop(config) for _ in range(2 + len(factories))]
    variants = {BARE: Bare(loops[0]), CONTROL: Bare(loops[1])}
    variants |= {
        name: make(loop) for (name, make), loop in zip(factories.items(), loops[2:], strict=True)
    }
    names = list(variants)
    ratios: dict[str, list[float]] = {name: [] for name in factories}
    control, bare_seconds = [], []
    for round_number in budget.rounds(rounds, minimum):
        for index, name in enumerate(names):  # the copies change hands (see above)
            variants[name].loop = loops[(index + round_number) % len(loops)]
        times = _round(variants, names, steps)
        medians = {name: statistics.median(values) for name, values in times.items()}
        base = (medians[BARE] + medians[CONTROL]) / 2
        bare_seconds.append(base)
        control.append(medians[CONTROL] / medians[BARE])
        for name in factories:
            ratios[name].append(medians[name] / base)
    return ratios, control, 1000 * statistics.median(bare_seconds)


def _round(variants: dict[str, Variant], names: list[str], steps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in names}
    for variant in variants.values():
        variant.start()
    try:
        for name in names:  # a step each first, untimed: the round's first-call costs
            variants[name].step()
        count = len(names)
        for turn in range(steps):
            first = turn % count
            for name in names[first:] + names[:first]:
                started = now()
                variants[name].step()
                times[name].append(now() - started)
    finally:
        for variant in variants.values():
            variant.stop()
    return times


STEP_BY_STEP = ", step by step"  # how the names of this set's figures end


def step_pair_set(
    model: str, config: RunConfig, factories: dict, plan, budget: Budget, quick: bool
) -> tuple[list[Result], dict[str, float]]:
    """(the figures, their medians by name) of one model's step-by-step set, as `bench_probe` plans it."""
    rounds, minimum = plan.rounds, plan.minimum
    if quick:
        rounds = minimum = max(1, rounds // 3)
    ratios, control, bare_ms = step_pairs(config, factories, plan.steps, rounds, minimum, budget)
    gap = statistics.median(control) if control else float("nan")
    results, medians = [], {}
    for name, values in ratios.items():
        med, spread = median_and_spread(values, rounds)
        note = f"{spread}; the two bare copies {gap:.3f}x apart; bare {bare_ms:.3g} ms/step"
        medians[name + STEP_BY_STEP] = med
        results.append(
            Result("probe", f"{model}: {name} / bare{STEP_BY_STEP}", med, "x", note=note)
        )
    return results, medians

"""What every benchmark shares: interleaved timing, pairwise ratios, results, the machine.

Timing rule (issue 4): variants run side by side in one process, interleaved
A B A B ..., and what is reported is the median of pairwise ratios, never an
absolute time compared across runs. Each variant block is timed against the
mean of the two baseline blocks around it, so slow drifts of a shared machine
cancel out.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One measured figure, its target and whether it was met."""

    bench: str  # which benchmark: probe, frame, engine_ui, memory, startup, gpu
    name: str  # what was measured, e.g. "block: stats every step / bare"
    value: float | None  # None: skipped
    unit: str  # "x" for ratios, "ms", "MB"
    target: str = ""  # e.g. "<= 1.05"; empty for figures given for scale
    ok: bool | None = None  # None: no target, or skipped
    note: str = ""  # spread, what bounds it, why skipped

    def line(self) -> str:
        """One line of the printed report."""
        if self.value is None:
            shown = "skipped"
        elif self.unit == "x":
            shown = f"{self.value:8.3f}x"
        else:
            shown = f"{self.value:8.1f} {self.unit}"
        verdict = {True: "ok", False: "MISSED", None: ""}[self.ok]
        target = f"target {self.target}" if self.target else ""
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.name:<52} {shown:>12}  {target:<16} {verdict:<6}{note}"


_clock = time.perf_counter


def set_clock(name: str) -> None:
    """Time training blocks by "wall" clock (default) or the process's "cpu" time.

    CPU time leaves out the time other processes take from a busy machine; it
    is meaningful with one torch thread (`--threads 1`), where no worker
    thread spins in the background.
    """
    global _clock
    _clock = time.process_time if name == "cpu" else time.perf_counter


def now() -> float:
    """The benchmark clock, in seconds."""
    return _clock()


def check(value: float | None, target: str) -> bool | None:
    """Whether `value` meets a target written "<= 1.05" or ">= 0.8"."""
    if value is None or not target:
        return None
    op, bound = target.split()
    return value <= float(bound) if op == "<=" else value >= float(bound)


def timed(block: Callable[[], None]) -> Callable[[], float]:
    """A block runner that returns its own wall time in seconds."""

    def run() -> float:
        start = now()
        block()
        return now() - start

    return run


def _wall() -> float:
    """The budget's clock: wall time, whatever `set_clock` times blocks by."""
    return time.perf_counter()


class Budget:
    """The seconds a benchmark may take, so the command ends in time on a slow machine.

    The plans are sized in rounds for this VM at its usual speed (~250 s in
    all). In its slow hours everything runs 1.4-2.3x slower for minutes on
    end; a part that reaches the end of its share then stops adding rounds
    past its minimum. Its figures come from fewer pairs, and their notes say
    so ("n=7 of 13, time budget"), but the command still ends in time.
    """

    def __init__(self, seconds: float = math.inf) -> None:
        self.end = _wall() + seconds

    def left(self) -> float:
        """Seconds until the end (negative once past it; inf for no budget)."""
        return self.end - _wall()

    def part(self, weight: float, weights: float) -> Budget:
        """A budget of `weight` out of `weights`' share of the seconds left."""
        left = max(0.0, self.left())
        return Budget(left * weight / weights if weights > 0 else left)

    def rounds(self, planned: int, minimum: int) -> Iterator[int]:
        """Round numbers 0.. up to `planned`; past `minimum`, only those that fit.

        A round fits when, at the mean length of the rounds so far, it would end
        no more than half a round past the end: cutting at the first round that
        might overrun would leave half a round unused on average.
        """
        started = _wall()
        for r in range(planned):
            if r >= max(1, minimum):
                mean = (_wall() - started) / r
                if self.left() < mean / 2:
                    return
            yield r


class Schedule:
    """A budget shared out over parts that run one after another, by weight.

    Each part gets its weight's share of the seconds left when it begins, so
    a part that overran (its minimum rounds took longer) shortens the parts
    after it, not the command.
    """

    def __init__(self, budget: Budget, weights: list[float]) -> None:
        self.budget = budget
        self.weights = list(weights)

    def next(self) -> Budget:
        """The budget of the next part, in the order of the weights."""
        weight = self.weights.pop(0)
        return self.budget.part(weight, weight + sum(self.weights))

    def again(self, weight: float) -> Budget:
        """A budget for running a part of this weight once more (a re-measured set)."""
        return self.budget.part(weight, weight + sum(self.weights))


def interleaved(
    baseline: Callable[[], float],
    variants: dict[str, Callable[[], float]],
    rounds: int,
    warmup: int = 1,
    baseline_times: list[float] | None = None,
    budget: Budget | None = None,
    minimum: int | None = None,
    neighbours: str = "both",
    pieces: int = 1,
) -> dict[str, list[float]]:
    """Per variant, the ratios of its block time to the baseline blocks around it.

    A round runs A B1 A B2 ... Bk A (A the baseline), starting the variants at
    a different one each round so no variant always follows the same neighbour.
    Callables run one block each and return the seconds it took (setup outside).
    The baseline's block times are appended to `baseline_times` if given.
    With a `budget`, rounds past `minimum` (default: all) run only while they fit.

    `neighbours`: "both" holds a block against the mean of the baseline blocks
    before and after it; "one" against one of them: the one after in the
    first rotation of the variants' order, the one before in the next, and
    so on, so each variant meets each side in each place of the order.
    Short blocks need "one": a block's time is skewed right (a slow spell
    lengthens it, nothing shortens it), the mean of two blocks less so, and
    the median of one over the mean of two then reads under 1 where nothing
    differs (-0.4% to -0.5% with 10-step blocks of the block model, in A/A
    draws from a recorded bare run). One block over another is as likely
    above 1 as below.

    `pieces`: a round runs that many turns of the above, and its ratio is
    each variant's blocks' total time over their baseline blocks' total. For
    variants whose rare steps (a sampled policy's activation steps) must
    count: a round of five 10-step pieces holds as many of a variant's steps
    as one 50-step block, but its blocks sit within a few tens of
    milliseconds of their baseline blocks, where this VM's slow spells last
    seconds.
    """
    if neighbours not in ("both", "one"):
        raise ValueError(f"neighbours: 'both' or 'one', not {neighbours!r}")
    names = list(variants)
    for _ in range(warmup):
        baseline()
        for name in names:
            variants[name]()
    ratios: dict[str, list[float]] = {name: [] for name in names}
    budget = budget or Budget()
    for r in budget.rounds(rounds, rounds if minimum is None else minimum):
        spent = dict.fromkeys(names, 0.0)
        held = dict.fromkeys(names, 0.0)
        for turn in range(r * pieces, (r + 1) * pieces):
            order = names[turn % len(names) :] + names[: turn % len(names)]
            before = baseline()
            for name in order:
                spent[name] += variants[name]()
                after = baseline()
                if neighbours == "both":
                    held[name] += (before + after) / 2
                else:
                    # The side changes with each full rotation of the order,
                    # not each turn: with two variants, order and parity would
                    # flip together, and the first would always get the middle
                    # block (the one after a variant), the second the edges.
                    held[name] += before if (turn // len(names)) % 2 else after
                if baseline_times is not None:
                    baseline_times.append(before)
                before = after
        for name in names:
            ratios[name].append(spent[name] / held[name])
    return ratios


def median_and_spread(values: list[float], planned: int = 0) -> tuple[float, str]:
    """The median and a short note of the interquartile range and the pairs' count.

    `planned`: the rounds the plan asked for; fewer are noted as the time budget's cut.
    """
    if not values:
        return float("nan"), "no data"
    med = statistics.median(values)
    n = f"n={len(values)}"
    if len(values) < planned:
        n += f" of {planned}, time budget"
    if len(values) < 4:
        return med, n
    q = statistics.quantiles(values, n=4)
    return med, f"IQR {q[0]:.3f}-{q[2]:.3f}, {n}"


def machine() -> dict[str, str]:
    """The machine a figure was measured on, for RESULTS.md."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average (1, 5, 15 min)": load,
    }
    try:
        import torch

        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} intra-op threads"
        from engine.heap import keep_freed_memory

        # Before any set: bare loops and watched ones run in one process alike,
        # as in a process with a GradientProbe (which asks the same on entry).
        info["freed memory"] = (
            "kept for the next step, every variant alike (engine.heap)"
            if keep_freed_memory()
            else "given back as the C library decides (engine.heap does not apply)"
        )
        from engine.native_stats import sweep_kernel

        # Built here (once per machine) so that no timed block pays for it.
        kernel = sweep_kernel()
        info["CPU statistics"] = (
            "numpy (no C compiler, or GRADTUI_NATIVE=0)"
            if kernel is None
            else "one C sweep (engine.native_stats), "
            + ("an extension module" if kernel.kind == "module" else "through ctypes")
            + (", large sweeps on torch's OpenMP threads" if kernel.threaded else ", one thread")
        )
    except ImportError:
        pass
    return info

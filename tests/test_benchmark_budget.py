"""The benchmark command's time budget (slow hours cut rounds past the minimum, never below) and its pairing."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from benchmarks import common
from benchmarks.common import Budget, Schedule, interleaved, median_and_spread


class FakeClock:
    """A wall clock that moves only when a block 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def block(self, seconds: float):
        """A block runner taking `seconds` of this clock; returns them as its time."""

        def run() -> float:
            self.now += seconds
            return seconds

        return run


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(common, "_wall", fake)
    return fake


def test_no_budget_runs_every_planned_round(clock):
    budget = Budget()
    assert budget.left() == math.inf
    done = []
    for r in budget.rounds(13, 7):
        clock.now += 100.0
        done.append(r)
    assert done == list(range(13))


def test_rounds_past_the_minimum_stop_when_the_next_would_overrun(clock):
    budget = Budget(10.0)
    done = []
    for r in budget.rounds(13, 3):
        clock.now += 2.0  # rounds of 2 s: 5 fit, a sixth would end 2 s past
        done.append(r)
    # After 4 rounds (8 s), 2 s are left, more than half a round: a fifth runs.
    # After 5 (10 s) none are left.
    assert done == [0, 1, 2, 3, 4]


def test_the_minimum_rounds_run_even_past_the_budget(clock):
    budget = Budget(1.0)
    done = []
    for r in budget.rounds(9, 5):
        clock.now += 2.0
        done.append(r)
    assert done == [0, 1, 2, 3, 4]


def test_a_schedule_gives_each_part_its_share_of_what_is_left(clock):
    schedule = Schedule(Budget(100.0), [1.0, 3.0, 1.0])
    first = schedule.next()
    assert first.left() == pytest.approx(20.0)
    clock.now += 40.0  # the first part overran by 20 s
    second = schedule.next()
    assert second.left() == pytest.approx(60.0 * 3 / 4)  # the rest share the loss
    assert schedule.again(3.0).left() == pytest.approx(60.0 * 3 / 4)
    clock.now += 45.0
    assert schedule.next().left() == pytest.approx(15.0)
    clock.now += 30.0
    assert Schedule(Budget(0.0), [0.0]).next().left() == 0.0  # no weight, no division


def test_interleaved_keeps_its_pairs_and_notes_the_cut(clock):
    bare, variant = clock.block(1.0), clock.block(1.1)
    # A round is bare + variant + bare: 3.1 s (the first round) then 2.1 s.
    ratios = interleaved(bare, {"v": variant}, 13, warmup=0, budget=Budget(12.0), minimum=2)
    assert 2 <= len(ratios["v"]) < 13
    assert all(r == pytest.approx(1.1) for r in ratios["v"])
    med, note = median_and_spread(ratios["v"], 13)
    assert med == pytest.approx(1.1)
    assert f"n={len(ratios['v'])} of 13, time budget" in note
    assert "time budget" not in median_and_spread([1.0] * 13, 13)[1]


def test_interleaved_without_a_budget_runs_its_rounds(clock):
    ratios = interleaved(clock.block(1.0), {"a": clock.block(2.0)}, 4, warmup=0)
    assert ratios == {"a": [2.0] * 4}


def _timer(times):
    """A block runner returning the next of `times` each call."""
    it = iter(times)
    return lambda: next(it)


def test_one_neighbour_alternates_the_block_before_and_the_block_after():
    # Round 0: bare 1, v 10, bare 2 (even: the one after); round 1: bare 4, v 20, bare 5.
    ratios = interleaved(
        _timer([1.0, 2.0, 4.0, 5.0]), {"v": _timer([10.0, 20.0])}, 2, warmup=0, neighbours="one"
    )
    assert ratios == {"v": [10.0 / 2.0, 20.0 / 4.0]}
    both = interleaved(_timer([1.0, 2.0, 4.0, 5.0]), {"v": _timer([10.0, 20.0])}, 2, warmup=0)
    assert both == {"v": [10.0 / 1.5, 20.0 / 4.5]}
    with pytest.raises(ValueError, match="neighbours"):
        interleaved(_timer([1.0]), {"v": _timer([1.0])}, 1, warmup=0, neighbours="mean")


def test_one_neighbour_treats_two_variants_alike_when_a_variant_slows_the_next_block():
    # Equal loops, but a bare block right after a variant runs 2% slower (the
    # caches it left). Each variant must meet such blocks as often as the other.
    last = ["bare"]

    def block(kind: str):
        def run() -> float:
            slow = kind == "bare" and last[0] != "bare"
            last[0] = kind
            return 1.02 if slow else 1.0

        return run

    for pieces in (1, 5):
        ratios = interleaved(
            block("bare"), {"a": block("a"), "b": block("b")}, 8, 0,
            neighbours="one", pieces=pieces,
        )  # fmt: skip
        assert statistics.fmean(ratios["a"]) == pytest.approx(statistics.fmean(ratios["b"]))


def test_a_round_of_pieces_is_its_blocks_total_over_their_baselines_total():
    # Turn 0: bare 1, v 10, bare 3; turn 1: bare 4, v 20, bare 8.
    one = interleaved(
        _timer([1.0, 3.0, 4.0, 8.0]), {"v": _timer([10.0, 20.0])}, 1, 0, neighbours="one", pieces=2
    )
    assert one == {"v": [30.0 / (3.0 + 4.0)]}  # the one after, then the one before
    both = interleaved(_timer([1.0, 3.0, 4.0, 8.0]), {"v": _timer([10.0, 20.0])}, 1, 0, pieces=2)
    assert both == {"v": [30.0 / (2.0 + 6.0)]}


def test_one_neighbour_reads_no_gap_between_equal_loops_with_skewed_times():
    # A/A: the variant and the baseline draw block times from one right-skewed
    # law. Over the mean of two neighbours (less skewed than one block) the
    # median sits below 1; over one neighbour it sits at 1.
    rng = random.Random(4)

    def skewed() -> float:
        return rng.lognormvariate(0.0, 0.3)

    def runs():
        return (lambda: skewed()), {"v": lambda: skewed()}

    base, variants = runs()
    one = statistics.median(interleaved(base, variants, 4000, warmup=0, neighbours="one")["v"])
    base, variants = runs()
    both = statistics.median(interleaved(base, variants, 4000, warmup=0)["v"])
    assert one == pytest.approx(1.0, abs=0.006)
    assert both < 0.99

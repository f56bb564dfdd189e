"""The step-by-step set (benchmarks/step_pairs.py): turns, rounds and ratios, on a fake clock."""

from __future__ import annotations

import pytest

import benchmarks.step_pairs as step_pairs_module
from benchmarks.common import Budget
from benchmarks.loops import Variant
from benchmarks.probe_plans import REGRESSION
from benchmarks.step_pairs import step_pairs


class Clock:
    """A clock that moves only when a variant steps, by that variant's step time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


started: list = []  # (variant, the model copy it started with), in order


def _timed(clock: Clock, seconds: float, calls: list, name: str):
    class Timed(Variant):
        def __init__(self, loop) -> None:
            super().__init__(loop)
            self.starts = self.stops = 0

        def start(self) -> None:
            self.starts += 1
            started.append((name, self.loop))

        def stop(self) -> None:
            self.stops += 1

        def step(self) -> None:
            calls.append(name)
            clock.now += seconds

    return Timed


def test_each_round_steps_every_variant_in_turn_and_rates_it_against_both_bare_copies(
    monkeypatch,
):
    clock, calls = Clock(), []
    monkeypatch.setattr(step_pairs_module, "now", clock)
    monkeypatch.setattr(step_pairs_module, "Loop", lambda config: None)  # no model needed
    speeds = [0.0010, 0.0012]  # the two bare copies' step times, in the order they are made

    def bare(loop):
        return _timed(clock, speeds.pop(0), calls, "bare")(loop)

    monkeypatch.setattr(step_pairs_module, "Bare", bare)
    factories = {
        "slow": _timed(clock, 0.0022, calls, "slow"),
        "even": _timed(clock, 0.0011, calls, "even"),
    }
    ratios, control, bare_ms = step_pairs(REGRESSION, factories, 6, 3, 3, Budget())
    assert ratios["slow"] == pytest.approx([2.0] * 3)  # against the copies' mean, 1.1 ms
    assert ratios["even"] == pytest.approx([1.0] * 3)
    assert control == pytest.approx([1.2] * 3)  # the A/A gap, reported
    assert bare_ms == pytest.approx(1.1)
    per_round = 4 * (6 + 1)  # four variants, a first untimed step each
    assert len(calls) == 3 * per_round
    turns = [tuple(calls[4 + 4 * t : 8 + 4 * t]) for t in range(6)]
    assert len({turn[0] for turn in turns}) > 1  # the order rotates


def test_the_model_copies_change_hands_every_round(monkeypatch):
    clock, calls = Clock(), []
    monkeypatch.setattr(step_pairs_module, "now", clock)
    copies = iter(range(100))
    monkeypatch.setattr(step_pairs_module, "Loop", lambda config: next(copies))
    monkeypatch.setattr(step_pairs_module, "Bare", _timed(clock, 0.001, calls, "bare"))
    started.clear()
    factories = {"a": _timed(clock, 0.001, calls, "a"), "b": _timed(clock, 0.001, calls, "b")}
    step_pairs(REGRESSION, factories, 2, 4, 4, Budget())
    for name in ("a", "b"):  # four rounds, four copies: each variant had each once
        assert sorted(loop for who, loop in started if who == name) == [0, 1, 2, 3]


def test_the_budget_cuts_rounds_past_the_minimum(monkeypatch):
    clock, calls = Clock(), []
    monkeypatch.setattr(step_pairs_module, "now", clock)
    monkeypatch.setattr(step_pairs_module, "Loop", lambda config: None)
    monkeypatch.setattr(step_pairs_module, "Bare", _timed(clock, 0.001, calls, "bare"))
    monkeypatch.setattr("benchmarks.common._wall", clock)
    budget = Budget(0.05)  # a round of 10 steps of 3 variants takes ~0.033 s
    ratios, _, _ = step_pairs(REGRESSION, {"v": _timed(clock, 0.001, calls, "v")}, 10, 9, 2, budget)
    assert 2 <= len(ratios["v"]) < 9

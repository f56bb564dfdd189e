"""The capture policy's batched accounting of plain steps decides exactly as step by step.

engine.policy queues plain steps and answers `plan` with one comparison
before its horizon; a policy made to account every step as it comes (the
policy as it was before the queue) is the reference, on random runs with
slow spells, pauses announced and not, exact single steps and steps that
went non-finite.
"""

from __future__ import annotations

import random

import pytest

from engine.policy import NOTHING, CapturePolicy


class StepByStep(CapturePolicy):
    """The same policy with no queue and no horizon: every step accounted as it comes."""

    def plan(self, step: int, exact: bool = False) -> tuple[bool, bool]:
        self.quiet_until = 0
        answer = super().plan(step, exact)
        self.quiet_until = 0  # closed for a caller that reads it too (the Trainer)
        return answer

    def done(self, step: int, plan, start: float, measuring: float) -> None:
        self.queue_next = -1
        super().done(step, plan, start, measuring)
        self.queue_next = -1


def random_run(policy: CapturePolicy, seed: int, steps: int = 6000):
    """Everything the policy decided and showed, step by step, and its final state."""
    rng = random.Random(seed)
    base = rng.choice([1e-4, 1e-3, 5e-3])
    clock, slow, seen = 0.0, 1.0, []
    for step in range(steps):
        if rng.random() < 0.01:
            slow = rng.choice([1.0, 1.0, 2.0, 3.0])  # the machine's slow spells
        if rng.random() < 0.003:
            gap = rng.uniform(0.01, 1.0)
            clock += gap
            if rng.random() < 0.7:
                policy.skip(gap)  # a benchmark's gap, or the dashboard's pause
        stats, acts = policy.plan(step, exact=rng.random() < 0.002)
        if rng.random() < 0.002:
            stats = True  # a step gone non-finite: captured whatever the plan
        cost = (rng.uniform(0.05, 0.3) * base if stats else 0.0) + (
            rng.uniform(0.5, 3.0) * base if acts else 0.0
        )
        policy.done(step, (stats, acts), clock, cost)
        clock += base * slow * rng.lognormvariate(0.0, 0.2) + cost
        if rng.random() < 0.001:
            clock += rng.uniform(0.05, 2.0)  # a stall nobody announced
        seen.append((stats, acts, policy.stats_period, policy.activation_period))
    policy.plan(steps, exact=True)  # settles what is queued
    state = (policy.stats.credit, policy.activations.credit, policy._plain_wall)
    return seen, state


@pytest.mark.parametrize("seed", range(12))
def test_batched_accounting_decides_what_step_by_step_did(seed):
    rng = random.Random(seed)
    every = rng.choice([1, 1, 2, 5]), rng.choice([3, 10, 50])
    batched, reference = CapturePolicy(*every), StepByStep(*every)
    assert random_run(batched, seed) == random_run(reference, seed)


def test_plain_steps_are_queued_and_plans_answered_without_looking():
    policy = CapturePolicy(1, 10)
    clock = 0.0
    for step in range(2000):  # statistics cost half a step: held to every ~100th
        plan = policy.plan(step)
        cost = (5e-5 if plan[0] else 0.0) + (5e-4 if plan[1] else 0.0)
        policy.done(step, plan, clock, cost)
        clock += 1e-4 + cost
    assert 0 < len(policy.queued) <= 32  # settled at least at each refresh of the median
    assert policy.quiet_until > 2000
    assert policy.plan(2000) is NOTHING
    assert policy.stats_period >= 50  # the queued steps count for the period shown


def test_the_trainer_reading_the_fast_path_decides_what_the_calls_would(monkeypatch):
    # Trainer.step reads `quiet_until` and `queue_next` in place of plan/done
    # between captures. With StepByStep, which keeps both closed, every step
    # calls them: the same run on the same (simulated) clock decides alike.
    import types

    from engine import trainer as trainer_module
    from engine.config import RunConfig

    config = RunConfig(
        dataset="regression", model="shallow", hidden_units=15, batch_size=32,
        standardize_target=True, epochs=1_000, device="cpu",
    )  # fmt: skip

    def run(policy_class):
        class Counted(policy_class):
            calls = 0

            def plan(self, step, exact=False):
                Counted.calls += 1
                return super().plan(step, exact)

            def done(self, step, plan, start, measuring):
                Counted.calls += 1
                super().done(step, plan, start, measuring)

        rng = random.Random(7)
        now = [0.0]

        def perf_counter() -> float:
            now[0] += rng.choice([1e-4, 1e-4, 1e-4, 3e-4])
            return now[0]

        monkeypatch.setattr(
            trainer_module, "time", types.SimpleNamespace(perf_counter=perf_counter)
        )
        trainer = trainer_module.Trainer(config)
        # Budgets that bind every few dozen steps of this clock: many captures to decide.
        policy = trainer.policy = Counted(
            config.capture_every, config.activation_every, stats_budget=0.05, activation_budget=0.05
        )
        records = [trainer.step() for _ in range(3000)]
        assert trainer.first_nonfinite is None  # every capture the policy's own
        policy.plan(3000, exact=True)  # settles what is queued
        seen = [(r.captured, r.activations_captured) for r in records]
        return (
            seen,
            (policy.stats.credit, policy.activations.credit, policy._plain_wall),
            Counted.calls,
        )

    *fast, fast_calls = run(CapturePolicy)
    *reference, reference_calls = run(StepByStep)
    assert fast == reference
    assert reference_calls > 2 * 3000 and fast_calls < 3000 // 2  # the fast path is taken
    assert 20 < sum(stats for stats, _ in fast[0]) < 2900  # the budget binds, and captures come

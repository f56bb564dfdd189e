"""The time-budgeted capture policy (engine.policy), on a simulated clock."""

from __future__ import annotations

import math

import pytest

from engine.config import RunConfig
from engine.policy import ACTIVATION_BUDGET, ALLOWANCE, STATS_BUDGET, CapturePolicy
from engine.trainer import Trainer


def simulate(policy: CapturePolicy, steps: int, step_s: float, stats_s: float, acts_s: float):
    """Run `steps` steps whose plain part takes `step_s`; captures add their cost.

    Returns the plans and the seconds spent on each tier.
    """
    clock, plans, spent = 0.0, [], {"stats": 0.0, "acts": 0.0}
    for step in range(steps):
        stats, acts = policy.plan(step)
        cost = (stats_s if stats else 0.0) + (acts_s if acts else 0.0)
        spent["stats"] += stats_s if stats else 0.0
        spent["acts"] += acts_s if acts else 0.0
        policy.done(step, (stats, acts), clock, cost)
        clock += step_s + cost
        plans.append((stats, acts))
    return plans, spent, clock


def one_stall(
    policy, tier: int, steps: int, step_s: float, capture_s: float, nth: int, stall_s: float
):
    """Steps where one tier's captures cost `capture_s`, but its `nth` lands in a stall.

    `tier`: 0 statistics, 1 activations. Returns the tier's captured steps and the clock.
    """
    clock, captured = 0.0, []
    for step in range(steps):
        plan = policy.plan(step)
        cost = capture_s if plan[tier] else 0.0
        if plan[tier]:
            captured.append(step)
            if len(captured) == nth:
                cost = stall_s
        policy.done(step, plan, clock, cost)
        clock += step_s + cost
    return captured, clock


def test_step_zero_carries_everything_and_slow_runs_keep_exact_periods():
    # Captures cost 0.1% of a step: no budget binds.
    plans, _, _ = simulate(CapturePolicy(1, 10), 500, 0.01, 1e-5, 1e-5)
    assert plans[0] == (True, True)
    assert all(stats for stats, _ in plans)
    assert [s for s, (_, acts) in enumerate(plans) if acts] == list(range(0, 500, 10))


def test_a_fast_run_settles_within_its_budgets_evenly_spaced():
    # Statistics cost 10% of a step, activations 100%: far over budget.
    policy = CapturePolicy(1, 10)
    plans, spent, clock = simulate(policy, 100_000, 1e-3, 1e-4, 1e-3)
    assert spent["stats"] <= STATS_BUDGET * clock + ALLOWANCE + 1e-4
    assert spent["acts"] <= ACTIVATION_BUDGET * clock + ALLOWANCE + 1e-3
    # ... and they still come, many times a second of training.
    assert sum(s for s, _ in plans) > 0.5 * STATS_BUDGET * clock / 1e-4
    assert sum(a for _, a in plans) > 0.5 * ACTIVATION_BUDGET * clock / 1e-3
    # Activations stay on multiples of their period; the late statistics are evenly spaced.
    assert all(step % 10 == 0 for step, (_, a) in enumerate(plans) if a)
    late = [step for step, (s, a) in enumerate(plans[50_000:], 50_000) if s and not a]
    gaps = {b - a for a, b in zip(late, late[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 2 * policy.stats_period
    assert policy.stats_period > 1 and policy.activation_period > 10


def test_a_short_run_captures_every_step_within_the_allowance():
    # The exploding preset: a dozen steps, activations costlier than the step itself.
    plans, _, _ = simulate(CapturePolicy(1, 1), 12, 2e-4, 1e-4, 4e-4)
    assert all(s and a for s, a in plans)


def test_exact_sampling_never_skips():
    plans, _, _ = simulate(CapturePolicy(2, 5, exact=True), 1000, 1e-3, 1e-2, 1e-2)
    assert [s for s, (stats, _) in enumerate(plans) if stats] == list(range(0, 1000, 2))
    assert [s for s, (_, acts) in enumerate(plans) if acts] == list(range(0, 1000, 5))


def test_a_pause_earns_no_more_than_a_usual_step():
    policy = CapturePolicy(1, 10)
    simulate(policy, 2000, 1e-3, 1e-4, 1e-3)
    credit = policy.stats.credit
    policy.done(2000, (False, False), 3600.0, 0.0)  # an hour later
    assert policy.stats.credit <= max(credit, 0.0) + 2 * STATS_BUDGET * 1.2e-3


def test_pauses_earn_nothing_while_every_step_captures_statistics():
    """Statistics cheap enough to be due every step leave no plain step to measure
    a pause against; pauses (a benchmark's gaps between its blocks, the user's)
    must still earn no more than a step, or the activations come every 10th step."""
    policy = CapturePolicy(1, 10)
    clock, trained, spent_acts, acts_steps = 0.0, 0.0, 0.0, 0
    for step in range(3000):
        if step and step % 50 == 0:
            clock += 1.0  # a second of other work between blocks of 50 steps
        stats, acts = policy.plan(step)
        assert stats or step > 200  # 0.3% of a step: due every step throughout
        cost = (1e-5 if stats else 0.0) + (2e-3 if acts else 0.0)
        policy.done(step, (stats, acts), clock, cost)
        clock += 3.7e-3 + cost
        trained += 3.7e-3 + cost
        spent_acts += 2e-3 if acts else 0.0
        acts_steps += acts
    assert policy._plain_wall is None  # not one plain step: the case under test
    # Each of the 59 pauses earned at most two steps' credit (3.7 ms each).
    earned = ACTIVATION_BUDGET * (trained + 59 * 2 * 3.7e-3)
    assert spent_acts <= earned + ALLOWANCE + 2e-3  # 364 ms before; ~68 ms now
    assert acts_steps < 3000 / 10 / 4  # 182 before (about every 16th step)


@pytest.mark.parametrize("sampling", ["budget", "exact"])
def test_the_step_that_breaks_is_captured_even_when_not_due(sampling):
    # Statistics due only on step 0; the exploding run's loss turns inf at step 11.
    config = RunConfig(
        dataset="regression", model="shallow", hidden_units=15, batch_size=32,
        shuffle=True, lr=0.01, epochs=1, seed=11, capture_every=1000, sampling=sampling,
        device="cpu",
    )  # fmt: skip
    trainer = Trainer(config)
    try:
        records = [trainer.step() for _ in range(13)]
    finally:
        trainer.close()
    nf = trainer.first_nonfinite
    assert nf is not None and nf.step == 11
    broke = records[11]
    assert broke.captured and not math.isfinite(broke.loss)
    assert broke.layers["fc1"].grad_mean is not None
    assert [r.captured for r in records[1:11]] == [False] * 10


def test_a_single_step_keeps_the_exact_periods_when_the_budget_is_spent():
    # A fast run over budget: many due steps are skipped...
    policy = CapturePolicy(1, 10)
    plans, _, clock = simulate(policy, 20_000, 1e-3, 1e-4, 1e-3)
    assert not all(s for s, _ in plans[-100:])
    # ... but a step taken on its own (the dashboard's n) follows the configured periods.
    step = 20_000
    assert policy.plan(step, exact=True) == (True, True)
    assert policy.plan(step + 1, exact=True) == (True, False)


def test_the_sessions_single_steps_capture_on_the_configured_periods(monkeypatch):
    import engine.trainer
    from engine.session import TrainingSession

    class SpentBudget(CapturePolicy):
        """A policy whose budgets are spent: only exact plans capture after step 0."""

        def plan(self, step: int, exact: bool = False) -> tuple[bool, bool]:
            return super().plan(step, exact) if exact or step == 0 else (False, False)

    monkeypatch.setattr(engine.trainer, "CapturePolicy", SpentBudget)
    config = RunConfig(n_samples=64, batch_size=64, epochs=50, activation_every=3)
    records = []
    session = TrainingSession(config, on_record=records.append)
    try:
        for _ in range(8):
            session.step(wait=True, timeout=120)
    finally:
        session.stop()
    assert [r.step for r in records] == list(range(8))
    assert all(r.captured for r in records)
    assert [r.step for r in records if r.activations_captured] == [0, 3, 6]


def test_one_capture_caught_in_a_pause_does_not_starve_the_rest_of_the_run():
    # Statistics cost 10% of a 1 ms step; the 20th capture lands in a 0.2 s
    # stall (a full garbage collection, a preempted VM). Charged in full it
    # would take 40 s of training to earn back; the run goes on capturing.
    captured, clock = one_stall(CapturePolicy(1, 10_000), 0, 20_000, 1e-3, 1e-4, 20, 0.2)
    after = [s for s in captured[20:] if s > 2_000]
    assert len(after) > 0.5 * STATS_BUDGET * (clock - 2.5) / 1e-4


def test_the_steps_a_capture_slows_down_are_charged_to_it():
    # Statistics cost 5% of a 1 ms step, and leave the next two steps 5% and
    # 2% slower (cold caches): all of it counts toward the statistics' budget.
    policy = CapturePolicy(1, 10**9)
    clock, spent, since = 0.0, 0.0, None
    for step in range(200_000):
        stats, acts = policy.plan(step)
        cost = 5e-5 if stats else 0.0
        slow = {1: 5e-5, 2: 2e-5}.get(step - since, 0.0) if since is not None else 0.0
        if step > 0:
            spent += cost + slow
        policy.done(step, (stats, acts), clock, cost)
        clock += 1e-3 + cost + slow
        if stats:
            since = step
    assert spent <= STATS_BUDGET * clock * 1.05 + ALLOWANCE
    assert spent >= 0.8 * STATS_BUDGET * clock  # and the budget is still used


def test_a_pause_right_after_a_capture_is_not_charged_as_its_slowdown():
    # The benchmark's blocks, or a user pausing the dashboard: a long wait
    # falls on the step after a capture. It is not the capture's slowdown
    # (engine.policy's spill): later captures stay charged what they cost.
    policy = CapturePolicy(1, 10**9)
    clock, captured = 0.0, []
    for step in range(100_000):
        stats, acts = policy.plan(step)
        cost = 5e-5 if stats else 0.0
        policy.done(step, (stats, acts), clock, cost)
        clock += 1e-3 + cost
        if stats:
            captured.append(step)
        elif captured and step == captured[-1] + 1 and len(captured) % 2:
            clock += 0.5  # half a second's pause on the step after a capture
    assert all(not walls or max(walls) < 0.01 for walls in policy._spill.values())
    assert policy.stats.usual < 2e-4  # a capture still costs what it costs
    late = [s for s in captured if s > 50_000]
    assert len(late) > 0.5 * STATS_BUDGET * 50 / 5e-5  # ~50 s of training after step 50,000


def test_the_period_in_force_is_the_mean_gap_of_recent_captures():
    # The status line's "stats every ~N": one late gap does not set it.
    from engine.policy import PERIOD_CAPTURES, BudgetedPeriod

    tier = BudgetedPeriod(1, STATS_BUDGET)
    steps = [0, 10, 20, 30, 40, 50, 60, 70, 80, 200]
    for step in steps:
        tier.captured(step)
    assert PERIOD_CAPTURES == 9
    assert tier.period == round((200 - 10) / 8)  # the last nine captures' mean gap


def test_a_tier_whose_capture_costs_more_than_the_allowance_keeps_capturing():
    # A step of 0.1 s on a loaded machine (the dashboard beside a test run):
    # each statistics capture costs 20 ms, twice the credit a tier may hold.
    # It waited for credit it could never hold and captured nothing more;
    # now it captures when the credit is full, within its budget.
    policy = CapturePolicy(1, 10**9)
    plans, spent, clock = simulate(policy, 6_000, 0.1, 0.02, 0.0)
    late = [step for step, (stats, _) in enumerate(plans) if stats and step > 1_000]
    assert len(late) >= 10
    assert spent["stats"] <= STATS_BUDGET * clock + 2 * ALLOWANCE + 0.02


def test_a_first_activation_capture_caught_in_a_stall_does_not_starve_the_run():
    # The first activation step after step 0 lands in a 2 s stall (a burst of
    # other work on the machine). Charged in full it left its tier 2 s in debt
    # and its usual cost at 2 s: no activations for the rest of the run.
    captured, _ = one_stall(CapturePolicy(10**9, 10), 1, 20_000, 0.02, 2e-3, 2, 2.0)
    assert len([s for s in captured if s > 10_000]) > 10


def test_the_period_shown_grows_while_no_capture_comes():
    # The status line said "stats every step" long after the last capture.
    policy = CapturePolicy(1, 10)
    for step in range(50):
        policy.done(step, policy.plan(step), step * 0.01, 0.0)
    assert policy.stats_period == 1
    policy.stats.credit = -1.0  # in debt: nothing is due for a while
    for step in range(50, 450):
        plan = policy.plan(step)
        assert not plan[0]
        policy.done(step, plan, step * 0.01, 0.0)
    assert policy.stats_period >= 400


def _gapped(skip: bool, gaps: float) -> list[tuple[bool, bool]]:
    """Plans of a run in blocks of 10 steps, `gaps` seconds of other work between them."""
    policy = CapturePolicy(1, 10)
    clock, plans = 0.0, []
    for step in range(3000):
        if step and step % 10 == 0:
            clock += gaps
            if skip:
                policy.skip(gaps)
        stats, acts = policy.plan(step)
        cost = (1e-4 if stats else 0.0) + (1e-3 if acts else 0.0)
        policy.done(step, (stats, acts), clock, cost)
        clock += 4e-3 + cost
        plans.append((stats, acts))
    return plans


def test_a_gap_the_caller_skips_is_accounted_as_if_it_never_was():
    unbroken = _gapped(skip=True, gaps=0.0)
    assert _gapped(skip=True, gaps=0.2) == unbroken
    # Unannounced, each gap is a pause: captures on a block's last step are
    # charged a whole step, and the statistics come less often.
    stats = sum(s for s, _ in unbroken)
    assert sum(s for s, _ in _gapped(skip=False, gaps=0.2)) < 0.9 * stats

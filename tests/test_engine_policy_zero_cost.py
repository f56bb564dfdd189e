"""A capture policy's tiers never settle at a zero cost (engine.budgeted_period, engine.policy).

A tier whose usual cost read zero once clamped every later charge to four
times zero, and captured every step for good.
"""

from __future__ import annotations

import pytest

from engine.budgeted_period import BudgetedPeriod
from engine.policy import ALLOWANCE, STATS_BUDGET, CapturePolicy


def test_a_tier_charged_nothing_three_times_still_learns_its_cost():
    # Three captures that cost nothing measurable must not hold every later
    # charge to zero: the tier would then capture every step for good.
    tier = BudgetedPeriod(1, STATS_BUDGET)
    for _ in range(3):
        tier.charge(0.0, 0.0)
    for _ in range(3):
        tier.charge(5e-5, 0.0)
    assert tier.usual == pytest.approx(5e-5)


def test_a_policy_taking_over_a_run_midway_charges_the_statistics_no_zero_share():
    # A policy whose first step is not step 0 (a benchmark swapping policies on
    # one Trainer) counts that step, which carries both tiers before the
    # statistics' cost is known: that share is no zero cost of theirs.
    policy = CapturePolicy(1, 10)
    clock, spent, charged = 0.0, 0.0, []
    for step in range(1_000, 101_000):
        stats, acts = policy.plan(step)
        cost = (1e-5 if stats else 0.0) + (1e-4 if acts else 0.0)
        spent += 1e-5 if stats else 0.0
        policy.done(step, (stats, acts), clock, cost)
        clock += 1e-4 + cost
        if step < 1_010:
            charged += list(policy.stats.extras)
    assert min(charged) > 0
    assert spent <= STATS_BUDGET * clock * 1.05 + ALLOWANCE

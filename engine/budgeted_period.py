"""One tier of the capture policy: a period, held within a share of the wall time.

engine.policy decides each step's captures with two of these (statistics,
activations); each is a token bucket that a step's wall time fills and a
capture's cost empties (see BudgetedPeriod).
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

ALLOWANCE = 0.01  # seconds of capture either tier may spend ahead of its budget
_RECENT_EXTRAS = 5  # captured steps remembered, per tier
PERIOD_CAPTURES = 9  # captures whose mean gap is the period in force
OUTLIER = 4.0  # a capture is charged at most this many times its tier's usual cost


class BudgetedPeriod:
    """One tier's sampling: multiples of `every`, within `budget` of the wall time.

    A token bucket: each step earns `budget` times its wall time in credit,
    up to `allowance` seconds; a captured step spends what it cost. A tier is
    due when a multiple of `every` comes round and the credit covers its
    usual cost, so short runs (the exploding preset's 12 steps) capture every
    step, and long ones settle at the budget with evenly spaced captures.
    """

    def __init__(self, every: int, budget: float, allowance: float = ALLOWANCE) -> None:
        self.every = max(1, every)
        self.budget = budget
        self.allowance = allowance
        self.credit = allowance
        self.period = self.every  # steps between captures, over the last few
        self._recent_steps: deque[int] = deque(maxlen=PERIOD_CAPTURES)  # its last captures
        self.extras: deque[float] = deque(maxlen=_RECENT_EXTRAS)
        self.usual = 0.0  # the median of `extras`: what a capture usually costs

    def due(self, step: int, exact: bool = False) -> bool:
        """Whether this tier captures `step`; `exact`: on its period, whatever the credit."""
        if not self._recent_steps:
            return True  # step 0 (or the first step trained) carries everything
        if step % self.every:
            return False
        # A full bucket is enough: a tier whose usual cost is more than the
        # credit it may hold (a 0.1 s step on a loaded machine, 20 ms captures)
        # would otherwise wait for credit it can never have, and stop for good.
        return exact or self.credit >= min(self.usual, self.allowance)

    def first_due(self, step: int, most: float) -> float:
        """The first step after `step` that may be due, if each step earns at most `most` seconds.

        At plan(step) the credit holds the walls up to step - 2: by plan(step + k),
        k more walls, so a tier `need` short of its usual cost is due no sooner
        than k = need / (budget * most) steps on, and only on a multiple of `every`.
        """
        if not self._recent_steps:
            return step + 1
        need = min(self.usual, self.allowance) - self.credit
        first = step + 1
        if need > 0:
            rate = self.budget * most
            if rate <= 0:
                return math.inf  # earns nothing: due again only once a capture is settled
            first = max(first, step + int(need / rate))
        return first + (-first) % self.every

    def earn(self, wall: float) -> None:
        """Credit a step that took `wall` seconds from its start to the next."""
        self.credit = min(self.allowance, self.credit + self.budget * wall)

    def period_at(self, step: int) -> int:
        """The period in force at `step`: the recent captures' mean gap, or the
        gap since the last one once that is longer (a tier the budget holds back)."""
        if not self._recent_steps:
            return self.period
        return max(self.period, step - self._recent_steps[-1])

    def captured(self, step: int) -> float:
        """Note that `step` captured this tier; spend its usual cost for now.

        Returns what was spent, for `charge` to settle once the real cost is known.
        """
        recent = self._recent_steps
        recent.append(step)
        if len(recent) > 1:
            # The mean gap: one gap alone jumps with every pause and catch-up.
            self.period = max(1, round((step - recent[0]) / (len(recent) - 1)))
        self.credit -= self.usual
        return self.usual

    def charge(self, extra: float, spent: float) -> None:
        """Settle a capture: it cost `extra` seconds over a usual step, `spent` was taken."""
        extra = max(0.0, extra)
        # A capture that landed in a pause (a full garbage collection, the OS,
        # a slow second on a shared machine) pays a few usual costs, not the
        # pause: charged in full, a 0.2 s stall takes 40 s of training at a
        # 0.5% budget to earn back, and a short run captures nothing more.
        # Before three captures tell what is usual, a few allowances at most:
        # a 2 s stall on the first activation step after step 0 had left the
        # tier 2 s in debt, 2 s its usual cost, and the run without activations.
        # A usual cost of zero (captures that cost nothing measurable) bounds nothing:
        # held to it, every later charge would be zero too, and the tier free for good.
        usual = self.usual if len(self.extras) >= 3 and self.usual > 0 else self.allowance
        extra = min(extra, OUTLIER * usual)
        self.extras.append(extra)
        self.usual = median(self.extras)
        self.credit -= extra - spent

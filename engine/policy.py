"""Which training steps capture what: the time-budgeted sampling policy.

Every step carries the sentinels (the loss, each layer's gradient norm and
the total), which cost a few percent of a step at most. Two tiers cost more:

- gradient and weight statistics (mean, std, extremes, update ratio; on the
  CPU a model of a million layer weights or more takes the update ratio with
  the activations, engine.probe): a few percent of a step on the slides'
  block and regression models (a small CPU model's step kept compact,
  engine.compact_stats);
- activations and histograms (a pass over every layer's output, 3 x layers
  histograms): about a quarter of a step on the block model, one step on the
  regression model.

Each tier is due on step 0 and on multiples of its configured period
(`capture_every`, `activation_every`) while its share of the run's wall time
allows: STATS_BUDGET and ACTIVATION_BUDGET, with ALLOWANCE seconds of credit
to spend ahead, so a short run captures every step and a long fast one skips
some, evenly spaced (BudgetedPeriod). Slow or throttled runs, where a budget
never binds, keep the exact periods; a fast run of a small model gets fewer
captured steps, still many per second. A step whose loss or gradient goes
non-finite is captured whatever the policy says (engine.probe).

A captured step costs its wall time (start to the next start) minus a plain
step's (the median of recent steps that captured neither tier), or at least
the time the probe spent measuring it, plus what the SPILL_STEPS steps
after its tier's captures usually take over a plain step (a capture leaves
caches cold: +36 and +8 us after a statistics step of the regression model,
whose own excess is ~130 us with its History row), and at most four times
its tier's usual cost (a capture caught in a pause does not starve the
rest of the run; before three captures, four allowances); a tier whose
capture costs more than the credit it may hold is due whenever its credit
is full; every step earns credit for its wall time, at most twice a plain
step's, so a pause (the user's, or a benchmark's) earns no more than a
step; step 0, which also pays every first-call cost, is not counted.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

STATS_BUDGET = 0.005  # statistics steps may take this fraction of the wall time
ACTIVATION_BUDGET = 0.005  # and activation steps this one
ALLOWANCE = 0.01  # seconds of capture either tier may spend ahead of its budget
_RECENT = 32  # steps remembered for a step's wall time
_RECENT_EXTRAS = 5  # captured steps remembered, per tier
PERIOD_CAPTURES = 9  # captures whose mean gap is the period in force
SPILL_STEPS = 2  # steps after a capture that still pay for it (caches it emptied)
_MIN_SPILL_SAMPLES = 3  # walls needed at a distance before its slowdown is charged
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
        usual = self.usual if len(self.extras) >= 3 else self.allowance
        extra = min(extra, OUTLIER * usual)
        self.extras.append(extra)
        self.usual = median(self.extras)
        self.credit -= extra - spent


class CapturePolicy:
    """Decides, step by step, whether a step captures statistics and activations."""

    def __init__(
        self,
        stats_every: int,
        activation_every: int,
        stats_budget: float = STATS_BUDGET,
        activation_budget: float = ACTIVATION_BUDGET,
        exact: bool = False,
    ) -> None:
        """`exact`: capture on every multiple of the periods, whatever it costs."""
        allowance = math.inf if exact else ALLOWANCE
        self.stats = BudgetedPeriod(stats_every, stats_budget, allowance)
        self.activations = BudgetedPeriod(activation_every, activation_budget, allowance)
        self._plain: deque[float] = deque(maxlen=_RECENT)  # walls of steps that captured neither
        self._plain_wall: float | None = None  # their median, refreshed now and then
        self._walls: deque[float] = deque(maxlen=_RECENT)  # every step's, until a plain one
        self._any_wall: float | None = None  # their median: a pause's yardstick without plain steps
        self._previous: tuple | None = None  # (step, plan, start, measuring) of the last step
        # The last capture counted: its step and tier, and the last step it slowed down.
        self._capture_step, self._capture_tier, self._spill_until = 0, "stats", -1
        # Walls of the plain steps 1..SPILL_STEPS after each tier's captures.
        self._spill = {
            (tier, d): deque(maxlen=_RECENT) for tier in ("stats", "acts")
            for d in range(1, SPILL_STEPS + 1)
        }  # fmt: skip

    def plan(self, step: int, exact: bool = False) -> tuple[bool, bool]:
        """(statistics, activations): what `step` captures.

        `exact`: on the configured periods whatever the budget says; for a step
        taken on its own (the dashboard's `n`), which has no pace to protect and
        must show the same thing however fast the machine is.
        """
        return self.stats.due(step, exact), self.activations.due(step, exact)

    def done(self, step: int, plan: tuple[bool, bool], start: float, measuring: float) -> None:
        """Account for `step`, started at `start` (perf_counter seconds).

        `measuring` is the seconds the probe spent measuring it. `plan` is what
        the step actually captured: the probe may have added statistics to a
        step that went non-finite. A step's own cost is known once the next
        one starts: its wall time then includes whatever the caller does with
        a richer record (the history; an export file formats records a batch
        at a time, engine.export, so that cost falls on a later step).
        """
        stats, acts = plan
        spent = (
            self.stats.captured(step) if stats else 0.0,
            self.activations.captured(step) if acts else 0.0,
        )
        previous, self._previous = self._previous, (step, plan, start, measuring, spent)
        if previous is None:
            return
        last_step, (last_stats, last_acts), last_start, last_measuring, last_spent = previous
        wall = start - last_start
        plain = not (last_stats or last_acts)
        usual = self._plain_wall
        # A pause (the user's, a benchmark's, a long UI hiccup) earns and costs
        # no more than a usual step would. Measured against plain steps, or, while
        # every step captures (a cheap tier due each step), against any step's:
        # with no yardstick at all, each pause earned its share of its length, a
        # benchmark's gaps between blocks refilled the credit, and the tiers
        # captured every step for good (block model: activations every 14th step).
        yardstick = usual
        if yardstick is None:  # only until the first plain step (kept from then on)
            self._walls.append(wall)
            if self._any_wall is None or step % _RECENT == 0:
                self._any_wall = median(self._walls)
            yardstick = self._any_wall
        paused = wall > 2 * yardstick + last_measuring
        if plain:
            if last_step <= self._spill_until:
                # Slower than a plain step for the capture just before it: its cost;
                # not a pause, which would charge every later capture for it.
                if not paused:
                    distance = last_step - self._capture_step
                    self._spill[(self._capture_tier, distance)].append(wall)
            else:
                self._plain.append(wall)
                if usual is None or step % _RECENT == 0:
                    usual = self._plain_wall = median(self._plain)  # a median a step: 5 us
        if paused:
            wall = 2 * yardstick + last_measuring
        self.stats.earn(wall)
        self.activations.earn(wall)
        if plain or last_step == 0:
            return  # step 0 pays every first-call cost: not a usual cost (nothing was spent)
        tier = "acts" if last_acts else "stats"
        self._capture_step, self._capture_tier = last_step, tier
        self._spill_until = last_step + SPILL_STEPS
        extra = last_measuring if usual is None else max(last_measuring, wall - usual)
        extra += self._spill_cost(tier, usual)
        if last_acts:
            # A step with both pays both; the statistics' share is their usual cost.
            share = self.stats.usual if last_stats else 0.0
            self.activations.charge(extra - share, last_spent[1])
            if last_stats:
                self.stats.charge(share, last_spent[0])
        else:
            self.stats.charge(extra, last_spent[0])

    def _spill_cost(self, tier: str, usual: float | None) -> float:
        # What the plain steps after this tier's captures usually take over a
        # plain step (medians: one slow step is not a capture's cost).
        if usual is None:
            return 0.0
        cost = 0.0
        for distance in range(1, SPILL_STEPS + 1):
            walls = self._spill[(tier, distance)]
            if len(walls) >= _MIN_SPILL_SAMPLES:
                cost += max(0.0, median(walls) - usual)
        return cost

    def skip(self, seconds: float) -> None:
        """Leave `seconds` out of the last step's wall: time after it that was no step's.

        For a caller that knows it stopped between two steps (a benchmark
        running other loops between blocks of this one). Unannounced, such a
        gap reads as a pause, and a pause's wall is taken as two plain steps:
        the step before it earns two steps' credit, and a capture on it is
        charged a whole plain step over its cost.
        """
        if self._previous is not None and seconds > 0:
            step, plan, start, measuring, spent = self._previous
            self._previous = (step, plan, start + seconds, measuring, spent)

    @property
    def stats_period(self) -> int:
        """The statistics period in force, as of the last step accounted for."""
        return self.stats.period_at(self._last_step())

    @property
    def activation_period(self) -> int:
        """The activation period in force, as of the last step accounted for."""
        return self.activations.period_at(self._last_step())

    def _last_step(self) -> int:
        return self._previous[0] if self._previous is not None else 0

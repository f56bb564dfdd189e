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
rest of the run; before three captures, or while that usual cost is zero,
four allowances); a tier whose
capture costs more than the credit it may hold is due whenever its credit
is full; every step earns credit for its wall time, at most twice a plain
step's, so a pause (the user's, or a benchmark's) earns no more than a
step; step 0, which also pays every first-call cost, is not counted.

Plain steps are accounted a batch at a time, and between captures `plan`
answers with one comparison (see `CapturePolicy.done`): the same decisions
as step by step, at about half the cost a step, which on a 0.1 ms step
is a point of the run.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

from engine.budgeted_period import ALLOWANCE, OUTLIER, PERIOD_CAPTURES, BudgetedPeriod

__all__ = [
    "ACTIVATION_BUDGET", "ALLOWANCE", "NOTHING", "OUTLIER", "PERIOD_CAPTURES",
    "STATS_BUDGET", "BudgetedPeriod", "CapturePolicy",
]  # fmt: skip

STATS_BUDGET = 0.005  # statistics steps may take this fraction of the wall time
ACTIVATION_BUDGET = 0.005  # and activation steps this one
_RECENT = 32  # steps remembered for a step's wall time
SPILL_STEPS = 2  # steps after a capture that still pay for it (caches it emptied)
_MIN_SPILL_SAMPLES = 3  # walls needed at a distance before its slowdown is charged
NOTHING = (False, False)  # a plan that captures neither tier
NOTHING_SPENT = (0.0, 0.0)  # what such a step spent from each tier


class CapturePolicy:
    """Decides, step by step, whether a step captures statistics and activations.

    Its two hot answers are attributes a caller may read in place of a call
    (the Trainer does: a Python frame costs ~1 us right after a 0.1 ms step):
    `plan(step)` is NOTHING for any step below `quiet_until` (unless exact),
    and `done(step, NOTHING, start, 0.0)` for `step == queue_next` is
    `queued.append(start)` then `queue_next = step + 1`. A subclass that
    changes what `plan` or `done` do there must keep both closed
    (`quiet_until` 0, `queue_next` -1), or such a caller skips it.
    """

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
        # Plain steps are accounted a batch at a time (see `done`): their starts
        # wait in `queued`, and `plan` answers NOTHING without looking before
        # `quiet_until`. Public: the class docstring's fast path.
        self.queued: list[float] = []
        self.queue_next = -1  # the step `done` may queue next; -1 while none may be
        self.quiet_until = 0

    def plan(self, step: int, exact: bool = False) -> tuple[bool, bool]:
        """(statistics, activations): what `step` captures.

        `exact`: on the configured periods whatever the budget says; for a step
        taken on its own (the dashboard's `n`), which has no pace to protect and
        must show the same thing however fast the machine is.

        Before `quiet_until` neither tier can be due whatever the steps until
        then take (`_horizon`), and the answer costs one comparison.
        """
        if step < self.quiet_until and not exact:
            return NOTHING
        self._settle()
        stats, acts = self.stats.due(step, exact), self.activations.due(step, exact)
        if not (stats or acts or exact):
            self.quiet_until = self._horizon(step)
        return stats, acts

    def done(self, step: int, plan: tuple[bool, bool], start: float, measuring: float) -> None:
        """Account for `step`, started at `start` (perf_counter seconds).

        `measuring` is the seconds the probe spent measuring it. `plan` is what
        the step actually captured: the probe may have added statistics to a
        step that went non-finite. A step's own cost is known once the next
        one starts: its wall time then includes whatever the caller does with
        a richer record (the history; an export file formats records a batch
        at a time, engine.export, so that cost falls on a later step).

        A plain step after a plain one, with nothing measured, is only queued:
        on a 0.1 ms step (the regression preset on a fast CPU) accounting each
        one as it came cost 2-4% of the run, its Python run cold right after
        the step's own work. `_settle` accounts the queue in one loop, as this
        would have step by step, whenever a plan or a capture needs it.
        """
        if step == self.queue_next and not (plan[0] or plan[1] or measuring):
            self.queued.append(start)
            self.queue_next = step + 1
            return
        self._settle()
        self.queue_next = -1
        if measuring:  # the next step's wall may be that much longer unclamped: plan afresh
            self.quiet_until = 0
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
            if not (stats or acts or measuring) and usual is not None and step > self._spill_until:
                self.queue_next = step + 1  # the next plain step may be queued
            return  # step 0 pays every first-call cost: not a usual cost (nothing was spent)
        self.quiet_until = 0  # settling a capture may give credit back: plan afresh
        tier = "acts" if last_acts else "stats"
        self._capture_step, self._capture_tier = last_step, tier
        self._spill_until = last_step + SPILL_STEPS
        extra = last_measuring if usual is None else max(last_measuring, wall - usual)
        extra += self._spill_cost(tier, usual)
        if last_acts:
            # A step with both pays both; the statistics' share is their usual cost,
            # once one is known (a policy's first step, when not step 0, carries both).
            share = self.stats.usual if last_stats else 0.0
            self.activations.charge(extra - share, last_spent[1])
            if last_stats and self.stats.extras:
                self.stats.charge(share, last_spent[0])
        else:
            self.stats.charge(extra, last_spent[0])

    def _settle(self) -> None:
        # The queued plain steps, accounted as `done` would have one by one, to
        # the last rounding: each earns its wall, at most a pause's (twice the
        # usual plain step, plus what measuring the step before took), and joins
        # the plain walls whose median is refreshed every _RECENT steps.
        starts = self.queued
        if not starts:
            return
        step, _, last_start, last_measuring, _ = self._previous
        walls, usual = self._plain, self._plain_wall
        most = 2 * usual + last_measuring
        tiers = self.stats, self.activations
        (s_credit, s_budget, s_cap), (a_credit, a_budget, a_cap) = (
            (t.credit, t.budget, t.allowance) for t in tiers
        )
        for start in starts:
            step += 1
            wall = start - last_start
            last_start = start
            walls.append(wall)
            if wall > most:
                wall = most
            s_credit += s_budget * wall  # BudgetedPeriod.earn, inlined: min(cap, credit)
            if s_credit > s_cap:
                s_credit = s_cap
            a_credit += a_budget * wall
            if a_credit > a_cap:
                a_credit = a_cap
            if step % _RECENT == 0:
                usual = median(walls)
            most = 2 * usual
        starts.clear()
        self.stats.credit, self.activations.credit = s_credit, a_credit
        self._plain_wall = usual
        self._previous = (step, NOTHING, last_start, 0.0, NOTHING_SPENT)

    def _horizon(self, step: int) -> float:
        # The first step after `step` at which a tier may be due. Until the next
        # refresh of the plain steps' median, no step earns more than twice it,
        # plus what measuring the step before it took (plain steps measure nothing).
        usual = self._plain_wall
        if usual is None or self._previous is None:
            return step + 1
        most = 2 * usual + self._previous[3]
        refresh = step + (-step) % _RECENT  # done(refresh) may raise the median
        return min(
            refresh + 1, self.stats.first_due(step, most), self.activations.first_due(step, most)
        )

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
        self._settle()  # the gap lengthens the last step's wall alone, not the one before
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
        if self._previous is None:
            return 0
        return self._previous[0] + len(self.queued)

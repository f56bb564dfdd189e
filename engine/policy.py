"""When a training step also captures activations and histograms: the sampling policy.

Gradient statistics are cheap enough for every step; an activation step is
not (a pass over every layer's output, 3 x layers histograms): on the
slides' block model it costs about a quarter of a step, on the small
regression model about one step. So the `activation_every`-th steps capture
activations, step 0 always, and the period stretches (to multiples of
`activation_every`, skipping some) when activation steps would otherwise take
more than BUDGET of the run's wall time. Slow or throttled runs, where the
budget never binds, keep the exact period; a fast run of a small model gets
fewer activation steps, still many per second.

Costs are medians of recent steps, so one hiccup or one pause (the user's,
or a benchmark's) moves nothing: an activation step costs its wall time
minus a normal step's; step 0, which also pays every first-call cost, is not
counted.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

BUDGET = 0.01  # activation steps may take this fraction of the wall time
_RECENT = 32  # normal steps remembered
_RECENT_EXTRAS = 5  # activation steps remembered


class ActivationPolicy:
    """Decides, step by step, whether a step captures activations."""

    def __init__(self, every: int, budget: float = BUDGET) -> None:
        self.every = every
        self.budget = budget
        self.period = every  # the period in force: a multiple of `every`
        self._last: int | None = None  # the last activation step
        self._compute: deque[float] = deque(maxlen=_RECENT)  # a normal step's own time
        self._wall: deque[float] = deque(maxlen=_RECENT)  # from one step's start to the next
        self._extras: deque[float] = deque(maxlen=_RECENT_EXTRAS)
        self._previous_start: float | None = None

    def due(self, step: int) -> bool:
        """Whether `step` captures activations."""
        if self._last is None:
            return True  # step 0 (or the first step trained) carries everything
        return step % self.every == 0 and step - self._last >= self.period

    def done(self, step: int, activations: bool, start: float, end: float) -> None:
        """Account for a step that ran from `start` to `end` (perf_counter seconds)."""
        if self._previous_start is not None and not activations:
            self._wall.append(start - self._previous_start)
            self._compute.append(end - start)
        self._previous_start = start
        if not activations:
            return
        first = self._last is None
        self._last = step
        if first or not self._compute:
            return
        self._extras.append(max(0.0, (end - start) - median(self._compute)))
        wall = median(self._wall)
        if wall <= 0:
            return
        needed = median(self._extras) / (self.budget * wall)
        self.period = self.every * max(1, math.ceil(needed / self.every))

"""What a plain training step costs, and what the steps after a capture add.

engine.policy charges a capture the time its step took over a plain step's
(the median of recent plain steps), plus what the SPILL_STEPS plain steps
after its tier's captures usually take over a plain step: a capture leaves
caches cold.
"""

from __future__ import annotations

from collections import deque
from statistics import median

_RECENT = 32  # steps remembered for a plain step's cost, and per spill distance
SPILL_STEPS = 2  # steps after a capture that still pay for it (caches it emptied)
_MIN_SPILL_SAMPLES = 3  # costs needed at a distance before its slowdown is charged


class StepCosts:
    """Recent steps' walls: a plain step's cost and each tier's spill.

    `refresh_every`: plain samples between two medians (a median of 32 costs
    ~5 us, too much for every step of a small model).
    """

    def __init__(self, refresh_every: int) -> None:
        self.plain: float | None = None  # a plain step's cost: the median of recent ones
        self._plain: deque[float] = deque(maxlen=_RECENT)
        self._refresh_every = refresh_every
        self._added = 0
        # The costs of the plain steps 1..SPILL_STEPS after each tier's captures.
        self._spill = {
            (tier, d): deque(maxlen=_RECENT) for tier in ("stats", "acts")
            for d in range(1, SPILL_STEPS + 1)
        }  # fmt: skip

    def add_plain(self, cost: float) -> None:
        """Note a plain step (one that neither captured nor followed a capture)."""
        self._plain.append(cost)
        self._added += 1
        # Every sample while the window fills (the first ones set the pace), then now and then.
        if len(self._plain) < _RECENT or self._added % self._refresh_every == 0:
            self.plain = median(self._plain)

    def add_spill(self, tier: str, distance: int, cost: float) -> None:
        """Note a plain step `distance` steps after a capture of `tier`."""
        self._spill[(tier, distance)].append(cost)

    def spill_cost(self, tier: str) -> float:
        """What the plain steps after a capture of `tier` usually take over a plain step.

        Medians, so that one slow step is not a capture's cost; 0 until known.
        """
        if self.plain is None:
            return 0.0
        cost = 0.0
        for distance in range(1, SPILL_STEPS + 1):
            costs = self._spill[(tier, distance)]
            if len(costs) >= _MIN_SPILL_SAMPLES:
                cost += max(0.0, median(costs) - self.plain)
        return cost

    def spill_samples(self) -> list[float]:
        """Every spill cost remembered (for tests and diagnostics)."""
        return [cost for costs in self._spill.values() for cost in costs]

"""What a training session reports: its states, a status snapshot, its step rate.

Kept apart from `engine.session` so widgets can name states and read
snapshots without the session's threading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.records import NonFinite

IDLE, PREPARING, RUNNING, PAUSED, FINISHED, STOPPED, ERROR = (
    "idle",
    "preparing",
    "running",
    "paused",
    "finished",
    "stopped",
    "error",
)


@dataclass(frozen=True)
class SessionStatus:
    """A consistent snapshot of the session for a status line."""

    state: str
    step: int  # steps trained so far
    epoch: int
    total_steps: int | None  # known once the experiment is built
    steps_per_second: float  # measured over the last second or so
    first_nonfinite: NonFinite | None
    error: str | None  # the exception that ended the thread, one line
    layer_names: tuple[str, ...]
    device: str | None
    # The sampling periods in force (engine.policy may stretch capture_every and
    # activation_every to keep captured steps within their share of the time).
    activation_period: int | None = None
    stats_period: int | None = None


class StepRate:
    """Steps per second over the last second and a half, from (time, step) marks."""

    WINDOW = 1.5  # seconds

    def __init__(self) -> None:
        self._marks: list[tuple[float, int]] = []

    def mark(self, step: int) -> None:
        """Note that `step` steps were done by now."""
        self._marks.append((time.monotonic(), step))
        if len(self._marks) > 400:
            del self._marks[:200]

    def per_second(self) -> float:
        """The recent rate; 0 with fewer than two recent marks."""
        now = time.monotonic()
        marks = [m for m in self._marks if now - m[0] <= self.WINDOW]
        self._marks = marks[-200:]
        if len(marks) < 2:
            return 0.0
        (t0, s0), (t1, s1) = marks[0], marks[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

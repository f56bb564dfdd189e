"""Two runs side by side: a pair of sessions driven as one, and what their configs change.

Each TrainingSession owns its thread, history, model and shuffle generator;
model building holds a lock around the global RNG and the data generators use
private ones, so two sessions running at once produce exactly the records
each would produce alone (tests/test_lab_compare.py pins it). This module
adds only the controls the compare view needs; nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.config import RunConfig
from engine.history import History
from engine.session import SessionStatus, TrainingSession

SEED_FIELDS = ("seed", "init_seed")


def config_diff(a: RunConfig, b: RunConfig) -> tuple[tuple[str, object, object], ...]:
    """(field, a's value, b's value) for every field the two configs set differently."""
    left, right = a.to_dict(), b.to_dict()
    return tuple((name, left[name], right[name]) for name in left if left[name] != right[name])


def describe_diff(a: RunConfig, b: RunConfig) -> str:
    """One line for the compare header: "clip: value → hook, lr: 0.1 → 0.01"."""
    changes = config_diff(a, b)
    if not changes:
        return "identical configs"
    return ", ".join(f"{name}: {x} → {y}" for name, x, y in changes)


def with_same_seeds(reference: RunConfig, other: RunConfig) -> RunConfig:
    """`other` with the seeds of `reference`, so only the knobs that matter differ."""
    return other.replace(**{name: getattr(reference, name) for name in SEED_FIELDS})


class SessionPair:
    """Two TrainingSessions under one set of controls (left and right of the compare view)."""

    def __init__(
        self,
        left: RunConfig,
        right: RunConfig,
        max_steps_per_second: float | None = None,
        on_record: Callable | None = None,
    ) -> None:
        # on_record(side, record) is called in each session's own thread.
        def forward(side: int):
            return None if on_record is None else (lambda record: on_record(side, record))

        self.sessions = (
            TrainingSession(left, History(), max_steps_per_second, forward(0), share_cores=True),
            TrainingSession(right, History(), max_steps_per_second, forward(1), share_cores=True),
        )

    @property
    def left(self) -> TrainingSession:
        """The first session."""
        return self.sessions[0]

    @property
    def right(self) -> TrainingSession:
        """The second session."""
        return self.sessions[1]

    @property
    def histories(self) -> tuple[History, History]:
        """Both histories, for plots on shared axes."""
        return self.left.history, self.right.history

    def set_rate(self, max_steps_per_second: float | None) -> None:
        """Throttle both sessions alike (None or 0: unlimited)."""
        for session in self.sessions:
            session.max_steps_per_second = max_steps_per_second

    def start(self) -> None:
        """Train both continuously."""
        for session in self.sessions:
            session.start()

    def pause(self, wait: bool = False) -> None:
        """Pause both after their current step."""
        for session in self.sessions:
            session.pause(wait=wait)

    def toggle(self) -> None:
        """Pause both when either runs, start both otherwise."""
        if any(s.status().state == "running" for s in self.sessions):
            self.pause()
        else:
            self.start()

    def step(self, wait: bool = False) -> None:
        """One more step on each side."""
        for session in self.sessions:
            session.step(wait=wait)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop both threads; True when both have ended."""
        results = [session.stop(timeout) for session in self.sessions]
        return all(results)

    def reset(self, left: RunConfig | None = None, right: RunConfig | None = None) -> None:
        """Forget both runs and get ready for new configs (None keeps a side's config)."""
        self.left.reset(left)
        self.right.reset(right)

    def status(self) -> tuple[SessionStatus, SessionStatus]:
        """Both statuses."""
        return self.left.status(), self.right.status()

    def wait_until(self, predicate: Callable[[SessionStatus], bool], timeout: float = 30.0) -> bool:
        """Block until predicate holds for both sessions (tests, headless compare)."""
        deadline = time.monotonic() + timeout
        for session in self.sessions:
            if not session.wait_until(predicate, max(0.0, deadline - time.monotonic())):
                return False
        return True

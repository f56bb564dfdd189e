"""Shared by the session tests: configurations that behave, and bounded waits."""

from __future__ import annotations

import time

from engine.config import RunConfig
from engine.presets import get_preset
from engine.session import TrainingSession

WAIT = 60.0  # generous: a loaded CI machine may be slow, never this slow
# A run that cannot finish during a test and never diverges: the small regression
# model on the standardized target, many epochs.
LONG = get_preset("standardized").config.replace(epochs=10_000, device="cpu")
SMALL_BLOCK = RunConfig(
    n_layers=2, hidden_units=16, n_samples=200, batch_size=50, epochs=10_000, device="cpu"
)
EXPLODING = get_preset("exploding").config.replace(device="cpu", epochs=2)


def wait_state(session: TrainingSession, *states: str) -> None:
    assert session.wait_until(lambda s: s.state in states, WAIT), session.status()


def wait_steps(session: TrainingSession, n: int) -> None:
    assert session.wait_until(lambda s: s.step >= n, WAIT), session.status()


def assert_still(session: TrainingSession, seconds: float = 0.2) -> int:
    """The step counter and the history stay put while nothing should train."""
    before = session.status().step
    assert session.history.count == before
    time.sleep(seconds)
    assert session.status().step == before
    assert session.history.count == before
    return before

"""Settings shared by every test; nothing here imports torch or textual."""

import os

import pytest

# The models under test are tiny: with several intra-op threads on a shared
# 2-core machine, OpenMP spin-waiting made a training step ~25x slower (24 ms
# of CPU instead of 1). Set before any test module imports torch; an explicit
# OMP_NUM_THREADS in the environment still wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def make_session():
    """Sessions created by a test, all stopped when it ends (engine.session imports no torch)."""
    from sessions import WAIT

    from engine.session import TrainingSession

    sessions: list[TrainingSession] = []

    def make(config, **kwargs) -> TrainingSession:
        session = TrainingSession(config, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.stop(timeout=WAIT)

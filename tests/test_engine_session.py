"""The training session: its thread obeys pause, step, stop, reset and the NaN policy.

Nothing here depends on how fast a step is: waits are on the session's own
state with generous timeouts, and "does not move" is checked over a short
sleep after the session said it is paused.
"""

from __future__ import annotations

import threading
import time

import pytest

from engine.config import RunConfig
from engine.presets import get_preset
from engine.session import ERROR, FINISHED, IDLE, PAUSED, RUNNING, STOPPED, TrainingSession

WAIT = 60.0  # generous: a loaded CI machine may be slow, never this slow
# A run that cannot finish during a test and never diverges: the small regression
# model on the standardized target, many epochs.
LONG = get_preset("standardized").config.replace(epochs=10_000, device="cpu")
SMALL_BLOCK = RunConfig(
    n_layers=2, hidden_units=16, n_samples=200, batch_size=50, epochs=10_000, device="cpu"
)
EXPLODING = get_preset("exploding").config.replace(device="cpu", epochs=2)


@pytest.fixture
def make_session():
    """Sessions created by a test, all stopped when it ends."""
    sessions: list[TrainingSession] = []

    def make(config: RunConfig, **kwargs) -> TrainingSession:
        session = TrainingSession(config, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.stop(timeout=WAIT)


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


def test_new_session_is_idle_without_a_thread(make_session):
    session = make_session(LONG)
    status = session.status()
    assert (status.state, status.step, status.total_steps) == (IDLE, 0, None)
    assert not session.alive
    assert session.stop(timeout=1.0)  # nothing to join


def test_step_from_idle_trains_exactly_one(make_session):
    session = make_session(LONG)
    session.step(wait=True, timeout=WAIT)
    status = session.status()
    assert status.step == 1
    assert status.state == PAUSED
    assert status.layer_names == ("fc1", "fc2")
    assert status.total_steps == 32 * 10_000
    assert status.device == "cpu"
    assert assert_still(session) == 1
    assert session.history.latest.step == 0


def test_pause_stops_steps_and_step_advances_exactly_one(make_session):
    session = make_session(LONG)
    session.start()
    wait_steps(session, 5)
    assert session.status().state == RUNNING
    for _ in range(20):  # many times: a step in flight must not land after pause returns
        session.pause(wait=True, timeout=WAIT)
        assert session.status().state == PAUSED
        paused_at = assert_still(session, 0.02)
        session.step(wait=True, timeout=WAIT)
        assert session.status().step == paused_at + 1
        assert assert_still(session, 0.02) == paused_at + 1
        session.resume()
        wait_steps(session, paused_at + 4)
    session.pause(wait=True, timeout=WAIT)
    assert session.history.latest.step == session.status().step - 1


def test_pause_waits_for_the_records_consumer_too(make_session):
    # A slow on_record (the headless export writing a line) is part of the step:
    # once pause(wait=True) returns, neither the counter nor the history moves.
    session = make_session(LONG, on_record=lambda record: time.sleep(0.01))
    session.start()
    wait_steps(session, 3)
    for _ in range(3):
        session.pause(wait=True, timeout=WAIT)
        paused_at = assert_still(session, 0.05)
        session.resume()
        wait_steps(session, paused_at + 2)


def test_toggle_pauses_and_resumes(make_session):
    session = make_session(LONG)
    session.toggle()
    wait_steps(session, 2)
    session.toggle()
    session.pause(wait=True, timeout=WAIT)
    at = assert_still(session)
    session.toggle()
    wait_steps(session, at + 2)


def test_stop_joins_the_thread_within_a_second(make_session):
    session = make_session(LONG)
    session.start()
    wait_steps(session, 3)
    assert session.alive
    assert session.stop(timeout=1.0)
    assert not session.alive
    assert session.status().state == STOPPED
    session.start()  # a stopped session stays stopped until reset
    session.step()
    assert not session.alive
    assert session.status().state == STOPPED


def test_stop_while_paused_joins(make_session):
    session = make_session(LONG)
    session.step(wait=True, timeout=WAIT)
    assert session.alive
    assert session.stop(timeout=1.0)
    assert not session.alive


def test_stop_interrupts_the_rate_limit_wait(make_session):
    session = make_session(LONG, max_steps_per_second=0.2)  # five seconds between steps
    session.start()
    wait_steps(session, 1)
    assert session.stop(timeout=1.0)
    assert not session.alive
    assert session.status().step <= 2


def test_reset_rebuilds_from_the_new_config(make_session):
    session = make_session(SMALL_BLOCK)
    session.start()
    wait_steps(session, 3)
    assert session.history.layer_names == ["h1", "h2", "o"]
    old_thread = session._thread
    session.reset(LONG)
    assert not old_thread.is_alive()
    status = session.status()
    assert (status.state, status.step, status.layer_names) == (IDLE, 0, ())
    assert status.first_nonfinite is None and status.error is None
    assert session.config == LONG
    assert session.history.count == 0 and session.history.latest is None
    assert session.history.layer_names == []
    session.step(wait=True, timeout=WAIT)
    assert session.status().layer_names == ("fc1", "fc2")
    assert session.history.layer_names == ["fc1", "fc2"]
    assert session.history.count == 1
    session.reset()  # no config: the same one again, from scratch
    assert session.config == LONG
    session.step(wait=True, timeout=WAIT)
    assert session.history.count == 1


def test_finished_run_stops_training(make_session):
    config = LONG.replace(epochs=1)
    session = make_session(config)
    session.start()
    wait_state(session, FINISHED)
    status = session.status()
    assert status.step == status.total_steps == 32
    assert session.history.count == 32
    session.start()
    session.step()
    assert assert_still(session) == 32
    assert session.status().state == FINISHED


def test_on_record_sees_every_record_in_order(make_session):
    seen = []
    session = make_session(LONG.replace(epochs=1), on_record=seen.append)
    session.start()
    wait_state(session, FINISHED)
    assert [r.step for r in seen] == list(range(32))
    assert session.history.latest is seen[-1]


# -- the first non-finite value and the on_nonfinite policy ------------------------
@pytest.fixture(scope="module")
def exploding_truth():
    """Where the exploding run first goes non-finite, from the Trainer directly."""
    from engine.trainer import Trainer

    trainer = Trainer(EXPLODING)
    try:
        while trainer.first_nonfinite is None and not trainer.finished:
            trainer.step()
    finally:
        trainer.close()
    assert trainer.first_nonfinite is not None
    return trainer.first_nonfinite


def test_nonfinite_pause(make_session, exploding_truth):
    session = make_session(EXPLODING.replace(on_nonfinite="pause"))
    session.start()
    assert session.wait_until(lambda s: s.first_nonfinite is not None and s.state == PAUSED, WAIT)
    status = session.status()
    assert status.first_nonfinite == exploding_truth
    assert status.step == exploding_truth.step + 1
    assert session.alive
    assert_still(session)
    session.resume()  # the user may go on past the NaN
    wait_steps(session, exploding_truth.step + 4)
    assert session.status().first_nonfinite == exploding_truth  # still the first one


def test_nonfinite_stop(make_session, exploding_truth):
    session = make_session(EXPLODING.replace(on_nonfinite="stop"))
    session.start()
    wait_state(session, STOPPED)
    status = session.status()
    assert status.first_nonfinite == exploding_truth
    assert status.step == exploding_truth.step + 1
    assert session.stop(timeout=WAIT)
    assert not session.alive


def test_nonfinite_continue(make_session, exploding_truth):
    session = make_session(EXPLODING.replace(on_nonfinite="continue"))
    session.start()
    wait_state(session, FINISHED)
    status = session.status()
    assert status.first_nonfinite == exploding_truth
    assert status.step == status.total_steps == 64
    assert session.history.count == 64


# -- failures inside the thread --------------------------------------------------------
def test_exception_in_training_gives_error_and_reset_recovers(make_session, monkeypatch):
    from engine.trainer import Trainer

    def broken_step(self, exact=False):
        raise RuntimeError("boom in step")

    monkeypatch.setattr(Trainer, "step", broken_step)
    session = make_session(LONG)
    session.start()
    wait_state(session, ERROR)
    status = session.status()
    assert status.error == "RuntimeError: boom in step"
    assert "Traceback" in session.error_detail and "boom in step" in session.error_detail
    assert session.stop(timeout=WAIT)
    assert not session.alive
    session.step(wait=True, timeout=1.0)  # returns at once: nothing to do in error
    assert session.status().state == ERROR

    monkeypatch.undo()
    session.reset(LONG)
    status = session.status()
    assert (status.state, status.error) == (IDLE, None)
    assert session.error_detail is None
    session.step(wait=True, timeout=WAIT)
    assert session.status().step == 1
    assert session.status().state == PAUSED


def test_exception_while_building_gives_error(make_session, monkeypatch):
    from engine import trainer as trainer_module

    def broken_init(self, config, **options):
        raise ValueError("cannot build\nsecond line")

    monkeypatch.setattr(trainer_module.Trainer, "__init__", broken_init)
    session = make_session(LONG)
    session.step(wait=True, timeout=WAIT)
    wait_state(session, ERROR)
    assert session.status().error == "ValueError: cannot build"  # one line
    monkeypatch.undo()
    session.reset()
    session.step(wait=True, timeout=WAIT)
    assert session.status().step == 1


def test_session_thread_is_a_daemon(make_session):
    session = make_session(LONG)
    session.step(wait=True, timeout=WAIT)
    thread = session._thread
    assert isinstance(thread, threading.Thread) and thread.daemon


def test_a_hold_parks_the_run_between_steps_until_released(make_session):
    session = make_session(LONG)
    session.start()
    wait_steps(session, 3)
    assert session.hold_between_steps(timeout=WAIT)
    try:
        # Parked after a whole step: the counter and the history agree and stay put
        # (within the hold's own limit, which is longer than this check).
        held = session.status().step
        assert session.history.count == held
        time.sleep(0.05)
        assert session.status().step == held
    finally:
        session.release_hold()
    wait_steps(session, held + 3)
    assert session.status().state == RUNNING


def test_a_hold_never_released_ends_by_itself(monkeypatch):
    import engine.gate
    from engine.gate import StepGate

    gate = StepGate()
    monkeypatch.setattr(engine.gate, "HOLD_LIMIT", 0.05)
    trainer = threading.Thread(target=gate.checkpoint)
    asked = []
    asker = threading.Thread(target=lambda: asked.append(gate.hold(timeout=WAIT)))
    asker.start()
    while not gate._wanted:  # the request is up
        time.sleep(0.001)
    trainer.start()
    trainer.join(WAIT)
    asker.join(WAIT)
    assert asked == [True] and not trainer.is_alive()  # parked, then went on unreleased
    # The request was served: the next checkpoint does not wait (with a limit long
    # enough that waiting would show).
    monkeypatch.setattr(engine.gate, "HOLD_LIMIT", WAIT)
    started = time.monotonic()
    gate.checkpoint()
    assert time.monotonic() - started < WAIT / 2


def test_a_hold_on_a_paused_run_gives_up_at_its_timeout(make_session):
    session = make_session(LONG)
    session.step(wait=True, timeout=WAIT)
    assert session.hold_between_steps(timeout=0.05) is False
    session.step(wait=True, timeout=WAIT)  # nothing was left waiting
    assert session.status().step == 2


def test_stop_ends_a_held_run_at_once(make_session):
    session = make_session(LONG)
    session.start()
    wait_steps(session, 3)
    assert session.hold_between_steps(timeout=WAIT)
    started = time.monotonic()
    assert session.stop(timeout=WAIT)
    assert session.status().state == STOPPED
    assert time.monotonic() - started < WAIT

"""The training session at its edges: NaN policies, failures, the daemon thread, holds.

Waits are on the session's own state with generous timeouts, never on speed.
"""

from __future__ import annotations

import threading
import time

import pytest
from sessions import EXPLODING, LONG, WAIT, assert_still, wait_state, wait_steps

from engine.session import ERROR, FINISHED, IDLE, PAUSED, RUNNING, STOPPED


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

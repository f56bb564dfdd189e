"""The training session: its thread obeys pause, step, stop, reset and the NaN policy.

Nothing here depends on how fast a step is: waits are on the session's own
state with generous timeouts, and "does not move" is checked over a short
sleep after the session said it is paused.
"""

from __future__ import annotations

import time

from sessions import LONG, SMALL_BLOCK, WAIT, assert_still, wait_state, wait_steps

from engine.session import FINISHED, IDLE, PAUSED, RUNNING, STOPPED


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


def test_a_pause_is_left_out_of_the_capture_policys_clock(make_session, monkeypatch):
    # The time a paused run waits is no step's: the policy is told how long it
    # was, so the step before the pause is not read as a pause-long step.
    from engine.policy import CapturePolicy

    skipped = []
    real = CapturePolicy.skip
    monkeypatch.setattr(
        CapturePolicy, "skip", lambda self, seconds: (skipped.append(seconds), real(self, seconds))
    )
    session = make_session(LONG)
    session.start()
    wait_steps(session, 3)
    assert skipped == []  # a running session never waits at the top of its loop
    session.pause(wait=True, timeout=WAIT)
    time.sleep(0.3)
    session.resume()
    wait_steps(session, session.status().step + 2)
    assert len(skipped) == 1 and skipped[0] >= 0.3

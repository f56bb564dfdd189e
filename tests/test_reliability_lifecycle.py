"""Rapid random control sequences, quitting, resets mid-step, and Ctrl+C on `gradtui run`.

No test depends on speed: waits are bounded conditions, and every test has a
timeout so a deadlock fails it instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from polling import wait_for as poll

from engine.config import RunConfig
from engine.session import (
    ERROR,
    FINISHED,
    IDLE,
    PAUSED,
    PREPARING,
    RUNNING,
    STOPPED,
    TrainingSession,
)

WAIT = 60.0
GRADTUI = str(Path(sys.executable).with_name("gradtui"))
# Tiny and fast: 8 steps an epoch, so some sequences also reach the end of a run.
FAST = RunConfig(
    n_samples=64, n_features=4, n_layers=2, hidden_units=8, batch_size=8, epochs=3, device="cpu"
)
OTHER = FAST.replace(model="shallow", dataset="regression", epochs=2)
STATES = {IDLE, PREPARING, RUNNING, PAUSED, FINISHED, STOPPED, ERROR}


def session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gradtui-session" and t.is_alive()]


def wait_for(predicate, timeout: float = WAIT) -> bool:
    return poll(predicate, timeout)


def _random_sequence(rng: random.Random) -> None:
    session = TrainingSession(FAST, max_steps_per_second=rng.choice([None, None, 200.0]))
    actions = [
        lambda: session.start(),
        lambda: session.pause(),
        lambda: session.pause(wait=True, timeout=WAIT),
        lambda: session.toggle(),
        lambda: session.step(),
        lambda: session.step(wait=True, timeout=WAIT),
        lambda: session.reset(rng.choice([None, FAST, OTHER])),
        lambda: session.stop(timeout=WAIT),
        lambda: session.status(),
        lambda: time.sleep(rng.choice([0, 0, 0.001, 0.01])),
    ]
    try:
        for _ in range(rng.randint(1, 12)):
            rng.choice(actions)()
            status = session.status()
            assert status.state in STATES
            assert status.state != ERROR, f"{status.error}\n{session.error_detail}"
    finally:
        assert session.stop(timeout=WAIT), "stop() did not join the thread"
    status = session.status()
    assert not session.alive
    assert status.state in (IDLE, STOPPED, FINISHED), status
    # Joined: the history holds exactly the steps counted, contiguous from 0.
    assert session.history.count == status.step
    if status.step:
        assert session.history.latest.step == status.step - 1
        assert status.step <= status.total_steps


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunk", range(4))
def test_200_random_sequences_leave_no_thread_and_never_deadlock(chunk):
    before = set(threading.enumerate())
    rng = random.Random(1000 + chunk)
    for _ in range(50):
        _random_sequence(rng)
    # Threads abandoned by a reset end at their next check; none may linger.
    assert wait_for(lambda: not session_threads()), session_threads()
    assert wait_for(lambda: set(threading.enumerate()) <= before), (
        set(threading.enumerate()) - before
    )


@pytest.mark.timeout(60)
def test_quitting_mid_run_joins_within_a_second():
    session = TrainingSession(FAST.replace(epochs=100_000))
    session.start()
    assert session.wait_until(lambda s: s.step >= 5, WAIT)
    assert session.stop(timeout=1.0)
    assert not session.alive and session.status().state == STOPPED
    assert not session_threads()


@pytest.mark.timeout(60)
def test_stop_before_start_leaves_it_stopped():
    session = TrainingSession(FAST)
    assert session.stop(timeout=1.0)
    session.start()
    session.step()
    assert not session.alive and session.status().state == STOPPED
    session.reset()
    session.step(wait=True, timeout=WAIT)
    assert session.status().step == 1
    assert session.stop(timeout=WAIT)


@pytest.mark.timeout(60)
def test_single_steps_to_the_end_finish_the_run():
    session = TrainingSession(FAST.replace(epochs=1))
    for _ in range(8):
        session.step(wait=True, timeout=WAIT)
    assert session.status().state == FINISHED
    assert session.stop(timeout=WAIT)


@pytest.mark.timeout(60)
def test_reset_during_a_step_that_outlives_the_join(monkeypatch):
    """A step longer than reset's timeout: the abandoned thread never touches the new run."""
    from engine.trainer import Trainer

    release, entered = threading.Event(), threading.Event()
    original = Trainer.step

    def slow_step(self, exact=False):
        if self.step_index == 2 and not release.is_set():
            entered.set()
            release.wait(WAIT)
        return original(self, exact)

    monkeypatch.setattr(Trainer, "step", slow_step)
    session = TrainingSession(FAST)
    session.start()
    assert entered.wait(WAIT)
    old_thread = session._thread
    session.reset(OTHER, timeout=0.05)
    assert old_thread.is_alive()  # still in its long step
    status = session.status()
    assert (status.state, status.step, session.history.count) == (IDLE, 0, 0)
    release.set()
    old_thread.join(WAIT)
    assert not old_thread.is_alive()
    # The abandoned step landed nowhere: the new run is untouched, then trains alone.
    status = session.status()
    assert (status.state, status.step, session.history.count) == (IDLE, 0, 0)
    session.step(wait=True, timeout=WAIT)
    assert session.status().step == 1 and session.history.layer_names == ["fc1", "fc2"]
    assert session.stop(timeout=WAIT)
    assert not session_threads()


# -- Ctrl+C during `gradtui run` -------------------------------------------------------
def _start_run(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [GRADTUI, "run", "--preset", "relu-kaiming", "--epochs", "100000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A shell may start background jobs with SIGINT ignored; a user's Ctrl+C is not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def wait_for_records(process: subprocess.Popen, directory: Path) -> None:
    """Until the export's temporary file holds data: steps have been done and written."""

    def written() -> bool:
        assert process.poll() is None, process.communicate()
        return any(p.stat().st_size > 0 for p in temp_files(directory))

    assert wait_for(written, 120), "no record was written"


def assert_complete_export(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()

    def refuse(name):
        raise AssertionError(name)

    steps = [json.loads(line, parse_constant=refuse)["step"] for line in lines]
    assert steps == list(range(len(steps)))
    return len(steps)


def _signalled_run(tmp_path: Path, signum: int, times: int) -> tuple[int, str, str, Path]:
    """A run sent `signum` `times` times once it has written records: (code, out, err, file)."""
    out = tmp_path / "run.jsonl"
    process = _start_run(out)
    try:
        wait_for_records(process, tmp_path)
        for _ in range(times):  # a second, impatient one must not lose the export
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr, out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_writes_the_steps_done_and_exits_130(presses, tmp_path):
    code, stdout, stderr, out = _signalled_run(tmp_path, signal.SIGINT, presses)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    count = assert_complete_export(out)
    assert count >= 1
    assert f"wrote {out} ({count} records)" in stdout
    assert f"steps: {count} " in stdout
    assert not temp_files(tmp_path)


@pytest.mark.timeout(180)
def test_sigterm_writes_the_steps_done_and_exits_143(tmp_path):
    code, stdout, stderr, out = _signalled_run(tmp_path, signal.SIGTERM, 2)
    assert code == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    count = assert_complete_export(out)
    assert count >= 1 and f"wrote {out} ({count} records)" in stdout
    assert "interrupted: the run ended early" in stdout
    assert not temp_files(tmp_path)


@pytest.mark.timeout(120)
def test_ctrl_c_while_torch_loads_keeps_the_old_file(tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text('{"step": 0}\n')
    process = _start_run(out)
    try:
        # The export's temporary file exists from before the trainer is built.
        assert wait_for(lambda: process.poll() is None and temp_files(tmp_path), 120)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    # Either nothing was done (the old file stays) or the steps done were written.
    assert_complete_export(out)
    assert not temp_files(tmp_path)

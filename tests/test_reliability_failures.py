"""Failures inside training: the session shows them and recovers; `gradtui run` exits 1.

A CUDA out-of-memory error is simulated by raising its message from
Trainer.step; a shape error is real (a model built for the wrong input width).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from polling import wait_for as poll
from torch import nn

from engine.config import RunConfig
from engine.session import ERROR, IDLE, PAUSED, TrainingSession

WAIT = 60.0
FAST = RunConfig(
    n_samples=64, n_features=4, n_layers=2, hidden_units=8, batch_size=8, epochs=3, device="cpu"
)
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"


def wait_for(predicate, timeout: float = WAIT) -> bool:
    return poll(predicate, timeout)


def session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gradtui-session" and t.is_alive()]


def fail_on_step(monkeypatch, at: int, error: Exception) -> None:
    from engine.trainer import Trainer

    original = Trainer.step

    def step(self, exact=False):
        if self.step_index == at:
            raise error
        return original(self, exact)

    monkeypatch.setattr(Trainer, "step", step)


def assert_recovers(session: TrainingSession, monkeypatch) -> None:
    """After an error: the thread has ended, and reset brings a working session back."""
    assert session.stop(timeout=WAIT)
    assert not session.alive and not session_threads()
    monkeypatch.undo()
    session.reset()
    status = session.status()
    assert (status.state, status.step, status.error) == (IDLE, 0, None)
    session.step(wait=True, timeout=WAIT)
    assert session.status().state == PAUSED and session.history.count == 1
    assert session.stop(timeout=WAIT)


@pytest.mark.timeout(60)
def test_out_of_memory_in_a_step_is_an_error_state_with_its_message(monkeypatch):
    fail_on_step(monkeypatch, 3, RuntimeError(OOM + "\nIf reserved memory is >> allocated..."))
    session = TrainingSession(FAST)
    session.start()
    assert session.wait_until(lambda s: s.state == ERROR, WAIT)
    status = session.status()
    assert status.error == f"RuntimeError: {OOM}"  # one line, the message kept
    assert status.step == session.history.count == 3  # the steps done are kept
    assert "Traceback" in session.error_detail
    assert wait_for(lambda: not session.alive), "the thread did not end after the error"
    session.start()
    session.step()
    assert session.status().state == ERROR  # nothing restarts a failed run but reset
    assert_recovers(session, monkeypatch)


@pytest.mark.timeout(60)
def test_a_shape_error_in_the_model_is_an_error_state(monkeypatch):
    from engine import trainer as trainer_module

    original = trainer_module.build_model

    def wrong_width(config):
        _, generator = original(config)
        return nn.Sequential(nn.Linear(config.n_features + 3, 1)), generator

    monkeypatch.setattr(trainer_module, "build_model", wrong_width)
    session = TrainingSession(FAST)
    session.step(wait=True, timeout=WAIT)
    assert session.wait_until(lambda s: s.state == ERROR, WAIT)
    error = session.status().error
    assert error.startswith("RuntimeError: ") and "shape" in error and "\n" not in error
    assert_recovers(session, monkeypatch)


@pytest.mark.timeout(60)
def test_a_failing_record_consumer_is_an_error_state(monkeypatch):
    def consumer(record):
        if record.step == 1:
            raise OSError(28, "No space left on device")

    session = TrainingSession(FAST, on_record=consumer)
    session.start()
    assert session.wait_until(lambda s: s.state == ERROR, WAIT)
    assert "No space left on device" in session.status().error
    assert_recovers(session, monkeypatch)


@pytest.mark.timeout(60)
def test_cuda_without_a_gpu_in_a_session_is_an_error_state(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    session = TrainingSession(FAST.replace(device="cuda"))
    session.start()
    assert session.wait_until(lambda s: s.state == ERROR, WAIT)
    assert "device" in session.status().error and "cuda" in session.status().error
    session.reset(FAST.replace(device="auto"))
    session.step(wait=True, timeout=WAIT)
    assert session.status().device == "cpu"
    assert session.stop(timeout=WAIT)


# -- `gradtui run`: one line, exit 1, the old file kept ----------------------------------
RUN_FAILING = textwrap.dedent(
    """
    import sys
    from engine.trainer import Trainer

    original = Trainer.step

    def step(self, exact=False):
        if self.step_index == int(sys.argv[1]):
            raise RuntimeError({message!r})
        return original(self, exact)

    Trainer.step = step
    from tui.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("at", [0, 5])
def test_gradtui_run_failure_is_one_line_and_exit_1(at, tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text("old\n")
    script = RUN_FAILING.format(message=OOM + "\nsecond line of the error")
    result = subprocess.run(
        [sys.executable, "-c", script, str(at), "run", "--preset", "exploding", "--out", str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("gradtui: error: ") and OOM in lines[0]
    if at:
        assert f"step {at}" in lines[0]
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.jsonl"]

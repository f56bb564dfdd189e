"""Ctrl+C in `gradtui run`: at once inside a step, never between a step's record and its export.

The reference answer is the run itself: the summary's step count, the
exported count and the file's lines agree wherever the signal lands.
"""

from __future__ import annotations

import io
import json
import os
import signal

import pytest

from engine import export, headless
from engine.interrupts import Interrupted, interrupt_gate
from engine.presets import get_preset


def test_the_gate_raises_at_once_unless_a_step_is_being_recorded():
    before = signal.getsignal(signal.SIGINT)
    with interrupt_gate() as gate:
        assert signal.getsignal(signal.SIGINT) == gate.on_signal
        with pytest.raises(Interrupted) as raised:
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a call: the handler has run by now
        assert raised.value.signum == signal.SIGINT
        # The first signal held the rest back: a second press cannot cut the cleanup.
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_while_recording_waits_for_check():
    with interrupt_gate() as gate:
        gate.recording = True
        gate.on_signal(signal.SIGTERM, None)  # what the handler does, called as Python would
        assert gate.pending == signal.SIGTERM
        with pytest.raises(Interrupted) as raised:
            gate.check()
        assert raised.value.signum == signal.SIGTERM and not gate.recording


def test_a_check_with_nothing_pending_ends_recording_quietly():
    with interrupt_gate() as gate:
        gate.recording = True
        gate.check()
        assert not gate.recording and gate.pending == 0


@pytest.mark.parametrize("at", [1, 5, 64, 70])
def test_a_ctrl_c_landing_in_the_export_leaves_steps_and_records_equal(tmp_path, monkeypatch, at):
    real_write = export.RecordWriter.write
    calls = {"n": 0}

    def write(self, record):
        calls["n"] += 1
        if calls["n"] == at:  # Python runs the handler at its next check: inside this write
            os.kill(os.getpid(), signal.SIGINT)
        real_write(self, record)

    monkeypatch.setattr(export.RecordWriter, "write", write)
    out = tmp_path / "run.jsonl"
    config = get_preset("standardized").config.replace(epochs=20, device="cpu")
    summary = headless.run_headless(config, out=str(out), stderr=io.StringIO())
    assert summary.interrupted and summary.signal == signal.SIGINT
    steps = [json.loads(line)["step"] for line in out.read_text().splitlines()]
    assert summary.steps == summary.exported == len(steps) == at
    assert steps == list(range(at))


@pytest.mark.parametrize("epochs", [1, 3])  # 32 steps: the commit's batch; 96: one mid-run
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(
    tmp_path, monkeypatch, epochs
):
    out = tmp_path / "run.jsonl"
    out.write_text("old\n")

    def full_disk(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.RecordWriter, "_write_kept", full_disk)
    config = get_preset("standardized").config.replace(epochs=epochs, device="cpu")
    with pytest.raises(headless.RunFailed) as failed:
        headless.run_headless(config, out=str(out), stderr=io.StringIO())
    assert str(failed.value) == f"could not write {out}: [Errno 28] No space left on device"
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.jsonl"]

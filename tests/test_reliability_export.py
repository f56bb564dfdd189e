"""The export is written to a temporary dot-file and renamed: never half a file under the name.

A process killed with SIGKILL mid-run cannot clean up; what matters is that
the requested name then holds either nothing or the complete old file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from polling import wait_for as poll

from engine.export import RecordWriter, write_records
from engine.records import LayerStats, StepRecord

GRADTUI = str(Path(sys.executable).with_name("gradtui"))
WAIT = 120.0
OLD = '{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.5}\n'


def record(step: int, loss: float, grad: float = 1.0) -> StepRecord:
    return StepRecord(
        step=step,
        epoch=0,
        loss=loss,
        grad_norm=grad,
        grad_norm_clipped=min(grad, 1.0),
        clipped_frac=0.0,
        layers={"h1": LayerStats(grad_mean=grad, grad_norm=grad, raw_grad_norm=grad)},
        captured=True,
    )


def wait_for(predicate, timeout: float = WAIT) -> bool:
    return poll(predicate, timeout)


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@pytest.mark.parametrize("had_file", [True, False])
def test_sigkill_mid_run_never_leaves_half_a_file(suffix, had_file, tmp_path):
    out = tmp_path / f"run{suffix}"
    if had_file:
        out.write_text(OLD)
    process = subprocess.Popen(
        [GRADTUI, "run", "--preset", "relu-kaiming", "--epochs", "100000", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        # Killed while records are streaming into the temporary file.
        assert wait_for(
            lambda: process.poll() is None and any(p.stat().st_size for p in temp_files(tmp_path))
        ), "no record was written"
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    if had_file:
        assert out.read_text() == OLD
    else:
        assert not out.exists()
    # What a kill leaves behind is hidden and says what it is.
    for leftover in temp_files(tmp_path):
        assert leftover.name.startswith(f".{out.name}.")


def test_the_temporary_file_is_a_hidden_sibling(tmp_path):
    out = tmp_path / "run.jsonl"
    writer = RecordWriter(str(out))
    writer.write(record(0, 1.0))
    [temp] = temp_files(tmp_path)
    assert temp.name.startswith(".run.jsonl.") and temp.parent == tmp_path
    assert not out.exists()
    writer.commit()
    assert out.exists() and not temp_files(tmp_path)


def test_commit_gives_the_mode_a_plain_open_would(tmp_path):
    umask = os.umask(0o022)
    try:
        write_records(str(tmp_path / "run.csv"), [record(0, 1.0)])
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "run.csv").stat().st_mode) == 0o644


def test_a_failure_while_writing_keeps_the_old_file(tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text(OLD)
    with pytest.raises(RuntimeError):
        with RecordWriter(str(out)) as writer:
            writer.write(record(0, 1.0))
            raise RuntimeError("the training failed")
    assert out.read_text() == OLD
    assert not temp_files(tmp_path)


def test_an_interrupt_while_writing_commits_the_records_written(tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text(OLD)
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(str(out)) as writer:
            for step in range(3):
                writer.write(record(step, 1.0))
            raise KeyboardInterrupt
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [0, 1, 2]


def test_nonfinite_numbers_are_written_as_the_contract_says(tmp_path):
    records = [record(0, math.nan, math.inf), record(1, -math.inf, math.nan), record(2, 0.5)]
    write_records(str(tmp_path / "run.jsonl"), records)
    write_records(str(tmp_path / "run.csv"), records)

    def refuse(name):
        raise AssertionError(f"bare {name} in strict JSON")

    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [r["loss"] for r in rows] == ["NaN", "-Infinity", 0.5]
    assert [r["grad_norm"] for r in rows] == ["Infinity", "NaN", 1.0]
    assert rows[0]["layers"]["h1"]["grad_mean"] == "Infinity"
    with open(tmp_path / "run.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["loss"] for r in table] == ["nan", "-inf", "0.5"]
    assert [r["grad_norm"] for r in table] == ["inf", "nan", "1.0"]
    assert table[0]["h1.grad_std"] == ""  # not captured: empty, never a made-up number


@pytest.mark.parametrize(
    "loss, grad, clipped",
    [
        (0.25, 1.5, 0.0),
        (math.nan, math.inf, None),
        (-math.inf, 0.0, 1.0),
        (1e300, 5e-324, 0.5),
        (7, 3, 0),  # ints, as a hand-built record may carry
        (-0.0, 2.5e-08, 1 / 3),
        (0.1 + 0.2, 123456789.125, math.inf),
    ],
)
def test_the_fast_json_line_of_an_unmeasured_step_equals_json_dumps(loss, grad, clipped):
    from engine.export import json_line, record_to_json
    from engine.recording import blank_layers

    layers = blank_layers(["h1", "h2", "o"])
    for step in (0, 1, 2):  # the first call caches the fragment, the next ones use it
        rec = StepRecord(
            step=step,
            epoch=1,
            loss=loss,
            grad_norm=grad,
            grad_norm_clipped=grad,
            clipped_frac=clipped,
            layers=layers,
        )
        expected = json.dumps(record_to_json(rec), allow_nan=False, separators=(",", ":"))
        assert json_line(rec) == expected


def test_json_line_of_measured_and_numpy_valued_records_equals_json_dumps():
    import numpy as np

    from engine.export import json_line, record_to_json
    from engine.recording import blank_layers

    measured = record(3, math.nan, grad=math.inf)
    odd = StepRecord(
        step=4,
        epoch=0,
        loss=np.float64(0.5),  # not a plain float: the general path decides
        grad_norm=1.0,
        grad_norm_clipped=1.0,
        clipped_frac=None,
        layers=blank_layers(["h1"]),
    )
    for rec in (measured, odd, odd):
        expected = json.dumps(record_to_json(rec), allow_nan=False, separators=(",", ":"))
        assert json_line(rec) == expected

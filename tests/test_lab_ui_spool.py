"""The record spool behind `e`: every record on disk, exported exactly as `gradtui run --out`."""

from __future__ import annotations

import math

import pytest

from engine.export import write_records
from engine.records import LayerStats, StepRecord
from tui.record_spool import BATCH, RecordHooks, RecordSpool, record_from_json


def _records(count: int = 5) -> list[StepRecord]:
    records = []
    for step in range(count):
        bad = step == 3
        stats = {
            "fc1": LayerStats(
                grad_norm=math.inf if bad else 0.5 * step,
                raw_grad_norm=math.nan if bad else 0.25,
                grad_mean=-1e-30,
                update_ratio=None if step % 2 else 1e-3,
            ),
            "fc2": LayerStats(grad_norm=1.0, act_saturation=0.125),
        }
        records.append(
            StepRecord(
                step=step,
                epoch=step // 2,
                loss=math.nan if bad else 1.0 / (step + 1),
                grad_norm=-math.inf if bad else 2.0,
                grad_norm_clipped=1.0,
                clipped_frac=None if step == 0 else 0.375,
                layers=stats,
                timestep_grad_norms=(1e6, math.nan, 0.0) if step else None,
            )
        )
    return records


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_export_is_byte_for_byte_what_the_headless_writer_writes(tmp_path, suffix):
    records = _records()
    spool = RecordSpool(str(tmp_path))
    for record in records:
        spool(record)
    assert spool.count == len(records)
    ours, reference = tmp_path / f"spool{suffix}", tmp_path / f"reference{suffix}"
    assert spool.export(str(ours)) == len(records)
    write_records(str(reference), records)
    assert ours.read_bytes() == reference.read_bytes()
    spool.close()


def test_records_come_back_with_their_nan_inf_and_none():
    spool = RecordSpool()
    original = _records()[3]
    spool(original)
    (back,) = list(spool.records())
    assert math.isnan(back.loss) and back.grad_norm == -math.inf
    assert back.layers["fc1"].grad_norm == math.inf and math.isnan(back.layers["fc1"].raw_grad_norm)
    assert back.layers["fc1"].update_ratio is None and back.layers["fc2"].act_saturation == 0.125
    assert back.timestep_grad_norms[0] == 1e6 and math.isnan(back.timestep_grad_norms[1])
    assert record_from_json({"step": 1, "epoch": 0, "loss": 1, "grad_norm": 1,
                             "grad_norm_clipped": 1}).layers == {}  # fmt: skip
    spool.close()


def test_a_snapshot_reads_what_was_written_when_it_started_and_writing_goes_on():
    spool = RecordSpool()
    records = _records(4)
    for record in records[:2]:
        spool(record)
    lines = spool.lines(chunk=1)
    first = next(lines)
    spool(records[2])  # the training thread goes on while an export reads
    rest = list(lines)
    assert len([first, *rest]) == 2  # the snapshot: the two records there at its start
    assert [r.step for r in spool.records()] == [0, 1, 2]
    spool.close()


def test_a_closed_spool_never_raises_in_the_training_thread():
    spool = RecordSpool()
    spool.close()
    spool(_records(1)[0])  # a reset closed it while the old thread still ran
    assert spool.error is not None and "step 0" in spool.error
    spool(_records(1)[0])  # and stays quiet afterwards


def test_hooks_call_each_hook_in_order():
    seen = []
    hooks = RecordHooks(lambda r: seen.append(("a", r.step)), lambda r: seen.append(("b", r.step)))
    hooks(_records(1)[0])
    assert seen == [("a", 0), ("b", 0)]


def test_records_kept_back_are_read_in_order_whatever_the_batch():
    records = _records(2 * BATCH + 5)  # two whole batches and some kept back
    spool = RecordSpool()
    for record in records[: BATCH + 3]:
        spool(record)
    assert [r.step for r in spool.records()] == list(range(BATCH + 3))  # a read writes them
    for record in records[BATCH + 3 :]:
        spool(record)
    assert spool.count == len(records)
    assert [r.step for r in spool.records()] == list(range(len(records)))
    spool.close()


def test_a_failed_write_is_an_error_not_an_exception(monkeypatch):
    spool = RecordSpool()

    def full(data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool._file, "write", full)
    for record in _records(BATCH + 1):
        spool(record)  # the training thread: never raises
    assert "stopped at step 0" in spool.error and "No space left" in spool.error
    assert spool.count == 0  # the batch that failed is not counted, nor what came after
    spool.close()


@pytest.mark.parametrize("preset", ["standardized", "exploding", "clip-norm"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_trained_runs_records_export_as_the_headless_writer_writes_them(tmp_path, preset, suffix):
    # Most steps of a real run are plain (packed as numbers, formatted when read);
    # steps with statistics, activations, clipping or a NaN are written as JSON.
    from engine.presets import get_preset
    from engine.trainer import Trainer

    config = get_preset(preset).config.replace(device="cpu")
    trainer = Trainer(config)
    try:
        records = [trainer.step() for _ in range(min(3 * BATCH + 7, trainer.total_steps))]
    finally:
        trainer.close()
    spool = RecordSpool(str(tmp_path))
    for record in records[: BATCH + 9]:
        spool(record)
    assert len(list(spool.lines())) == BATCH + 9  # a read in the middle of the run
    for record in records[BATCH + 9 :]:
        spool(record)
    ours, reference = tmp_path / f"spool{suffix}", tmp_path / f"reference{suffix}"
    assert spool.export(str(ours)) == len(records)
    write_records(str(reference), records)
    assert ours.read_bytes() == reference.read_bytes()
    spool.close()

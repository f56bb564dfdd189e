"""RecordWriter formats its records a batch at a time: the file is what one by one would write.

The reference answer is each record's own line (`json_line`) or CSV row,
in the order given, whatever the batch boundaries, the kinds of record
mixed in a batch, or where a Ctrl+C lands.
"""

from __future__ import annotations

import csv
import json
import math

import pytest

import engine.export as export
from engine.export import BATCH, RecordWriter, json_line, write_records
from engine.recording import blank_layers
from engine.records import LayerStats, StepRecord

LAYERS = ["h1", "o"]
BLANK = blank_layers(LAYERS)


def mixed_records(count: int) -> list[StepRecord]:
    """Plain steps, measured ones every 7th, and non-finite numbers now and then."""
    records = []
    for step in range(count):
        loss = math.nan if step % 50 == 49 else 1.0 / (step + 1)
        if step % 7 == 0:
            layers = {
                name: LayerStats(grad_mean=0.1 * step, grad_norm=math.inf if step == 21 else 2.0)
                for name in LAYERS
            }
        else:
            layers = BLANK
        records.append(StepRecord(step, step // 10, loss, 0.5, 0.5, None, layers))
    return records


@pytest.mark.parametrize("count", [0, 1, BATCH - 1, BATCH, BATCH + 1, 3 * BATCH + 5])
def test_a_jsonl_file_holds_every_record_once_in_order(tmp_path, count):
    records = mixed_records(count)
    out = tmp_path / "run.jsonl"
    with RecordWriter(str(out)) as writer:
        for written, rec in enumerate(records, 1):
            writer.write(rec)
            assert writer.count == written  # kept back or written, a record counts when given
    assert out.read_text() == "".join(json_line(rec) + "\n" for rec in records)


def test_records_are_kept_back_until_a_batch_fills_or_the_commit(tmp_path):
    out = tmp_path / "run.jsonl"
    writer = RecordWriter(str(out))
    records = mixed_records(BATCH + 3)
    for rec in records[: BATCH - 1]:
        writer.write(rec)
    assert len(writer._kept) == BATCH - 1
    writer.write(records[BATCH - 1])
    assert writer._kept == []  # the batch went to the file
    for rec in records[BATCH:]:
        writer.write(rec)
    writer.commit()
    steps = [json.loads(line)["step"] for line in out.read_text().splitlines()]
    assert steps == list(range(BATCH + 3))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_written_in_batches_is_the_one_written_record_by_record(
    tmp_path, monkeypatch, suffix
):
    records = mixed_records(2 * BATCH + 9)
    write_records(str(tmp_path / f"batched{suffix}"), records)
    monkeypatch.setattr(export, "BATCH", 1)  # each record formatted as it is given
    write_records(str(tmp_path / f"one_by_one{suffix}"), records)
    batched = (tmp_path / f"batched{suffix}").read_text()
    assert batched == (tmp_path / f"one_by_one{suffix}").read_text()
    if suffix == ".jsonl":
        return
    rows = list(csv.reader((tmp_path / "batched.csv").open()))
    assert rows[0][:2] == ["step", "epoch"] and len(rows) == len(records) + 1
    assert [int(row[0]) for row in rows[1:]] == list(range(len(records)))
    assert "inf" in rows[22] and "nan" in rows[50]  # non-finite numbers as data


def test_a_discard_drops_what_was_kept_back(tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text("old\n")
    writer = RecordWriter(str(out))
    for rec in mixed_records(BATCH + 2):
        writer.write(rec)
    writer.discard()
    writer.commit()  # after a discard, nothing more happens
    assert out.read_text() == "old\n"


def test_a_ctrl_c_while_a_batch_is_formatted_loses_and_repeats_nothing(tmp_path, monkeypatch):
    records = mixed_records(2 * BATCH + 10)
    calls = {"n": 0}

    def interrupted_once(rec):
        calls["n"] += 1
        if calls["n"] == BATCH + 30:  # inside the second batch's formatting
            raise KeyboardInterrupt
        return json_line(rec)

    monkeypatch.setattr(export, "json_line", interrupted_once)
    out = tmp_path / "run.jsonl"
    given = 0
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(str(out)) as writer:
            for rec in records:
                writer.write(rec)
                given += 1
    assert given == 2 * BATCH - 1  # the record whose write filled the batch was taken
    assert writer.count == 2 * BATCH
    monkeypatch.undo()
    assert out.read_text() == "".join(json_line(rec) + "\n" for rec in records[: 2 * BATCH])


def test_a_ctrl_c_while_the_csv_header_is_made_loses_neither_header_nor_rows(tmp_path, monkeypatch):
    records = mixed_records(5)
    real = export._csv_columns
    calls = {"n": 0}

    def interrupted_once(rec):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(rec)

    monkeypatch.setattr(export, "_csv_columns", interrupted_once)
    out = tmp_path / "run.csv"
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(str(out)) as writer:
            for rec in records:
                writer.write(rec)
            writer._write_kept()  # the header's first try, interrupted
    monkeypatch.undo()
    write_records(str(tmp_path / "reference.csv"), records)
    assert out.read_text() == (tmp_path / "reference.csv").read_text()


def test_a_commit_that_cannot_write_removes_its_temporary_file(tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text("old\n")
    writer = RecordWriter(str(out))
    for rec in mixed_records(10):  # all kept back: written by the commit
        writer.write(rec)

    def full_disk(text):
        raise OSError(28, "No space left on device")

    writer._file.write = full_disk
    with pytest.raises(OSError):
        writer.commit()
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.jsonl"]

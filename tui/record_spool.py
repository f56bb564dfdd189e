"""Every record of a dashboard run, kept on disk so `e` can export the whole run.

The session's History is bounded (old steps are folded into buckets), so it
cannot give back every record. Keeping the records in memory instead would
grow without bound (a few kB a step). The choice here: the session's
`on_record` hook streams each record to an anonymous temporary file (deleted
by the OS when closed or when the process ends). Memory stays constant at
any run length, and the export has every step since the last reset.

The cost falls in the training thread, BATCH records at a time. Most
records are plain (`engine.export.plain_fields`: layers unmeasured, finite
numbers): their six numbers are packed as doubles, 48 bytes a step, and
formatted as JSON only when read. Any other record is written as its JSON
line. A block is a tag (P or J), a count, a length and its bytes. On the
regression model's step, in place: the spool cost 1.041-1.044x with every
record formatted as JSON, 1.028x packed (8.1 against 6.7 us a step: ~2 us
to take a record, cold after the step, and ~29 us of JSON a statistics step).

Export reads the lines back (a snapshot of the steps written by then, a
block at a time under the lock, so training goes on meanwhile), rebuilds
the records and hands them to engine.export's atomic writer: JSONL and CSV
come out exactly as `gradtui run --out` writes them.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import threading
from array import array
from collections.abc import Iterator
from itertools import groupby

from engine.export import json_line, plain_fields, plain_line, write_records
from engine.records import LayerStats, StepRecord

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _number(value):
    return _SPECIAL.get(value, value) if isinstance(value, str) else value


def record_from_json(data: dict) -> StepRecord:
    """The StepRecord a JSONL line describes (the inverse of engine.export.record_to_json)."""
    layers = {
        name: LayerStats(**{key: _number(value) for key, value in stats.items()})
        for name, stats in data.get("layers", {}).items()
    }
    timesteps = data.get("timestep_grad_norms")
    return StepRecord(
        step=data["step"],
        epoch=data["epoch"],
        loss=_number(data["loss"]),
        grad_norm=_number(data["grad_norm"]),
        grad_norm_clipped=_number(data["grad_norm_clipped"]),
        clipped_frac=_number(data.get("clipped_frac")),
        layers=layers,
        timestep_grad_norms=None if timesteps is None else tuple(map(_number, timesteps)),
    )


# Records kept back and written together (one write, a block or two).
BATCH = 64
_HEADER = struct.Struct("<cII")  # tag, records, bytes that follow
_PLAIN = 6  # doubles a plain record packs: step, epoch, loss, norm, clipped norm, clipped fraction


class RecordSpool:
    """A session's on_record hook: each record appended to a temporary JSONL file.

    Records are formatted and written BATCH at a time (a reader first writes
    what is kept back, so it sees every record given so far).
    """

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile("w+b", prefix="gradtui-records-", dir=directory)
        self._lock = threading.Lock()
        self._read_since_write = False  # the file position is not at the end
        self._kept: list[StepRecord] = []  # given, not yet written
        self.count = 0  # records given (written, or kept back to be)
        self.error: str | None = None  # why the spool stopped (a full disk), if it did

    def __call__(self, record: StepRecord) -> None:
        """Take one record (called in the training thread; never raises)."""
        if self.error is not None:
            return
        with self._lock:
            if self._file.closed:  # a reset closed it while the old thread still ran
                self.error = f"the record file stopped at step {record.step}: it was closed"
                return
            self._kept.append(record)
            self.count += 1
            if len(self._kept) >= BATCH:
                self._write_kept()

    def _write_kept(self) -> None:
        # Under the lock. Records are frozen: writing them late changes nothing.
        kept, self._kept = self._kept, []
        if not kept or self.error is not None:
            return
        try:
            self._write_blocks(kept)
        except (OSError, ValueError) as exc:  # ValueError: closed by a reset meanwhile
            self.count -= len(kept)
            self.error = f"the record file stopped at step {kept[0].step}: {exc}"

    def _write_blocks(self, kept: list[StepRecord]) -> None:
        # Runs of plain steps as packed numbers, the other records as JSON lines,
        # in their order. Done a batch at a time, right after a step, the work
        # is ~1 us a plain record; packed one by one it was ~3.5 us (cold code).
        blocks = []
        pairs = [(plain_fields(record), record) for record in kept]
        for text, run in groupby(pairs, key=lambda pair: pair[0] and pair[0][6]):
            if text:  # plain steps of one model (its layers' JSON text)
                numbers = array("d")
                for fields, _ in run:
                    numbers.extend(fields[:_PLAIN])
                blocks.append(_plain_block(text, numbers))
            else:
                blocks.append(_json_block([record for _, record in run]))
        if self._read_since_write:  # a seek flushes the buffer: only after a read
            self._file.seek(0, os.SEEK_END)
            self._read_since_write = False
        self._file.write(b"".join(blocks))

    def lines(self, chunk: int = 1024) -> Iterator[bytes]:
        """The lines given so far: a snapshot of `count` at the call, read a block at a time.

        `chunk`: lines at most per hold of the lock (a block holds BATCH at most).
        """
        with self._lock:
            self._write_kept()
            total = self.count
        position, done = 0, 0
        while done < total:
            batch: list[bytes] = []
            with self._lock:
                self._read_since_write = True
                self._file.seek(position)
                while len(batch) < chunk and done + len(batch) < total:
                    block = _read_block(self._file, total - done - len(batch))
                    if not block:
                        break
                    batch.extend(block)
                position = self._file.tell()
            if not batch:
                return
            done += len(batch)
            yield from batch

    def records(self) -> Iterator[StepRecord]:
        """The records written so far, rebuilt from their lines."""
        for line in self.lines():
            yield record_from_json(json.loads(line))

    def export(self, path: str) -> int:
        """Write every record so far to `path` (.jsonl or .csv), atomically; the count."""
        return write_records(path, self.records())

    def close(self) -> None:
        """Delete the temporary file (and what was kept back)."""
        with self._lock:
            self._kept = []
            self._file.close()


class RecordHooks:
    """Several on_record hooks as one (the flow bars' first record, the spool)."""

    def __init__(self, *hooks) -> None:
        self.hooks = hooks

    def __call__(self, record: StepRecord) -> None:
        for hook in self.hooks:
            hook(record)


def _plain_block(text: str, numbers: array) -> bytes:
    """A run of plain steps: the layers' JSON text once, then six doubles a step."""
    text_bytes = text.encode()
    payload = struct.pack("<I", len(text_bytes)) + text_bytes + numbers.tobytes()
    return _HEADER.pack(b"P", len(numbers) // _PLAIN, len(payload)) + payload


def _json_block(records: list[StepRecord]) -> bytes:
    """Records as their JSON lines."""
    payload = "".join([json_line(record) + "\n" for record in records]).encode()
    return _HEADER.pack(b"J", len(records), len(payload)) + payload


def _read_block(file, most: int) -> list[bytes]:
    """The JSON lines of the block at the file's position (at most `most`); [] at the end."""
    header = file.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return []
    tag, count, length = _HEADER.unpack(header)
    payload = file.read(length)
    if tag == b"J":
        lines = payload.splitlines(keepends=True)
    else:
        (size,) = struct.unpack_from("<I", payload)
        text = payload[4 : 4 + size].decode()
        numbers = array("d")
        numbers.frombytes(payload[4 + size :])
        lines = []
        for i in range(0, len(numbers), _PLAIN):
            step, epoch, loss, norm, clipped, frac = numbers[i : i + _PLAIN]
            fields = (int(step), int(epoch), loss, norm, clipped, frac, text)
            lines.append((plain_line(fields) + "\n").encode())
    return lines[:most]

"""Every record of a dashboard run, kept on disk so `e` can export the whole run.

The session's History is bounded (old steps are folded into buckets), so it
cannot give back every record. Keeping the records in memory instead would
grow without bound (a few kB a step). The choice here: the session's
`on_record` hook streams each record, as the export's own JSON line, to an
anonymous temporary file (deleted by the OS when closed or when the process
ends). Memory stays constant at any run length, and the export has every step
since the last reset. The cost is one JSON line per step in the training
thread, formatted BATCH records at a time (~2 us for a step whose layers were
not measured, `engine.export.json_line`, against ~9 us one at a time right
after a step), and a buffered write.

Export reads the lines back (a snapshot of the steps written by then, in
chunks under the lock, so training goes on meanwhile), rebuilds the records
and hands them to engine.export's atomic writer: JSONL and CSV come out
exactly as `gradtui run --out` writes them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Iterator

from engine.export import json_line, write_records
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


# Records kept back and written together: a JSON line formatted right after a
# training step cost ~9 us (its code out of the caches), ~2 us in a batch.
BATCH = 64


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
        # Under the lock. Records are frozen: formatting them late changes nothing.
        kept, self._kept = self._kept, []
        if not kept or self.error is not None:
            return
        try:
            block = "".join([json_line(r) + "\n" for r in kept]).encode()
            if self._read_since_write:  # a seek flushes the buffer: only after a read
                self._file.seek(0, os.SEEK_END)
                self._read_since_write = False
            self._file.write(block)
        except (OSError, ValueError) as exc:  # ValueError: closed by a reset meanwhile
            self.count -= len(kept)
            self.error = f"the record file stopped at step {kept[0].step}: {exc}"

    def lines(self, chunk: int = 1024) -> Iterator[bytes]:
        """The lines given so far: a snapshot of `count` at the call, read in chunks."""
        with self._lock:
            self._write_kept()
            total = self.count
        position, done = 0, 0
        while done < total:
            with self._lock:
                self._read_since_write = True
                self._file.seek(position)
                batch = []
                while len(batch) < chunk and done < total:
                    line = self._file.readline()
                    if not line:
                        break
                    batch.append(line)
                    done += 1
                position = self._file.tell()
            if not batch:
                return
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

"""JSONL and CSV writers for the record stream, written atomically.

Records are streamed into a temporary file beside the target and renamed
over it on `commit`, so a killed process never leaves a half-written file
under the requested name, and an interrupted run still commits the steps done.
Non-finite numbers are data: JSONL writes them as the strings "NaN",
"Infinity" and "-Infinity" (strict JSON), CSV as nan, inf and -inf.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from typing import Any

from engine.atomic import publish, temporary_beside
from engine.config import ConfigError
from engine.records import LAYER_STATS, StepRecord

FORMATS = (".jsonl", ".csv")
SCALAR_KEYS = ("step", "epoch", "loss", "grad_norm", "grad_norm_clipped", "clipped_frac")
BATCH = 64  # records a RecordWriter keeps back and formats together


def json_number(value: float | None) -> Any:
    """A float as strict JSON allows: non-finite values become strings."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def record_to_json(record: StepRecord) -> dict[str, Any]:
    """The contract's JSON object for one record (DESIGN.md §3)."""
    out: dict[str, Any] = {key: json_number(getattr(record, key)) for key in SCALAR_KEYS}
    out["layers"] = {
        name: {k: json_number(v) for k, v in stats.as_dict().items()}
        for name, stats in record.layers.items()
    }
    if record.timestep_grad_norms is not None:
        out["timestep_grad_norms"] = [json_number(v) for v in record.timestep_grad_norms]
    return out


def check_output_path(path: str) -> str:
    """Refuse an unknown extension, a missing directory or one we cannot write."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ConfigError("--out", f"{path!r} must end in .jsonl or .csv")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError("--out", f"directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError("--out", f"directory {directory!r} is not writable")
    if os.path.isdir(path):
        raise ConfigError("--out", f"{path!r} is a directory")
    return extension


def json_line(record: StepRecord) -> str:
    """One record as its JSONL line (no newline): `record_to_json`, compactly dumped.

    Written for every step of a run (the dashboard's spool, `gradtui run --out`),
    so the common record, one whose layers were not measured on its step, is
    formatted from a cached layers fragment: 1-2 us instead of ~15 us of
    json.dumps over 14 nulls a layer. Any other record takes json.dumps; a test
    checks both give the same text.
    """
    if record.timestep_grad_norms is None:
        cached = _BLANK_FRAGMENTS.get(id(record.layers))
        if cached is not None and cached[0] is record.layers:
            fields = _plain_fields(record, cached[1])
            if fields is not None:
                return plain_line(fields)
            scalars = [_scalar_text(getattr(record, key)) for key in SCALAR_KEYS]
            if None not in scalars:
                return _LINE_FORMAT % (*scalars, cached[1])
    line = json.dumps(record_to_json(record), allow_nan=False, separators=(",", ":"))
    if _is_blank(record):
        _remember_fragment(record)
    return line


_LINE_FORMAT = "{" + ",".join(f'"{k}":%s' for k in SCALAR_KEYS) + ',"layers":%s}'
_BLANK_FRAGMENTS: dict[int, tuple[dict, str]] = {}  # id(layers) -> (layers, its JSON)
_NON_FINITE_TEXT = {math.inf: '"Infinity"', -math.inf: '"-Infinity"'}


# The usual unmeasured step: plain ints and finite floats, formatted in one
# C-level operation (%r is float.__repr__, as json.dumps writes a float): ~1.6
# against ~4 us for six calls of _scalar_text, on every step of a dashboard run.
_PLAIN_FORMAT = _LINE_FORMAT.replace("%s", "%d", 2).replace("%s", "%r", 3)


# (step, epoch, loss, grad_norm, grad_norm_clipped, clipped_frac, layers text); the
# fraction NaN where it is None (a plain record's fraction is otherwise finite).
PlainFields = tuple


def plain_fields(record: StepRecord) -> PlainFields | None:
    """The numbers of a record that `plain_line` formats, or None for any other record.

    A plain record: its layers unmeasured (a blank mapping whose JSON is
    cached), no time-step norms, integer step and epoch, finite float loss
    and norms, and a clipped fraction that is None or a finite float. The
    dashboard's spool keeps these and formats them only when read.
    """
    if record.timestep_grad_norms is not None:
        return None
    cached = _BLANK_FRAGMENTS.get(id(record.layers))
    if cached is None or cached[0] is not record.layers:
        if not _is_blank(record):
            return None
        cached = _remember_fragment(record)  # the run's first unmeasured step
    return _plain_fields(record, cached[1])


def plain_line(fields: PlainFields) -> str:
    """The JSONL line (no newline) of a plain record's `plain_fields`."""
    step, epoch, loss, norm, clipped, frac, layers_text = fields
    frac_text = "null" if frac != frac else float.__repr__(frac)
    return _PLAIN_FORMAT % (step, epoch, loss, norm, clipped, frac_text, layers_text)


def _plain_fields(record: StepRecord, layers_text: str) -> PlainFields | None:
    step, epoch, loss = record.step, record.epoch, record.loss
    norm, clipped, frac = record.grad_norm, record.grad_norm_clipped, record.clipped_frac
    if not (
        type(step) is int
        and type(epoch) is int
        and type(loss) is float
        and type(norm) is float
        and type(clipped) is float
        and _finite(loss)
        and _finite(norm)
        and _finite(clipped)
        and (frac is None or (type(frac) is float and _finite(frac)))
    ):
        return None
    return (step, epoch, loss, norm, clipped, _NAN if frac is None else frac, layers_text)


_NAN = math.nan


_finite = math.isfinite


def _scalar_text(value) -> str | None:
    """JSON text of a plain float, int or None; None for anything else (json.dumps decides)."""
    kind = type(value)
    if kind is float:
        if value != value:
            return '"NaN"'
        return _NON_FINITE_TEXT.get(value) or float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return None


def _is_blank(record: StepRecord) -> bool:
    return record.timestep_grad_norms is None and all(
        value is None for stats in record.layers.values() for value in stats.as_dict().values()
    )


def _remember_fragment(record: StepRecord) -> tuple[dict, str]:
    # Keyed by the dict's identity: engine.recording shares one blank dict per model
    # and never modifies it. The dict is kept alive with its text, so an id is never
    # reused. Returned as well: another session's thread may clear the cache meanwhile.
    if len(_BLANK_FRAGMENTS) > 64:
        _BLANK_FRAGMENTS.clear()
    layers = record_to_json(record)["layers"]
    entry = (record.layers, json.dumps(layers, allow_nan=False, separators=(",", ":")))
    _BLANK_FRAGMENTS[id(record.layers)] = entry
    return entry


class RecordWriter:
    """Streams records to `path` (.jsonl or .csv) through a temporary file.

    Records are kept back and formatted BATCH at a time: one by one, right
    after each training step, a plain record's line cost ~13 us with the
    step's caches cold, against ~2 us in a batch (the regression model's
    0.5 ms step: a run with --out 1.03x one without, then ~1.01x).
    Records are frozen, so formatting them late writes what they held.
    `commit` writes what is kept back; `discard` drops it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.format = check_output_path(path)
        fd, self._tmp = temporary_beside(path)
        self._file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._csv: csv.writer | None = None
        self._columns: list[str] = []
        self._kept: list[StepRecord] = []  # given, not yet formatted
        self.count = 0  # records given (written, or kept back to be)
        self.closed = False

    def write(self, record: StepRecord) -> None:
        """Append one record (formatted with the next BATCH - 1, or at commit)."""
        kept = self._kept
        kept.append(record)
        self.count += 1
        if len(kept) >= BATCH:
            self._write_kept()

    def _write_kept(self) -> None:
        kept = self._kept
        if not kept:
            return
        # Formatted first, then handed over in one call, the state changed in
        # between without a call (where Python could run a signal's handler):
        # a Ctrl+C while they are made leaves them kept for `commit`, and
        # nothing is written twice, a CSV header included.
        if self.format == ".jsonl":
            text = "".join([json_line(record) + "\n" for record in kept])
            self._kept = []
            self._file.write(text)
            return
        columns = self._columns or _csv_columns(kept[0])
        rows = [_csv_row(record, columns) for record in kept]
        writer = self._csv
        if writer is None:  # the first batch: the header, the first record's layers
            rows.insert(0, columns)
            writer = csv.writer(self._file)
        self._kept, self._columns, self._csv = [], columns, writer
        writer.writerows(rows)

    def commit(self) -> None:
        """Write what is kept back, flush, sync and rename the file into place.

        Where that fails (a full disk), the temporary file is removed and the
        error raised: the target is left as it was.
        """
        if self.closed:
            return
        try:
            self._write_kept()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except BaseException:
            self.discard()
            raise
        publish(self._tmp, self.path)
        self.closed = True

    def discard(self) -> None:
        """Drop the temporary file; the target is left as it was."""
        if self.closed:
            return
        self._kept = []
        self.closed = True
        with contextlib.suppress(OSError):  # a full disk fails the close's flush too
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # An interrupted run keeps the steps it did; any other failure keeps nothing.
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.commit()
        else:
            self.discard()


def _csv_columns(record: StepRecord) -> list[str]:
    # The CSV header: the scalars, then every statistic of each of the record's layers.
    return list(SCALAR_KEYS) + [f"{n}.{s}" for n in record.layers for s in LAYER_STATS]


def _csv_row(record: StepRecord, columns: list[str]) -> list:
    values = {key: getattr(record, key) for key in SCALAR_KEYS}
    for name, stats in record.layers.items():
        for stat, value in stats.as_dict().items():
            values[f"{name}.{stat}"] = value
    return ["" if (v := values.get(c)) is None else v for c in columns]


def write_records(path: str, records: list[StepRecord]) -> int:
    """Write a list of records at once (the dashboard's save); returns the count."""
    with RecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.count

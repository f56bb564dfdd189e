"""Bounded, thread-safe storage of the record stream, cheap to plot at any length.

Every record becomes a row of float columns ("loss", "h1.grad_norm", ...):
its scalars in one store, and where it measured any layer statistics, those
in a second (engine.row_store), so the plain steps of a fast run touch four
columns only. In each, the newest rows are kept at full resolution in a
window; older rows are folded into a fixed number of buckets (first step,
last value, finite min and max, a non-finite flag) whose size doubles
whenever they fill. Memory and the cost of reading a plot's worth of any
series are bounded by the windows and the bucket count, not by the run's
length. Records are queued and written a block at a time (a reader writes
the queue first). Nothing here imports torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

import numpy as np

from engine.buckets import reduce_rows
from engine.compact_stats import CompactLayers
from engine.recording import blank_layers
from engine.records import LAYER_STATS, StepRecord
from engine.row_store import RowStore

SCALARS = ("loss", "grad_norm", "grad_norm_clipped", "clipped_frac")
_LIGHT_PRESENT = (True, True, True, False)  # a plain step's scalars: no clipped fraction
_LAYER_VALUES = attrgetter(*LAYER_STATS)  # one LayerStats -> its values in column order
# Steps queued before their rows are written together: the write's numpy calls
# cost ~20 us however few rows (~50 right after a step), so a larger block
# costs a step less. A reader writes the queue first (the dashboard, each frame).
_LIGHT_BLOCK = 1024
# The scalars' window holds this many times the layers' rows: four columns,
# so at 8,192 rows ~290 KB, and its older half folds a quarter as often (a
# fold's ~100 us of numpy calls are mostly per call, not per row).
SCALAR_WINDOW = 4
_FULL_BLOCK = 16  # records with more than their scalars queued before a write
_NAN = float("nan")


@dataclass(frozen=True)
class Series:
    """One column over steps, ready to plot: finite envelope and non-finite flags."""

    steps: np.ndarray  # the step each point stands for (a bucket's first step)
    values: np.ndarray  # the last value recorded in the point's span (may be NaN/inf)
    lo: np.ndarray  # smallest finite value in the span (NaN if none)
    hi: np.ndarray  # largest finite value in the span (NaN if none)
    nonfinite: np.ndarray  # True where the span held NaN or infinity

    def __len__(self) -> int:
        return len(self.steps)


class History:
    """The session's record stream, bounded; safe to append and read from two threads."""

    def __init__(self, window: int = 2048, buckets: int = 1024, timestep_rows: int = 256) -> None:
        self.window_size = window
        self.bucket_count = buckets
        self.timestep_rows = timestep_rows
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget everything (a reset)."""
        with self._lock:
            self._written = 0  # steps taken from the queue into the stores
            self.layer_names: list[str] = []
            self.columns: list[str] = []
            # Every step's scalars, and apart the rows of the steps that measured
            # layer statistics (engine.row_store); each column's (store, index).
            self._scalars = RowStore(
                len(SCALARS), SCALAR_WINDOW * self.window_size, self.bucket_count
            )
            self._layers: RowStore | None = None
            self._index: dict[str, tuple[RowStore, int]] = {
                c: (self._scalars, i) for i, c in enumerate(SCALARS)
            }
            self.latest: StepRecord | None = None
            self.latest_captured: StepRecord | None = None
            # The newest record with each layer's gradient norm (statistics or
            # activations captured): what the flow bars show.
            self.latest_measured: StepRecord | None = None
            self.latest_activations: StepRecord | None = None
            self._timesteps: list[tuple[int, tuple[float, ...]]] = []
            # Steps not yet written, in order: (step, loss, norm, clipped norm,
            # clipped fraction) tuples; (index in `_light`, record) of each step
            # that carried more than its scalars.
            self._light: list[tuple] = []
            self._full: list[tuple[int, StepRecord]] = []
            self._blank = None

    # -- writing -------------------------------------------------------------
    @property
    def count(self) -> int:
        """Records appended since the last clear."""
        with self._lock:
            return self._written + len(self._light)

    @property
    def version(self) -> int:
        """Moves with every append (it is the count); readers redraw when it moves."""
        return self.count

    def append(self, record: StepRecord) -> None:
        """Add one record; old rows fold into the overview as the window fills.

        One writer at a time (the session's training thread, or the headless
        run's); readers in other threads take the lock.
        """
        if (
            record.layers is self._blank
            and record.clipped_frac is None
            and record.timestep_grad_norms is None
            and record.grad_norm is not None
        ):
            # Most steps of a fast run carry the loss and two norms alone, and no
            # more moves for them than the queue and `latest`: without the lock,
            # whose few lines cost ~1% of a 0.1 ms step right after it. A list's
            # append is atomic, and a reader takes what is queued from this same
            # list (`_write_light`), so a step appended meanwhile waits its turn.
            # `latest` first: a reader that sees the count move sees this record.
            self.latest = record
            light = self._light
            light.append(
                (record.step, record.loss, record.grad_norm, record.grad_norm_clipped, _NAN)
            )
            if len(light) >= _LIGHT_BLOCK:
                with self._lock:
                    self._write_light()
            return
        with self._lock:
            if not self.columns:
                self._start(list(record.layers))
            # Queued like a light step (its time-step norms are kept below), and
            # where it carried more, noted: writing its rows now would first write
            # the steps queued before it, ~50 us with every capture of a fast run.
            self._full.append((len(self._light), record))
            self._light.append(tuple(_nan_for_none(v) for v in _scalars_of(record)))
            self.latest = record
            # A few measured records at most wait: each holds its layers' numbers
            # (and histograms), and a run capturing every step queues nothing else.
            if len(self._light) >= _LIGHT_BLOCK or len(self._full) >= _FULL_BLOCK:
                self._write_light()
            if record.captured:
                self.latest_captured = self.latest_measured = record
            elif record.activations_captured:
                self.latest_measured = record
            if record.histograms is not None:
                self.latest_activations = record
            if record.timestep_grad_norms is not None:
                self._timesteps.append((record.step, record.timestep_grad_norms))
                if len(self._timesteps) > self.timestep_rows:
                    # Keep every other old row: a bounded, evenly thinned past.
                    half = len(self._timesteps) // 2
                    self._timesteps = self._timesteps[:half:2] + self._timesteps[half:]

    def _start(self, layer_names: list[str]) -> None:
        self.layer_names = layer_names
        self._names = tuple(layer_names)
        layer_columns = [f"{n}.{s}" for n in layer_names for s in LAYER_STATS]
        self.columns = list(SCALARS) + layer_columns
        self._layers = RowStore(len(layer_columns), self.window_size, self.bucket_count)
        self._index.update({c: (self._layers, i) for i, c in enumerate(layer_columns)})
        self._missing = (None,) * len(LAYER_STATS)
        self._blank = blank_layers(layer_names)  # a sentinel step's layers: nothing measured
        self._compact_present: dict[tuple, np.ndarray] = {}  # by CompactLayers.kind()

    def _write_light(self) -> None:
        # The queued steps' scalars in one block, then the layer rows of those
        # that measured any (the two stores each in step order).
        light = self._light
        if not light:
            return
        # Taken from the list in place, not swapped for a new one: the writer
        # appends light steps without the lock, to whichever list it last read.
        taken = len(light)
        queued = light[:taken]
        del light[:taken]
        self._written += taken
        full, self._full = self._full, []  # appended under the lock: all within `taken`
        # fromiter over the flattened rows: ~60% of np.array's time over the tuples
        block = np.fromiter(chain.from_iterable(queued), float, 5 * len(queued)).reshape(-1, 5)
        present = _LIGHT_PRESENT
        if full:
            present = np.tile(present, (len(queued), 1))
            for at, record in full:  # None (not measured) apart from NaN (trained into)
                present[at] = [v is not None for v in _scalars_of(record)[1:]]
        self._scalars.add_block(block[:, 0], block[:, 1:], present)
        for _, record in full:
            if record.layers is not self._blank:
                self._layer_row(record)

    def _layer_row(self, record: StepRecord) -> None:
        # Every layer's statistics of a step that measured any, as one row.
        layers, store = record.layers, self._layers
        j = store.open_row(record.step)
        if type(layers) is CompactLayers and layers.names() == self._names:
            values = layers.columns()  # a compact step's numbers, no objects built
            store.rows[j] = values
            # Which of a compact step's statistics are None is fixed by its kind:
            # the mask, once per kind, instead of three passes over the row.
            kind = layers.kind()
            present = self._compact_present.get(kind)
            if present is None:
                present = self._compact_present[kind] = np.array([v is not None for v in values])
            store.present[j] = present
            store.commit()
            return
        values = []
        for name in self.layer_names:
            stats = layers.get(name)
            values.extend(_LAYER_VALUES(stats) if stats is not None else self._missing)
        nones = values.count(None)
        if nones == len(values):
            return  # nothing measured: no row (the window keeps rows that say something)
        # None (not captured) and NaN (trained into) stay apart: NaN in the row,
        # False in `present` only for None.
        row = store.rows[j]
        row[:] = values  # None becomes NaN
        missing = np.isnan(row)
        if np.count_nonzero(missing) == nones:
            np.logical_not(missing, out=store.present[j])  # every NaN was a None
        else:  # a statistic that trained into NaN: tell it from the missing ones
            store.present[j] = [v is not None for v in values]
        store.commit()

    # -- reading -------------------------------------------------------------
    def series(self, key: str, max_points: int = 400, last: int | None = None) -> Series:
        """Column `key` over the whole run (or its `last` steps), at most max_points points."""
        with self._lock:
            self._write_light()
            where = self._index.get(key)
            if where is None or self._written == 0:
                empty = np.zeros(0)
                return Series(empty, empty, empty, empty, np.zeros(0, dtype=bool))
            store, index = where
            steps, last_v, lo, hi, bad, keep = store.column(index)
        steps, last_v, lo, hi, bad = steps[keep], last_v[keep], lo[keep], hi[keep], bad[keep]
        if last is not None and len(steps):
            recent = steps >= steps[-1] - last + 1
            steps, last_v, lo, hi, bad = (
                steps[recent],
                last_v[recent],
                lo[recent],
                hi[recent],
                bad[recent],
            )
        if len(steps) > max_points:
            steps, last_v, lo, hi, bad = reduce_rows(steps, last_v, lo, hi, bad, max_points)
        return Series(steps, last_v, lo, hi, bad)

    def timestep_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(training steps, rows of per-time-step gradient norms) for the heat map."""
        with self._lock:
            rows = list(self._timesteps)
        if not rows:
            return np.zeros(0), np.zeros((0, 0))
        return np.array([s for s, _ in rows]), np.array([r for _, r in rows], dtype=float)

    def memory_bytes(self) -> int:
        """Bytes held by the arrays (bounded by the window and bucket count)."""
        with self._lock:
            self._write_light()
            stores = (self._scalars, self._layers)
            return sum(store.nbytes for store in stores if store is not None)


def _scalars_of(record: StepRecord) -> tuple:
    # A record's step and scalar columns, in SCALARS order.
    return (
        record.step, record.loss, record.grad_norm, record.grad_norm_clipped, record.clipped_frac,
    )  # fmt: skip


def _nan_for_none(value):
    return _NAN if value is None else value

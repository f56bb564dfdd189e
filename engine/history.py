"""Bounded, thread-safe storage of the record stream, cheap to plot at any length.

Every record becomes one row of float columns ("loss", "h1.grad_norm", ...).
The newest rows are kept at full resolution in a window; older rows are folded
into a fixed number of buckets (first step, last value, finite min and max, a
non-finite flag) whose size doubles whenever they fill. Memory and the cost of
reading a plot's worth of any series are bounded by the window and the bucket
count, not by the run's length. Nothing here imports torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

import numpy as np

from engine.buckets import Buckets, reduce_rows
from engine.compact_stats import CompactLayers
from engine.recording import blank_layers
from engine.records import LAYER_STATS, StepRecord

SCALARS = ("loss", "grad_norm", "grad_norm_clipped", "clipped_frac")
_LAYER_VALUES = attrgetter(*LAYER_STATS)  # one LayerStats -> its values in column order
# Scalar-only rows queued before they are written together: the write's numpy
# calls cost ~20 us however few rows, so a larger block costs a step less.
_LIGHT_BLOCK = 256


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
            self.version = 0  # increases with every append; readers redraw when it moves
            self.count = 0
            self.layer_names: list[str] = []
            self.columns: list[str] = []
            self._index: dict[str, int] = {}
            self._steps = np.zeros(0)
            self._rows = np.zeros((0, 0))
            self._n = 0
            self._overview: Buckets | None = None
            self.latest: StepRecord | None = None
            self.latest_captured: StepRecord | None = None
            # The newest record with each layer's gradient norm (statistics or
            # activations captured): what the flow bars show.
            self.latest_measured: StepRecord | None = None
            self.latest_activations: StepRecord | None = None
            self._timesteps: list[tuple[int, tuple[float, ...]]] = []
            # Rows not yet written, in step order: (step, loss, norm, clipped norm)
            # tuples, and at the indices in `_full_at`, records with more measured.
            self._light: list = []
            self._full_at: list[int] = []
            self._blank = None

    # -- writing -------------------------------------------------------------
    def append(self, record: StepRecord) -> None:
        """Add one record; old rows fold into the overview as the window fills."""
        with self._lock:
            if (
                record.layers is self._blank
                and record.clipped_frac is None
                and record.timestep_grad_norms is None
                and record.grad_norm is not None
            ):
                # Most steps of a fast run carry the loss and two norms alone: queued,
                # and written a block at a time (a numpy row a step costs more than
                # the step's own bookkeeping on a small model). Such a record measured
                # nothing else (its layers are the shared blank ones), so nothing but
                # the counters and `latest` moves: done here, in as few lines as that.
                light = self._light
                light.append((record.step, record.loss, record.grad_norm, record.grad_norm_clipped))
                if len(light) >= _LIGHT_BLOCK:
                    self._write_light()
                self.count += 1
                self.version += 1
                self.latest = record
                return
            if not self.columns:
                self._start(list(record.layers))
            if (
                record.layers is self._blank
                and record.clipped_frac is None
                and record.grad_norm is not None
            ):  # a light record with time-step norms: queued, the norms kept below
                self._light.append(
                    (record.step, record.loss, record.grad_norm, record.grad_norm_clipped)
                )
            else:
                # Queued in its place too: writing it now would first write the light
                # rows before it, and those numpy calls (~50 us right after a step)
                # came with every capture of a fast run, not once a block.
                self._full_at.append(len(self._light))
                self._light.append(record)
            if len(self._light) >= _LIGHT_BLOCK:
                self._write_light()
            self.count += 1
            self.version += 1
            self.latest = record
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
        self.columns = list(SCALARS) + [f"{n}.{s}" for n in layer_names for s in LAYER_STATS]
        self._index = {c: i for i, c in enumerate(self.columns)}
        self._steps = np.zeros(self.window_size)
        self._rows = np.full((self.window_size, len(self.columns)), np.nan)
        self._present = np.zeros((self.window_size, len(self.columns)), dtype=bool)
        self._overview = Buckets(self.bucket_count, len(self.columns))
        self._missing = (None,) * len(LAYER_STATS)
        self._blank = blank_layers(layer_names)  # a sentinel step's layers: nothing measured
        self._light_row = np.full(len(self.columns), np.nan)
        self._light_present = np.zeros(len(self.columns), dtype=bool)
        self._light_present[:3] = True  # loss, grad_norm, grad_norm_clipped
        self._compact_present: dict[tuple, np.ndarray] = {}  # by CompactLayers.kind()

    def _row(self, record: StepRecord) -> None:
        # Flattened in column order: the scalars, then every layer's stats.
        values = [record.loss, record.grad_norm, record.grad_norm_clipped, record.clipped_frac]
        layers = record.layers
        if type(layers) is CompactLayers and layers.names() == self._names:
            values += layers.columns()  # a compact step's numbers, no objects built
            self._rows[self._n] = values
            # Which of a compact step's statistics are None is fixed by its kind:
            # the mask, once per kind, instead of three passes over the row.
            kind = layers.kind()
            present = self._compact_present.get(kind)
            if present is None:
                present = self._compact_present[kind] = np.array([v is not None for v in values])
            self._present[self._n] = present
            return
        for name in self.layer_names:
            stats = layers.get(name)
            values.extend(_LAYER_VALUES(stats) if stats is not None else self._missing)
        # None (not captured) and NaN (trained into) stay apart: NaN in the row,
        # False in `present` only for None.
        row = self._rows[self._n]
        row[:] = values  # None becomes NaN
        missing = np.isnan(row)
        if np.count_nonzero(missing) == values.count(None):
            np.logical_not(missing, out=self._present[self._n])  # every NaN was a None
        else:  # a statistic that trained into NaN: tell it from the missing ones
            self._present[self._n] = [v is not None for v in values]

    def _write_light(self) -> None:
        # The queued rows into the window in step order: runs of scalar-only
        # rows a run at a time, the records at `_full_at` a row each.
        queued = self._light
        if not queued:
            return
        full_at, self._light, self._full_at = self._full_at, [], []
        done = 0
        for at in full_at:
            self._write_scalar_rows(queued[done:at])
            if self._n == self.window_size:
                self._fold_half()
            record = queued[at]
            self._steps[self._n] = record.step
            self._row(record)
            self._n += 1
            done = at + 1
        self._write_scalar_rows(queued[done:] if done else queued)

    def _write_scalar_rows(self, light: list[tuple]) -> None:
        # Scalar-only rows (step, loss, two norms) into the window, folding as it fills.
        if not light:
            return
        # fromiter over the flattened rows: ~60% of np.array's time over the tuples
        block = np.fromiter(chain.from_iterable(light), float, 4 * len(light)).reshape(-1, 4)
        done = 0
        while done < len(block):
            if self._n == self.window_size:
                self._fold_half()
            n = self._n
            k = min(len(block) - done, self.window_size - n)
            part = block[done : done + k]
            self._steps[n : n + k] = part[:, 0]
            self._rows[n : n + k] = self._light_row
            self._rows[n : n + k, :3] = part[:, 1:]
            self._present[n : n + k] = self._light_present
            self._n += k
            done += k

    def _fold_half(self) -> None:
        half = self.window_size // 2
        self._overview.add(self._steps[:half], self._rows[:half], self._present[:half])
        self._steps[:half] = self._steps[half:]
        self._rows[:half] = self._rows[half:]
        self._present[:half] = self._present[half:]
        self._n = half

    # -- reading -------------------------------------------------------------
    def series(self, key: str, max_points: int = 400, last: int | None = None) -> Series:
        """Column `key` over the whole run (or its `last` steps), at most max_points points."""
        with self._lock:
            self._write_light()
            index = self._index.get(key)
            if index is None or self.count == 0:
                empty = np.zeros(0)
                return Series(empty, empty, empty, empty, np.zeros(0, dtype=bool))
            o_steps, o_last, o_lo, o_hi, o_bad, o_have = self._overview.column(index)
            r = slice(0, self._n)
            values = self._rows[r, index].copy()
            have = self._present[r, index].copy()
            steps = np.concatenate([o_steps, self._steps[r]])
        finite = np.isfinite(values)
        envelope = np.where(finite, values, np.nan)
        last_v = np.concatenate([o_last, values])
        lo = np.concatenate([o_lo, envelope])
        hi = np.concatenate([o_hi, envelope])
        bad = np.concatenate([o_bad, have & ~finite])
        keep = np.concatenate([o_have, have])
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
            size = self._rows.nbytes + self._steps.nbytes
            size += getattr(self, "_present", np.zeros(0)).nbytes
            return size + (self._overview.nbytes if self._overview else 0)

"""Fixed-capacity decimation of row streams: the history's overview of old steps.

A bucket summarizes consecutive rows: its first step, the last value present
in each column, the finite minimum and maximum, whether a NaN or infinity was
seen, and whether the column had any value at all. When every bucket is used,
neighbours merge pairwise and the bucket size doubles, so capacity is fixed
and a million steps cost what a thousand do.
"""

from __future__ import annotations

import numpy as np

_FEW_ROWS = 8  # up to this many rows a bucket, _summarize_few's elementwise passes cost less


class Buckets:
    """`capacity` buckets over `columns` float columns; see the module doc."""

    def __init__(self, capacity: int, columns: int) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number of at least 2")
        self.capacity = capacity
        self.size = 1  # rows per bucket
        self.n = 0  # buckets in use, the last possibly still open
        self.open_fill = 0  # rows in the open bucket; 0 when none is open
        shape = (capacity, columns)
        self.first = np.zeros(capacity)
        self.last = np.full(shape, np.nan)
        self.lo = np.full(shape, np.nan)
        self.hi = np.full(shape, np.nan)
        self.bad = np.zeros(shape, dtype=bool)
        self.have = np.zeros(shape, dtype=bool)

    @property
    def nbytes(self) -> int:
        """Memory held, fixed at construction."""
        arrays = (self.first, self.last, self.lo, self.hi, self.bad, self.have)
        return sum(a.nbytes for a in arrays)

    def add(self, steps: np.ndarray, rows: np.ndarray, present: np.ndarray) -> None:
        """Fold consecutive rows (oldest first) into the buckets."""
        i, m = 0, len(steps)
        while i < m:
            if self.open_fill:
                take = min(self.size - self.open_fill, m - i)
                part = _summarize(
                    steps[i : i + take, None], rows[None, i : i + take], present[None, i : i + take]
                )
                self._merge_into(self.n - 1, part)
                self.open_fill = (self.open_fill + take) % self.size
                i += take
            else:
                full = min((m - i) // self.size, self.capacity - self.n)
                take = full * self.size if full else m - i
                groups = max(full, 1)
                shape = (groups, take // groups)
                part = _summarize(
                    steps[i : i + take].reshape(shape),
                    rows[i : i + take].reshape(shape + rows.shape[1:]),
                    present[i : i + take].reshape(shape + present.shape[1:]),
                )
                self._write(self.n, part)
                self.n += groups
                self.open_fill = 0 if full else take
                i += take
            if self.n == self.capacity and not self.open_fill:
                self._compact()

    def column(self, index: int):
        """(first steps, last, lo, hi, bad, have) of one column over the used buckets."""
        n = self.n
        return (
            self.first[:n].copy(),
            self.last[:n, index].copy(),
            self.lo[:n, index].copy(),
            self.hi[:n, index].copy(),
            self.bad[:n, index].copy(),
            self.have[:n, index].copy(),
        )

    def _write(self, start: int, part: tuple) -> None:
        first, last, lo, hi, bad, have = part
        end = start + len(first)
        self.first[start:end] = first
        self.last[start:end], self.lo[start:end], self.hi[start:end] = last, lo, hi
        self.bad[start:end], self.have[start:end] = bad, have

    def _merge_into(self, index: int, part: tuple) -> None:
        _, last, lo, hi, bad, have = part
        self.last[index] = np.where(have[0], last[0], self.last[index])
        self.lo[index] = np.fmin(self.lo[index], lo[0])
        self.hi[index] = np.fmax(self.hi[index], hi[0])
        self.bad[index] |= bad[0]
        self.have[index] |= have[0]

    def _compact(self) -> None:
        half = self.capacity // 2
        a, b = slice(0, None, 2), slice(1, None, 2)
        self.first[:half] = self.first[a]
        self.last[:half] = np.where(self.have[b], self.last[b], self.last[a])
        self.lo[:half] = np.fmin(self.lo[a], self.lo[b])
        self.hi[:half] = np.fmax(self.hi[a], self.hi[b])
        self.bad[:half] = self.bad[a] | self.bad[b]
        self.have[:half] = self.have[a] | self.have[b]
        self.last[half:] = self.lo[half:] = self.hi[half:] = np.nan
        self.bad[half:] = self.have[half:] = False
        self.n = half
        self.size *= 2


def _summarize(steps: np.ndarray, values: np.ndarray, present: np.ndarray) -> tuple:
    """Summaries of groups: inputs shaped (groups, rows, ...); rows collapse.

    `values` float64 and `present` bool, as the stores keep them; what comes
    back may share memory with them (the buckets copy it at once).
    """
    if values.shape[1] == 1:  # a bucket a row (a run's first folds): nothing to reduce
        values, present = values[:, 0], present[:, 0]
        isfinite = np.isfinite(values)
        envelope = np.where(present & isfinite, values, np.nan)
        last = np.where(present, values, np.nan)
        return steps[:, 0], last, envelope, envelope, present & ~isfinite, present
    if values.shape[1] <= _FEW_ROWS:
        return _summarize_few(steps, values, present)
    # Rows last and contiguous: numpy reduces the middle axis of (groups, rows,
    # columns) 4-6 times slower than a contiguous last one (~345 against 52-92
    # us for 4,096 rows of the four scalars, in buckets of 64-1,024 rows).
    values = np.ascontiguousarray(np.moveaxis(values, 1, -1))
    present = np.ascontiguousarray(np.moveaxis(present, 1, -1))
    isfinite = np.isfinite(values)
    finite = present & isfinite
    with np.errstate(invalid="ignore"):
        lo = np.where(finite, values, np.inf).min(axis=-1)
        hi = np.where(finite, values, -np.inf).max(axis=-1)
    any_finite = finite.any(axis=-1)
    lo = np.where(any_finite, lo, np.nan)
    hi = np.where(any_finite, hi, np.nan)
    have = present.any(axis=-1)
    rows = values.shape[-1]
    # The last present row of each group and column (the last row where none is;
    # `have` then blanks it), read from the flat array: take_along_axis builds
    # index grids and costs several times as much.
    last_row = rows - 1 - np.argmax(present[..., ::-1], axis=-1)
    flat_at = np.arange(0, last_row.size * rows, rows).reshape(last_row.shape) + last_row
    last = np.where(have, values.reshape(-1)[flat_at], np.nan)
    bad = (present & ~isfinite).any(axis=-1)
    return steps[:, 0], last, lo, hi, bad, have


def _summarize_few(steps: np.ndarray, values: np.ndarray, present: np.ndarray) -> tuple:
    # _summarize for buckets of a few rows: a pass a row, elementwise over all
    # the groups, where reducing an axis of 2-8 costs numpy's loop per element.
    last = np.full(values.shape[:1] + values.shape[2:], np.nan, dtype=values.dtype)
    lo, hi = last.copy(), last.copy()
    bad = np.zeros(last.shape, dtype=bool)
    have = bad.copy()
    for row in range(values.shape[1]):
        value, here = values[:, row], present[:, row]
        isfinite = np.isfinite(value)
        envelope = np.where(here & isfinite, value, np.nan)
        np.fmin(lo, envelope, out=lo)  # fmin and fmax pass over NaN
        np.fmax(hi, envelope, out=hi)
        np.copyto(last, value, where=here)
        bad |= here & ~isfinite
        have |= here
    return steps[:, 0], last, lo, hi, bad, have


def reduce_rows(steps, last, lo, hi, bad, points: int):
    """Thin one series to `points` spans with the same summary rules."""
    starts = np.linspace(0, len(steps), points + 1).astype(int)[:-1]
    ends = np.append(starts[1:], len(steps))
    with np.errstate(invalid="ignore"):
        lo_r = np.fmin.reduceat(lo, starts)
        hi_r = np.fmax.reduceat(hi, starts)
    bad_r = np.logical_or.reduceat(bad, starts)
    return steps[starts], last[ends - 1], lo_r, hi_r, bad_r

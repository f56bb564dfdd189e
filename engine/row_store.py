"""Float rows over training steps, bounded: the newest at full resolution, the rest in buckets.

engine.history keeps two of these: the scalars every step carries (the loss
and its norms), and the layers' statistics, which only the steps that
measured them carry. Apart, a fast run's plain steps write and fold four
columns, not the layers' dozens too (a hundred on the block model); on the
regression preset's 0.1 ms steps those wide folds and writes cost the run
2-3% through the caches they emptied.
"""

from __future__ import annotations

import numpy as np

from engine.buckets import Buckets


class RowStore:
    """`columns` float columns: the newest `window` rows as they are, older ones in buckets.

    Each row has a step, its values (NaN for a value missing or trained into
    NaN) and a `present` mask telling a missing value (False) from a NaN one.
    When the window fills, its older half folds into the buckets
    (engine.buckets), so memory and a column's read are bounded whatever the
    run's length.
    """

    def __init__(self, columns: int, window: int, buckets: int) -> None:
        self.window = window
        self.steps = np.zeros(window)
        self.rows = np.full((window, columns), np.nan)
        self.present = np.zeros((window, columns), dtype=bool)
        self.n = 0  # rows in the window
        self.overview = Buckets(buckets, columns)
        self._missing_row = np.full(columns, np.nan)

    @property
    def nbytes(self) -> int:
        """Memory held, fixed at construction."""
        arrays = (self.steps, self.rows, self.present, self._missing_row)
        return sum(a.nbytes for a in arrays) + self.overview.nbytes

    def open_row(self, step: float) -> int:
        """The window's next row, for `step`: its index, to fill and then `commit`.

        Folds the older half of a full window first. Until committed, the row
        is not part of the store (a caller may find it had nothing to keep).
        """
        if self.n == self.window:
            self._fold_half()
        self.steps[self.n] = step
        return self.n

    def commit(self) -> None:
        """Keep the row `open_row` gave."""
        self.n += 1

    def add_block(self, steps: np.ndarray, values: np.ndarray, present: np.ndarray) -> None:
        """Rows at `steps` whose first columns are `values` (k x m) and the rest missing.

        `present` is the rows' masks (k x all columns), or one mask for every row.
        """
        m, done = values.shape[1], 0
        per_row = np.ndim(present) == 2
        while done < len(steps):
            if self.n == self.window:
                self._fold_half()
            n = self.n
            k = min(len(steps) - done, self.window - n)
            self.steps[n : n + k] = steps[done : done + k]
            if m < self.rows.shape[1]:
                self.rows[n : n + k, m:] = self._missing_row[m:]
            self.rows[n : n + k, :m] = values[done : done + k]
            self.present[n : n + k] = present[done : done + k] if per_row else present
            self.n += k
            done += k

    def column(self, index: int) -> tuple[np.ndarray, ...]:
        """(steps, last value, finite lo, finite hi, non-finite, present) of one column.

        The buckets' rows first, then the window's; a window row's lo and hi
        are its value where finite, NaN where not.
        """
        o_steps, o_last, o_lo, o_hi, o_bad, o_have = self.overview.column(index)
        values = self.rows[: self.n, index]
        have = self.present[: self.n, index]
        finite = np.isfinite(values)
        envelope = np.where(finite, values, np.nan)
        return (
            np.concatenate([o_steps, self.steps[: self.n]]),
            np.concatenate([o_last, values]),
            np.concatenate([o_lo, envelope]),
            np.concatenate([o_hi, envelope]),
            np.concatenate([o_bad, have & ~finite]),
            np.concatenate([o_have, have]),
        )

    def _fold_half(self) -> None:
        half = self.window // 2
        self.overview.add(self.steps[:half], self.rows[:half], self.present[:half])
        self.steps[:half] = self.steps[half:]
        self.rows[:half] = self.rows[half:]
        self.present[:half] = self.present[half:]
        self.n = half

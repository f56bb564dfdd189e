"""The overview's bucket summaries (engine.buckets) against a plain per-bucket reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.buckets import Buckets, _summarize


def reference(steps, values, present):
    """Each group's summary, one group and column at a time, in plain Python."""
    groups, rows, columns = values.shape
    out = {k: np.full((groups, columns), np.nan) for k in ("last", "lo", "hi")}
    bad = np.zeros((groups, columns), dtype=bool)
    have = np.zeros((groups, columns), dtype=bool)
    for g in range(groups):
        for c in range(columns):
            seen = [float(values[g, r, c]) for r in range(rows) if present[g, r, c]]
            finite = [v for v in seen if math.isfinite(v)]
            if seen:
                out["last"][g, c], have[g, c] = seen[-1], True
            if finite:
                out["lo"][g, c], out["hi"][g, c] = min(finite), max(finite)
            bad[g, c] = any(not math.isfinite(v) for v in seen)
    return steps[:, 0], out["last"], out["lo"], out["hi"], bad, have


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 9, 64])
def test_each_summary_is_the_plain_one(rows):
    # NaN and infinity in values present, values missing, and a column never present.
    rng = np.random.default_rng(rows)
    groups = 256 // rows + 1
    steps = np.arange(groups * rows, dtype=float).reshape(groups, rows)
    values = rng.normal(size=(groups, rows, 4))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[rng.random(values.shape) < 0.05] = -np.inf
    values[rng.random(values.shape) < 0.05] = np.inf
    values[rng.random(values.shape) < 0.05] = 0.0
    present = rng.random(values.shape) < 0.7
    present[..., 3] = False
    got, want = _summarize(steps, values, present), reference(steps, values, present)
    for name, a, b in zip(("first", "last", "lo", "hi", "bad", "have"), got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert np.array_equal(a, b, equal_nan=True), name


def test_a_million_rows_fold_into_a_fixed_capacity():
    buckets = Buckets(64, 2)
    present = np.ones((4096, 2), dtype=bool)
    for k in range(250):
        rows = np.ones((4096, 2))
        rows[10, 1] = np.inf if k == 0 else 1.0  # the run's one infinity, at step 10
        buckets.add(np.arange(4096.0) + 4096 * k, rows, present)
    assert buckets.n <= 64 and buckets.size >= 1_000_000 // 64
    first, last, lo, hi, bad, have = buckets.column(1)
    assert bad[0] and not bad[1:].any() and have.all()
    assert np.all(lo == 1.0) and np.all(hi == 1.0)

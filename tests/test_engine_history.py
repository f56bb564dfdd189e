"""The bounded history: memory stays put, plots stay small, NaN and inf stay visible."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from engine.history import History
from engine.records import Histogram, LayerStats, StepRecord


def record(step: int, loss: float, captured: bool = True, act: bool = False, **layer) -> StepRecord:
    stats = LayerStats(
        grad_norm=layer.get("grad_norm", 1.0),
        raw_grad_norm=layer.get("grad_norm", 1.0),
        grad_mean=layer.get("grad_mean", 0.5) if captured else None,
        grad_std=0.25 if captured else None,
        act_mean=0.1 if act else None,
    )
    histograms = None
    if act:
        histograms = {"act": {"h1": Histogram(lo=0.0, hi=1.0, counts=(1.0, 2.0))}}
    return StepRecord(
        step=step,
        epoch=step // 100,
        loss=loss,
        grad_norm=layer.get("grad_norm", 1.0),
        grad_norm_clipped=min(layer.get("grad_norm", 1.0), 1.0),
        clipped_frac=0.0 if captured else None,
        layers={"h1": stats, "o": stats},
        histograms=histograms,
        captured=captured,
        activations_captured=act,
    )


def test_100k_records_stay_within_the_bound():
    history = History()  # the session's default: window 2048, 1024 buckets
    history.append(record(0, 0.0, act=True))
    first = history.memory_bytes()
    sizes = {}
    for step in range(1, 100_000):
        history.append(record(step, float(step), captured=step % 3 == 0, act=step % 10 == 0))
        if step in (2048, 2049, 10_000, 50_000):
            sizes[step] = history.memory_bytes()
    assert set(sizes.values()) == {first}
    assert history.memory_bytes() == first
    assert history.count == history.version == 100_000
    assert history.latest.step == 99_999
    assert history.latest_captured.step == 99_999  # 99999 % 3 == 0
    assert history.latest_activations.step == 99_990

    for key in ("loss", "grad_norm", "clipped_frac", "h1.grad_mean", "o.grad_norm", "h1.act_mean"):
        for max_points in (400, 50):
            series = history.series(key, max_points=max_points)
            assert 0 < len(series) <= max_points, key
            assert all(len(a) == len(series) for a in (series.values, series.lo, series.hi))
            assert np.all(np.diff(series.steps) > 0), key
    loss = history.series("loss")
    assert loss.steps[0] == 0 and loss.values[-1] == 99_999
    assert np.nanmin(loss.lo) == 0 and np.nanmax(loss.hi) == 99_999
    assert np.all(loss.lo <= loss.hi)
    assert not loss.nonfinite.any()

    recent = history.series("loss", max_points=100, last=1000)
    assert 0 < len(recent) <= 100
    assert recent.steps[0] >= 99_000 and recent.values[-1] == 99_999


def test_recent_window_is_full_resolution():
    history = History(window=64, buckets=8)
    for step in range(40):
        history.append(record(step, float(step) * 2, captured=step % 4 == 0))
    loss = history.series("loss", max_points=1000)
    assert loss.steps.tolist() == list(range(40))
    assert loss.values.tolist() == [2.0 * s for s in range(40)]
    # A statistic that was not captured on a step is missing, not NaN.
    captured = history.series("h1.grad_mean", max_points=1000)
    assert captured.steps.tolist() == list(range(0, 40, 4))
    assert not np.isnan(captured.values).any()


@pytest.mark.parametrize("fold", [False, True])
def test_nan_and_inf_survive_the_history(fold):
    history = History(window=16, buckets=4)
    bad = {3: math.nan, 4: math.inf, 5: -math.inf}
    for step in range(12):
        history.append(
            record(
                step, bad.get(step, 1.0), grad_norm=bad.get(step, 2.0), grad_mean=bad.get(step, 0.5)
            )
        )
    if fold:  # push the bad steps out of the window into the overview
        for step in range(12, 400):
            history.append(record(step, 1.0))
    for key in ("loss", "grad_norm", "h1.grad_mean", "o.grad_norm"):
        series = history.series(key, max_points=1000)
        assert series.nonfinite.any(), key
        flagged = series.steps[series.nonfinite]
        assert all(step <= 5 for step in flagged), key
        # the finite envelope never holds NaN or inf where there were finite values
        finite = ~np.isnan(series.lo)
        assert np.isfinite(series.lo[finite]).all() and np.isfinite(series.hi[finite]).all()
        if not fold:
            values = dict(zip(series.steps.tolist(), series.values.tolist(), strict=True))
            assert math.isnan(values[3])
            assert values[4] == math.inf and values[5] == -math.inf
            assert series.nonfinite.tolist() == [s in bad for s in range(12)]
            assert np.isnan(series.lo[3:6]).all() and np.isnan(series.hi[3:6]).all()
        # decimated to very few points, the flag still shows
        assert history.series(key, max_points=2).nonfinite.any(), key


def test_clear_forgets_everything():
    history = History(window=8, buckets=4)
    for step in range(30):
        history.append(record(step, 1.0))
    history.clear()
    assert history.count == history.version == 0
    assert history.latest is None and history.layer_names == []
    assert len(history.series("loss")) == 0
    history.append(record(0, 5.0))
    assert history.series("loss").values.tolist() == [5.0]


def test_unknown_key_is_an_empty_series():
    history = History()
    assert len(history.series("loss")) == 0
    history.append(record(0, 1.0))
    assert len(history.series("nope.grad_std")) == 0


def test_timestep_rows_are_bounded():
    history = History(window=16, buckets=4, timestep_rows=32)
    for step in range(500):
        base = record(step, 1.0)
        history.append(StepRecord(**{**base.__dict__, "timestep_grad_norms": (1.0, 2.0, 3.0)}))
    steps, rows = history.timestep_matrix()
    assert len(steps) <= 32 and rows.shape == (len(steps), 3)
    assert steps[-1] == 499 and np.all(np.diff(steps) > 0)


def test_reading_while_writing_from_another_thread():
    history = History(window=64, buckets=16)
    done = threading.Event()
    errors: list[BaseException] = []

    def write():
        try:
            for step in range(20_000):
                history.append(record(step, float(step)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while not done.is_set() or reads == 0:
        series = history.series("loss", max_points=100)
        assert len(series.steps) == len(series.values) <= 100
        assert np.all(np.diff(series.steps) > 0)
        reads += 1
    writer.join()
    assert not errors
    assert history.count == 20_000


def _sentinel(step: int, loss: float, norm: float) -> StepRecord:
    # What the probe records on a step that carried the sentinels only.
    from engine.recording import blank_layers

    return StepRecord(
        step=step, epoch=0, loss=loss, grad_norm=norm, grad_norm_clipped=norm,
        clipped_frac=None, layers=blank_layers(["h1", "o"]), captured=False,
    )  # fmt: skip


@pytest.mark.parametrize("window", [16, 2048])
def test_sentinel_rows_queued_in_blocks_read_in_order(window):
    history = History(window=window, buckets=64)
    history.append(record(0, 1.0, grad_mean=0.5))
    for step in range(1, 101):
        history.append(_sentinel(step, 1.0 / step, math.inf if step == 50 else 2.0 * step))
    history.append(record(101, 0.5, grad_mean=0.75))
    for step in range(102, 131):
        history.append(_sentinel(step, math.nan if step == 120 else 0.25, 3.0))
    assert history.count == 131 and history.latest.step == 130
    loss = history.series("loss", max_points=1000)
    if window == 2048:  # all at full resolution, in order, NaN kept
        assert loss.steps.tolist() == list(range(131))
        assert loss.values[100] == pytest.approx(0.01) and math.isnan(loss.values[120])
        assert loss.nonfinite.tolist() == [s == 120 for s in range(131)]
        norm = history.series("grad_norm", max_points=1000)
        assert norm.nonfinite[50] and norm.values[99] == pytest.approx(198.0)
    else:  # folded into buckets: every step still accounted for, the NaN flagged
        assert loss.steps[0] == 0 and loss.steps[-1] == 130
        assert loss.nonfinite.any()
    # Layer statistics only where a step measured them.
    mean = history.series("h1.grad_mean", max_points=1000)
    assert mean.values.tolist() == [0.5, 0.75]
    if window == 2048:
        assert mean.steps.tolist() == [0, 101]


@pytest.mark.parametrize("window", [16, 2048])
def test_rows_queued_with_captured_records_read_as_rows_written_at_once(window):
    # Captured records wait in the queue in their place (a fast run's captures
    # no longer write the light rows before them): every series reads as in a
    # history whose every row was written as it came (a read writes the queue).
    import random

    rng = random.Random(window)
    queued, at_once = History(window=window, buckets=64), History(window=window, buckets=64)
    for step in range(1500):
        kind = rng.random()
        if kind < 0.05:
            rec = record(step, rng.random(), grad_mean=rng.choice([0.1, math.nan, -math.inf]))
        elif kind < 0.07:
            rec = record(step, rng.random(), captured=False, act=True)
        else:
            rec = _sentinel(step, rng.choice([rng.random(), math.nan]), rng.random())
        queued.append(rec)
        at_once.append(rec)
        at_once.series("loss")  # writes what is queued
    assert len(queued._light) > 0  # something was still queued when read
    for key in ("loss", "grad_norm", "clipped_frac", "h1.grad_mean", "o.act_mean"):
        a, b = queued.series(key, max_points=5000), at_once.series(key, max_points=5000)
        for field in ("steps", "values", "lo", "hi", "nonfinite"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=key)
    assert queued.latest_captured is at_once.latest_captured
    assert queued.latest_activations is at_once.latest_activations


def test_light_steps_appended_without_the_lock_are_never_lost_to_a_reader():
    # The writer queues a plain step without the lock while a reader takes
    # the queue into the stores: every step must land once, in order.
    import sys
    import time

    class YieldingList(list):
        """A queue whose append lets the reader run between its lookup and the append."""

        def append(self, item):
            time.sleep(0)
            super().append(item)

    history = History(window=2048, buckets=64)  # the scalars' window holds 8,192 steps
    history._light = YieldingList()
    steps = 8000
    done = threading.Event()
    counts: list[int] = []

    def write():
        try:
            for step in range(steps):
                if step % 97 == 0:
                    history.append(record(step, float(step)))  # now and then a captured one
                else:
                    history.append(_sentinel(step, float(step), 1.0))
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter lets
    try:
        writer = threading.Thread(target=write)
        writer.start()
        while not done.is_set():
            history.series("loss", max_points=50)
            counts.append(history.count)
        writer.join()
    finally:
        sys.setswitchinterval(interval)
    assert counts == sorted(counts)  # the count never goes back
    assert history.count == history.version == steps
    loss = history.series("loss", max_points=10_000)
    assert loss.steps.tolist() == list(range(steps))
    assert loss.values.tolist() == [float(s) for s in range(steps)]
    assert history.series("h1.grad_mean", max_points=10_000).steps.tolist() == list(
        range(0, steps, 97)
    )


def test_few_measured_records_wait_unwritten():
    # A run that captures every step, and nobody reading (a headless run):
    # the queue holds a few measured records, never a block of them.
    history = History(window=2048, buckets=64)
    for step in range(500):
        history.append(record(step, float(step), act=True))
        assert len(history._full) < 16
    assert history.count == 500
    assert history.series("h1.act_mean", max_points=1000).steps.tolist() == list(range(500))

"""What the config fuzz checks after each run: the History, the exports, the plots.

NaN and infinity are data: each check holds them to come out as such.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np

from engine.export import SCALAR_KEYS
from engine.session import TrainingSession


def strict_json(line: str) -> dict:
    """Parse one JSON line, refusing the non-standard NaN/Infinity constants."""

    def refuse(name: str):
        raise AssertionError(f"non-strict JSON constant {name} in {line[:80]}")

    return json.loads(line, parse_constant=refuse)


def _same(exported, value) -> bool:
    """An exported JSON value stands for `value` (non-finite as the contract's strings)."""
    if value is None:
        return exported is None
    if isinstance(value, float) and math.isnan(value):
        return exported == "NaN"
    if isinstance(value, float) and math.isinf(value):
        return exported == ("Infinity" if value > 0 else "-Infinity")
    return exported == value


def check_history(session: TrainingSession, records) -> None:
    """Every column reads back; non-finite values are flagged, never hidden; losses agree."""
    history = session.history
    assert history.count == len(records)
    assert history.columns, "no columns after training"
    for key in history.columns:
        series = history.series(key, max_points=50)
        n = len(series.steps)
        assert len(series.values) == len(series.lo) == len(series.hi) == len(series.nonfinite) == n
        finite = np.isfinite(series.values)
        # A non-finite value is flagged as such, never hidden in the envelope.
        assert np.all(series.nonfinite[~finite])
        assert not np.any(np.isinf(series.lo)) and not np.any(np.isinf(series.hi))
    for record in records:
        loss = history.series("loss").values[record.step]
        assert (math.isnan(loss) and math.isnan(record.loss)) or loss == record.loss


def check_jsonl(path, records) -> None:
    """The JSONL export is strict JSON, one line a record, every value as recorded."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
    for line, record in zip(lines, records, strict=True):
        data = strict_json(line)
        for key in SCALAR_KEYS:
            assert _same(data[key], getattr(record, key)), (key, data[key])
        assert set(data["layers"]) == set(record.layers)
        for name, stats in record.layers.items():
            for stat, value in stats.as_dict().items():
                assert _same(data["layers"][name][stat], value), (name, stat)


def check_csv(path, records) -> None:
    """The CSV export has one row a record, non-finite values as nan/inf."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert int(row["step"]) == record.step
        for key in ("loss", "grad_norm", "grad_norm_clipped"):
            text, value = row[key], getattr(record, key)
            assert text in ("nan", "inf", "-inf") or math.isfinite(float(text)), text
            parsed = float(text)
            assert (math.isnan(parsed) and math.isnan(value)) or parsed == value


# -- headless rendering of the dashboard's plots --------------------------------------
try:
    from tui.widgets.flow_bars import FlowBars
    from tui.widgets.grad_mean_plot import GradMeanPlot
    from tui.widgets.grad_norm_plot import GradNormPlot
    from tui.widgets.histogram_panel import HistogramPanel
    from tui.widgets.loss_plot import LossPlot
    from tui.widgets.panel import FrameContext
except ImportError:  # the dashboard is not there: the engine checks still run
    FrameContext = None


class _FakeCanvas:
    """Stands in for a mounted Canvas: keeps what the panel shows."""

    def __init__(self) -> None:
        self.cells = None

    def show(self, cells) -> None:
        self.cells = cells


def _headless(cls, surface, *args):
    """An unmounted panel of `cls` drawing onto `surface` instead of its child widget."""
    subclass = type(f"Headless{cls.__name__}", (cls,), {"surface": property(lambda s: surface)})
    return subclass(*args)


def render_plots(session: TrainingSession, status) -> None:
    """Every plot's data through its own transforms and ticks, then its renderer.

    The line plots' `lines` must hold finite numbers only and list the
    non-finite steps as marks; every panel draws into a stand-in canvas. The real app renders the same data
    in test_dashboard_renders_extreme_runs.
    """
    history = session.history
    ctx = FrameContext(history, status, session.config, tuple(history.layer_names), history.version)
    loss_bad = bool(np.any(history.series("loss").nonfinite))
    for cls in (LossPlot, GradMeanPlot, GradNormPlot):
        canvas = _FakeCanvas()
        panel = _headless(cls, canvas)
        lines = panel.lines(ctx, 50)
        for line in lines:
            assert len(line.x) == len(line.y)
            assert np.all(np.isfinite(line.x)) and np.all(np.isfinite(line.y)), line
            assert np.all(np.isfinite(line.bad_x)), line
        if cls is LossPlot and loss_bad:
            assert any(len(line.bad_x) for line in lines), "a non-finite loss went unmarked"
        panel.draw(ctx, 60, 16)
        rows = canvas.cells.plain.split("\n")
        assert len(rows) == 16 and all(len(row) == 60 for row in rows), rows
        if cls is LossPlot and loss_bad:
            assert "NaN@" in canvas.cells.plain, canvas.cells.plain
    latest = history.latest
    bad_bar = any(
        s.grad_norm is not None and not math.isfinite(s.grad_norm) for s in latest.layers.values()
    )
    for cls, args in ((FlowBars, ()), (HistogramPanel, ("weight",)), (HistogramPanel, ("act",))):
        canvas = _FakeCanvas()
        _headless(cls, canvas, *args).draw(ctx, 60, 16)
        text = canvas.cells.plain
        if cls is FlowBars and bad_bar:
            assert "▓" in text, text  # a non-finite gradient norm: the red full column


def diagnose_run(session: TrainingSession) -> None:
    """The diagnosis of the run gives a summary line, whatever its numbers."""
    try:
        from engine.diagnosis import diagnose, summary_line
    except ImportError:
        return
    assert summary_line(diagnose(session.history, session.config))

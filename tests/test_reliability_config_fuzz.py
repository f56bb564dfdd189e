"""Random valid configs, extreme ones included, never crash anything downstream.

Each example trains a few steps in a TrainingSession, then reads every series
of the History, exports JSONL and CSV (both parsed back strictly), diagnoses
the run and renders every dashboard plot headless. NaN and infinity are data:
they must come out as such everywhere, never as an exception.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import ACTIVATIONS, INITS, ConfigError, RunConfig
from engine.export import SCALAR_KEYS, write_records
from engine.session import ERROR, FINISHED, PAUSED, STOPPED, TrainingSession

WAIT = 60.0  # seconds: a bound for a hung thread, never a speed expectation
STEPS = 4  # steps trained per example (fewer when the run is shorter)


def _log_uniform(lo: float, hi: float):
    """Floats spread over decades, with both ends included as explicit examples."""
    return st.one_of(
        st.sampled_from([lo, hi]),
        st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10**e)),
    )


@st.composite
def run_configs(draw) -> RunConfig:
    """A valid RunConfig from the whole space the form allows, scaled down to run fast."""
    dataset = draw(st.sampled_from(["ball", "regression", "sequence"]))
    recurrent = dataset == "sequence"  # the rnn model and its timestep clipping
    n_samples = draw(st.sampled_from([2, 3, 17, 64]))
    batch_norm = draw(st.booleans())
    batch_size = draw(st.sampled_from([1, 2, 5, n_samples]).filter(lambda b: b <= n_samples))
    fields = dict(
        dataset=dataset,
        n_samples=n_samples,
        n_features=draw(st.integers(1, 12)),
        standardize_target=dataset == "regression" and draw(st.booleans()),
        seq_len=draw(st.integers(2, 12)),
        model="rnn" if recurrent else draw(st.sampled_from(["block", "shallow"])),
        n_layers=draw(st.sampled_from([1, 2, 5, 20])),
        hidden_units=draw(st.sampled_from([1, 3, 16, 64])),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        batch_norm=batch_norm,
        init=draw(st.sampled_from(INITS)),
        init_std=draw(_log_uniform(1e-4, 100.0)),
        seed=draw(st.integers(0, 2**31 - 1)),
        init_seed=draw(st.none() | st.integers(0, 1000)),
        optimizer=draw(st.sampled_from(["sgd", "adam"])),
        lr=draw(_log_uniform(1e-6, 1e3)),
        momentum=draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])),
        batch_size=batch_size,
        shuffle=draw(st.booleans()),
        epochs=draw(st.integers(1, 3)),
        clip=draw(st.sampled_from(["none", "value", "norm", "hook"] + ["timestep"] * recurrent)),
        clip_value=draw(_log_uniform(1e-3, 1e3)),
        max_norm=draw(_log_uniform(1e-3, 1e3)),
        norm_type=draw(st.sampled_from(["2", "inf"])),
        on_nonfinite=draw(st.sampled_from(["pause", "stop", "continue"])),
        capture_every=draw(st.integers(1, 3)),
        activation_every=draw(st.integers(1, 3)),
        device="cpu",
    )
    try:
        return RunConfig(**fields)
    except ConfigError as error:
        # The one documented rule the draw above does not avoid by itself.
        assert error.field == "batch_size" and "batch norm" in error.reason, error
        return RunConfig(**{**fields, "batch_norm": False})


def _train(config: RunConfig):
    records = []
    session = TrainingSession(config, on_record=records.append)
    try:
        for _ in range(STEPS):
            session.step(wait=True, timeout=WAIT)
        status = session.status()
    finally:
        assert session.stop(timeout=WAIT), "the session thread did not end"
    return session, status, records


def _strict_json(line: str) -> dict:
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


def _check_history(session: TrainingSession, records) -> None:
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


def _check_jsonl(path, records) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
    for line, record in zip(lines, records, strict=True):
        data = _strict_json(line)
        for key in SCALAR_KEYS:
            assert _same(data[key], getattr(record, key)), (key, data[key])
        assert set(data["layers"]) == set(record.layers)
        for name, stats in record.layers.items():
            for stat, value in stats.as_dict().items():
                assert _same(data["layers"][name][stat], value), (name, stat)


def _check_csv(path, records) -> None:
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
    import plotext

    from tui.plotting import padded_range
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


def _render_plots(session: TrainingSession, status) -> None:
    """Every plot's data through its own transforms and ticks, then through plotext.

    The line plots' `lines` must hand plotext finite numbers only (plotext
    raises on infinity) and list the non-finite steps as marks; the light
    renderers draw into a stand-in canvas. The real app renders the same data
    in test_dashboard_renders_extreme_runs.
    """
    history = session.history
    ctx = FrameContext(history, status, session.config, tuple(history.layer_names), history.version)
    loss_bad = bool(np.any(history.series("loss").nonfinite))
    for cls in (LossPlot, GradMeanPlot, GradNormPlot):
        panel = cls()
        lines = panel.lines(ctx, 50)
        drawn = [line for line in lines if len(line.x)]
        for line in lines:
            assert len(line.x) == len(line.y)
            assert np.all(np.isfinite(line.x)) and np.all(np.isfinite(line.y)), line
            assert np.all(np.isfinite(line.bad_x)), line
        if cls is LossPlot and loss_bad:
            assert any(len(line.bad_x) for line in lines), "a non-finite loss went unmarked"
        plotext.clear_figure()
        plotext.plotsize(60, 16)
        if drawn:
            ys = np.concatenate([line.y for line in drawn])
            lo, hi = padded_range(float(ys.min()), float(ys.max()))
            assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
            ticks, labels = panel.y_axis(lo, hi, 6)
            assert len(ticks) == len(labels) and all(math.isfinite(t) for t in ticks)
            plotext.ylim(lo, hi)
            plotext.yticks(ticks, labels)
            for line in drawn:
                plotext.plot(line.x.tolist(), line.y.tolist(), color=line.color)
        plotext.build()
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


def _diagnose(session: TrainingSession) -> None:
    try:
        from engine.diagnosis import diagnose, summary_line
    except ImportError:
        return
    assert summary_line(diagnose(session.history, session.config))


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(config=run_configs())
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_random_configs_never_crash(config, tmp_path_factory):
    session, status, records = _train(config)
    assert status.state != ERROR, f"{status.error}\n{session.error_detail}"
    assert status.state in (PAUSED, FINISHED, STOPPED)
    assert status.step == len(records) >= 1
    assert [r.step for r in records] == list(range(len(records)))
    if status.first_nonfinite is not None:
        assert not all(math.isfinite(r.loss) and math.isfinite(r.grad_norm) for r in records), (
            "a non-finite step was reported on a run that had none"
        )
    _check_history(session, records)
    directory = tmp_path_factory.mktemp("export")
    assert write_records(str(directory / "run.jsonl"), records) == len(records)
    assert write_records(str(directory / "run.csv"), records) == len(records)
    _check_jsonl(directory / "run.jsonl", records)
    _check_csv(directory / "run.csv", records)
    _diagnose(session)
    if FrameContext is not None:
        _render_plots(session, status)


def test_the_extremes_together(tmp_path):
    """The corner the brief names, as one fixed example: it must diverge, not crash."""
    config = RunConfig(
        n_samples=64,
        n_layers=20,
        hidden_units=64,
        activation="relu",
        init="normal",
        init_std=100.0,
        lr=1e3,
        momentum=0.99,
        batch_size=1,
        on_nonfinite="continue",
        device="cpu",
    )
    session, status, records = _train(config)
    assert status.state == PAUSED and status.first_nonfinite is not None
    assert any(not math.isfinite(r.loss) for r in records)
    _check_history(session, records)
    write_records(str(tmp_path / "x.jsonl"), records)
    _check_jsonl(tmp_path / "x.jsonl", records)
    assert (
        '"NaN"' in (tmp_path / "x.jsonl").read_text()
        or '"Infinity"' in (tmp_path / "x.jsonl").read_text()
    )
    if FrameContext is not None:
        _render_plots(session, status)


EXTREME_RUNS = {
    "diverged at once": RunConfig(
        n_samples=64, n_layers=20, hidden_units=64, init="normal", init_std=100.0, lr=1e3,
        batch_size=1, momentum=0.99, on_nonfinite="continue", device="cpu",
    ),
    "vanished": RunConfig(
        n_samples=64, n_layers=20, hidden_units=16, activation="sigmoid", init="normal",
        init_std=1e-4, batch_size=64, device="cpu",
    ),
    "exploding, clipped by hooks": RunConfig(
        dataset="regression", model="shallow", n_samples=64, hidden_units=15, batch_size=1,
        lr=1e3, clip="hook", clip_value=1e-3, shuffle=True, device="cpu",
    ),
    "rnn through time": RunConfig(
        dataset="sequence", model="rnn", n_samples=16, n_features=3, seq_len=12,
        hidden_units=8, batch_size=4, init="normal", init_std=3.0, clip="timestep",
        activation_every=1, device="cpu",
    ),
}  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_dashboard_renders_extreme_runs():
    """The real app draws each extreme run, both views, and says NaN where there is one."""
    if FrameContext is None:
        pytest.skip("the dashboard is not built")
    import asyncio

    from tui.app import GradTUI
    from tui.testing import screen_text, wait_for_frame

    async def scenario():
        app = GradTUI(RunConfig(device="cpu"), None)
        async with app.run_test(size=(120, 40)) as pilot:
            for label, config in EXTREME_RUNS.items():
                session = TrainingSession(config)
                for _ in range(STEPS):
                    session.step(wait=True, timeout=WAIT)
                status = session.status()
                assert status.state != ERROR, status.error
                app.use_session(session, label)
                await wait_for_frame(pilot, app)
                gradients = screen_text(app)
                await pilot.press("d")
                await wait_for_frame(pilot, app)
                await pilot.press("d")
                if status.first_nonfinite is not None:
                    assert "NaN" in gradients, gradients
                assert app.session is session and session.status().state != ERROR

    asyncio.run(scenario())

"""Random valid configs, extreme ones included, never crash anything downstream.

Each example trains a few steps in a TrainingSession, then reads every series
of the History, exports JSONL and CSV (both parsed back strictly), diagnoses
the run and renders every dashboard plot headless. NaN and infinity are data:
they must come out as such everywhere, never as an exception.
"""

from __future__ import annotations

import math

import pytest
from fuzz_checks import (
    FrameContext,
    check_csv,
    check_history,
    check_jsonl,
    diagnose_run,
    render_plots,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import ACTIVATIONS, INITS, ConfigError, RunConfig
from engine.export import write_records
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
    check_history(session, records)
    directory = tmp_path_factory.mktemp("export")
    assert write_records(str(directory / "run.jsonl"), records) == len(records)
    assert write_records(str(directory / "run.csv"), records) == len(records)
    check_jsonl(directory / "run.jsonl", records)
    check_csv(directory / "run.csv", records)
    diagnose_run(session)
    if FrameContext is not None:
        render_plots(session, status)


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
    check_history(session, records)
    write_records(str(tmp_path / "x.jsonl"), records)
    check_jsonl(tmp_path / "x.jsonl", records)
    assert (
        '"NaN"' in (tmp_path / "x.jsonl").read_text()
        or '"Infinity"' in (tmp_path / "x.jsonl").read_text()
    )
    if FrameContext is not None:
        render_plots(session, status)


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

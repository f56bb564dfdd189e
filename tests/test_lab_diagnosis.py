"""The diagnosis: each preset's verdict after a few steps, and NaN-safe rules on made-up records."""

import math

import pytest

from engine.config import RunConfig
from engine.diagnosis import (
    VERDICTS,
    Diagnosis,
    describe,
    diagnose,
    diagnose_records,
    summary_line,
)
from engine.diagnosis_facts import fmt
from engine.history import History
from engine.presets import get_preset
from engine.records import LayerStats, NonFinite, StepRecord
from engine.trainer import Trainer

EXPECTED = {
    "sigmoid-normal": "vanishing",
    "relu-normal": "vanishing",
    "exploding": "exploding",
    "relu-kaiming": "healthy",
    "tanh-xavier": "healthy",
    "relu-normal-bn": "healthy",
    "clip-value": "healthy",
    "clip-norm": "healthy",
    "clip-hook": "healthy",
    "standardized": "healthy",
    "rnn-exploding": "exploding",
}


def _run(name: str, steps: int) -> tuple[History, RunConfig, NonFinite | None]:
    config = get_preset(name).config
    trainer = Trainer(config)
    history = History()
    try:
        # "exploding" needs a dozen steps to reach NaN; it stops there like the session.
        for _ in range(steps):
            history.append(trainer.step())
            if trainer.first_nonfinite is not None:
                break
    finally:
        trainer.close()
    return history, config, trainer.first_nonfinite


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_gets_its_verdict(name):
    steps = 40 if name == "exploding" else 6
    history, config, nonfinite = _run(name, steps)
    diagnosis = diagnose(history, config, nonfinite)
    assert diagnosis.verdict == EXPECTED[name], describe(diagnosis)
    assert diagnosis.headline.startswith(f"{diagnosis.verdict}: ")
    assert diagnosis.step == history.latest.step
    if diagnosis.verdict != "healthy":
        assert diagnosis.remedies
    # Without the session's NonFinite the history alone gives the same verdict.
    assert diagnose(history, config).verdict == diagnosis.verdict


def test_the_words_carry_the_numbers():
    history, config, nonfinite = _run("sigmoid-normal", 2)
    d = diagnose(history, config, nonfinite)
    assert "h1's gradient std is" in d.headline and "of h5's" in d.headline
    assert any("sigmoid" in e and "mean 0.5" in e for e in d.evidence)
    assert any("Xavier" in r for r in d.remedies) and any("batch norm" in r for r in d.remedies)

    history, config, nonfinite = _run("exploding", 40)
    d = diagnose(history, config, nonfinite)
    assert "total gradient norm grew" in d.headline
    assert f"at step {nonfinite.step} ({nonfinite.layer})" in d.headline
    assert any("standardize the target" in r for r in d.remedies)
    line = summary_line(d)
    assert line.startswith("exploding: ") and "\n" not in line

    history, config, _ = _run("clip-value", 3)
    d = diagnose(history, config)
    assert any(n.startswith("clipping active on ") for n in d.notes)
    assert "clipping active on" in summary_line(d)


# -- made-up records --------------------------------------------------------------------
def _record(step, loss=0.5, grad=1.0, layers=None, ts=None, clipped=None):
    layers = layers or {
        "h1": LayerStats(grad_std=1.0, grad_norm=1.0),
        "h2": LayerStats(grad_std=1.0, grad_norm=1.0),
        "o": LayerStats(grad_std=1.0, grad_norm=1.0),
    }
    return StepRecord(
        step=step,
        epoch=0,
        loss=loss,
        grad_norm=grad,
        grad_norm_clipped=grad,
        clipped_frac=clipped,
        layers=layers,
        timestep_grad_norms=ts,
        captured=True,
        activations_captured=True,
    )


def test_waiting_before_the_first_step():
    d = diagnose(History())
    assert d.verdict == "waiting" and d.step is None
    assert summary_line(d) == "waiting: no training step yet"


def test_nan_everywhere_never_crashes():
    nan, inf = math.nan, math.inf
    stats = LayerStats(
        grad_std=nan,
        grad_norm=nan,
        raw_grad_norm=nan,
        act_std=nan,
        act_mean=inf,
        act_zero_frac=nan,
        act_saturation=nan,
        update_ratio=inf,
    )
    records = [
        _record(
            0, loss=nan, grad=inf, layers={"h1": stats, "h2": stats, "o": stats}, ts=(nan, inf, 0.0)
        )
    ]
    d = diagnose_records(records, RunConfig())
    assert d.verdict == "exploding"
    assert "loss NaN at step 0" in d.headline
    assert describe(d) and summary_line(d)


def test_a_loss_that_goes_bad_names_the_first_bad_layer():
    good = LayerStats(grad_std=1.0, grad_norm=1.0, raw_grad_norm=1.0)
    bad = LayerStats(grad_std=math.nan, grad_norm=math.nan, raw_grad_norm=math.nan)
    records = [_record(0, layers={"h1": good, "h2": good, "o": good})]
    records.append(
        _record(1, loss=math.inf, grad=math.nan, layers={"h1": good, "h2": bad, "o": bad})
    )
    d = diagnose_records(records)
    assert d.verdict == "exploding" and "loss inf at step 1 (h2)" in d.headline


def test_dead_and_saturated_layers():
    dead = {
        "h1": LayerStats(grad_std=1.0, act_std=1.0, act_zero_frac=0.97),
        "h2": LayerStats(grad_std=1.0, act_std=1.0, act_zero_frac=0.5),
        "o": LayerStats(grad_std=1.0),
    }
    d = diagnose_records([_record(0, layers=dead)], RunConfig())
    assert d.verdict == "dead" and "97% of h1's activations" in d.headline

    sat = {
        "h1": LayerStats(grad_std=1.0, act_std=0.9, act_saturation=0.8),
        "h2": LayerStats(grad_std=1.0, act_std=0.9, act_saturation=0.1),
        "o": LayerStats(grad_std=1.0, act_saturation=1.0),
    }
    d = diagnose_records([_record(0, layers=sat)], RunConfig(activation="tanh"))
    assert d.verdict == "saturated" and "tanh saturates: 80% of h1's outputs" in d.headline


def test_the_output_layer_never_counts_as_saturated():
    # The output's "activation" is its own linear output; bounds mean nothing there.
    layers = {
        "h1": LayerStats(grad_std=1.0, act_std=1.0, act_saturation=0.0),
        "h2": LayerStats(grad_std=1.0, act_std=1.0, act_saturation=0.0),
        "o": LayerStats(grad_std=1.0, act_saturation=1.0),
    }
    assert diagnose_records([_record(0, layers=layers)]).verdict == "healthy"


def test_recurrent_growth_in_time_and_vanishing_in_time():
    exploding = [_record(0, ts=(2e6, 1e3, 2.0)), _record(1, ts=(1.0, 1.0, 1.0))]
    d = diagnose_records(exploding, RunConfig(dataset="sequence", model="rnn"))
    assert d.verdict == "exploding" and "grew 1e6× back through 3 time steps" in d.headline
    assert any("timestep" in r for r in d.remedies)
    vanishing = [_record(0, ts=(1e-9, 1e-3, 1.0))]
    d = diagnose_records(vanishing, RunConfig(dataset="sequence", model="rnn"))
    assert d.verdict == "vanishing" and "|dL/dh_1| is 1e-9 of |dL/dh_3|" in d.headline
    healthy = [_record(0, ts=(0.5, 0.8, 1.0))]
    assert diagnose_records(healthy).verdict == "healthy"


def test_clipping_verdict_when_clipping_holds_an_exploding_raw_gradient():
    records = [_record(0, grad=1.0, clipped=0.5), _record(1, grad=1e5, clipped=0.9)]
    d = diagnose_records(records, RunConfig(clip="value"))
    assert d.verdict == "clipping"
    assert "total gradient norm grew 1e5× in 1 steps" in d.headline
    assert d.notes == ("clipping active on 70% of gradient elements (recent steps)",)
    d = diagnose_records(records, RunConfig(clip="none"))
    assert d.verdict == "exploding"


def test_verdicts_and_number_format():
    assert set(VERDICTS) >= {"vanishing", "exploding", "healthy", "clipping", "saturated", "dead"}
    assert isinstance(diagnose(History()), Diagnosis)
    cases = {
        0.5: "0.5",
        13.0: "13",
        231.4: "231",
        1.4e-3: "1.4e-3",
        9.3e6: "9.3e6",
        1e20: "1e20",
        math.nan: "NaN",
        math.inf: "inf",
        0.0: "0",
        None: "—",
    }
    for value, text in cases.items():
        assert fmt(value) == text


def test_lab_modules_for_the_ui_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, engine.diagnosis, engine.compare, engine.config_io\n"
        "print(sorted(m for m in ('torch', 'textual', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""`gradtui run` on an RNN reports the heat map's gist: |dL/dh_1| / |dL/dh_T|."""

from __future__ import annotations

import math

from engine.headless import RunSummary, _timestep_line
from engine.history import History
from engine.records import LayerStats, StepRecord


def _history(rows) -> History:
    history = History()
    for step, row in enumerate(rows):
        stats = {"cell.weight_hh": LayerStats(grad_norm=1.0, raw_grad_norm=1.0)}
        history.append(
            StepRecord(step, 0, 1.0, 1.0, 1.0, layers=stats, timestep_grad_norms=tuple(row))
        )
    return history


def test_the_summary_names_the_time_ratio_now_and_at_its_worst():
    history = _history([[1e3, 10.0, 1e-3], [2.0, 1.0, 1.0], [math.nan, 1.0, 1.0]])
    line = _timestep_line(history)
    assert line.startswith("dL/dh_t: |dL/dh_1| / |dL/dh_3| = NaN at the last step (2)")
    assert line.endswith("largest 1e6 at step 0")
    summary = RunSummary(3, 1, 1.0, None, False, verdict="exploding: …", timesteps=line)
    lines = summary.lines()
    assert lines[-2] == line and lines[-1].startswith("verdict: ")


def test_no_time_line_for_models_without_time_steps():
    history = History()
    history.append(StepRecord(0, 0, 1.0, 1.0, 1.0, layers={"h1": LayerStats(grad_norm=1.0)}))
    assert _timestep_line(history) is None
    assert _timestep_line(None) is None
    assert "dL/dh_t" not in "\n".join(RunSummary(1, 1, 1.0, None, False).lines())

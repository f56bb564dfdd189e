"""More signals: the update/weight ratio (log, 1e-3 reference) and the activation saturation."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from engine.config import RunConfig
from engine.history import History
from engine.presets import PRESETS
from engine.records import LayerStats, StepRecord
from engine.session import TrainingSession
from tui.app import GradTUI
from tui.testing import press_step, screen_text, wait_for_frame
from tui.widgets.panel import FrameContext
from tui.widgets.signal_plots import SaturationPlot, UpdateRatioPlot, saturation_layers


def _context(layers: tuple[str, ...], config: RunConfig, steps: int = 5) -> FrameContext:
    history = History()
    for step in range(steps):
        stats = {
            name: LayerStats(
                grad_norm=1.0,
                update_ratio=math.nan if (step, i) == (3, 0) else 10.0 ** -(i + 2),
                act_saturation=0.1 * i,
            )
            for i, name in enumerate(layers)
        }
        history.append(StepRecord(step, 0, 1.0, 1.0, 1.0, layers=stats))
    status = TrainingSession(config).status()  # idle: no thread, no torch
    return FrameContext(history, status, config, layers, history.version)


def test_update_ratio_lines_are_log10_with_a_reference_at_1e_3():
    ctx = _context(("h1", "h2", "o"), RunConfig())
    lines = UpdateRatioPlot().lines(ctx, points=50)
    by_name = {line.name: line for line in lines}
    assert set(by_name) == {"h1", "h2", "o", "1e-3"}
    assert np.allclose(by_name["h2"].y, -3.0) and np.allclose(by_name["o"].y, -4.0)
    assert by_name["h1"].bad_x.tolist() == [3.0]  # the NaN step is marked, not dropped
    reference = by_name["1e-3"]
    assert np.allclose(reference.y, -3.0) and reference.x.tolist() == [0, 1, 2, 3, 4]
    assert not reference.legend


def test_saturation_hides_the_output_layer_and_shows_the_rnn_cell_once():
    block = _context(("h1", "h2", "o"), RunConfig(activation="sigmoid"))
    assert saturation_layers(block) == [("h1", "h1"), ("h2", "h2")]
    names = [line.name for line in SaturationPlot().lines(block, 50) if line.legend]
    assert names == ["h1", "h2"]
    rnn = RunConfig(dataset="sequence", model="rnn", n_features=1)
    ctx = _context(("cell.weight_ih", "cell.weight_hh", "o"), rnn)
    assert saturation_layers(ctx) == [("cell", "cell.weight_ih")]
    plot = SaturationPlot()
    assert plot.y_limits(ctx, plot.lines(ctx, 50)) == (0.0, 1.0)  # always the whole 0-100%
    ticks, labels = plot.y_axis(0.0, 1.0, 3)
    assert labels[0] == "0%" and labels[-1] == "100%"


def test_the_lab_view_shows_both_signals_for_a_sigmoid_net():
    async def scenario():
        app = GradTUI(PRESETS["sigmoid-normal"].config.replace(device="cpu"), "sigmoid-normal")
        async with app.run_test(size=(160, 48)) as pilot:
            await press_step(pilot, app, 2)
            await pilot.press("d", "d")
            await wait_for_frame(pilot, app)
            text = screen_text(app)
            assert "Update/weight ratio per layer (log)" in text
            assert "Activation saturation per layer" in text
            assert "·· 1e-3" in text  # the reference line's key
            legend = str(app.query_one(SaturationPlot).border_subtitle)
            assert "h1" in legend and "h5" in legend and "━o" not in legend

    asyncio.run(scenario())


def test_relu_has_no_saturation_and_says_why():
    async def scenario():
        app = GradTUI(PRESETS["relu-kaiming"].config.replace(device="cpu"), "relu-kaiming")
        async with app.run_test(size=(160, 48)) as pilot:
            await press_step(pilot, app, 1)
            await pilot.press("d", "d")
            await wait_for_frame(pilot, app)
            assert "relu has no bounded output" in screen_text(app)

    asyncio.run(scenario())

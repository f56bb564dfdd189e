"""The RNN heat map: binning, colours (log scale, NaN and zero apart), and its place on screen."""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np

from engine.presets import PRESETS
from tui.app import GradTUI
from tui.plotting import NONFINITE_COLOR
from tui.testing import press_step, screen_text, wait_for_frame
from tui.widgets.grad_mean_plot import GradMeanPlot
from tui.widgets.timestep_heatmap import (
    ZERO_COLOR,
    TimestepHeatmap,
    bin_matrix,
    log_extent,
    render_heatmap,
    scale_color,
    time_ratio_caption,
)


def _rgb(color) -> str:
    return f"rgb({color[0]},{color[1]},{color[2]})"


def test_bins_average_logs_and_flag_nonfinite_and_zero_blocks():
    values = np.array(
        [
            [1.0, 100.0, 0.0, 0.0],
            [10.0, math.nan, 0.0, 5.0],
        ]
    )
    mean, kind = bin_matrix(values, rows=1, cols=2)
    assert mean.shape == kind.shape == (1, 2)
    # Block (rows 0-1, time 0-1): a NaN makes the block non-finite, whatever else it holds.
    assert kind[0, 0] == 2
    # Block (rows 0-1, time 2-3): one positive value, the rest zeros.
    assert kind[0, 1] == 0 and mean[0, 1] == np.log10(5.0)
    mean, kind = bin_matrix(values[:, 2:3], rows=2, cols=1)
    assert (kind == 1).all() and np.isnan(mean).all()  # all zero: the zero kind
    same, _ = bin_matrix(values[:1, :2], rows=10, cols=10)  # more room than values: no binning
    assert same.tolist() == [[0.0, 2.0]]


def test_the_map_colours_by_decade_and_marks_nan_and_zero_apart():
    steps = np.arange(4)
    # Time step 1 (first column) is 1e6 times time step 4: an explosion back in time.
    matrix = np.array([[1e6, 1e4, 1e2, 1.0]] * 4)
    matrix[2, 1] = math.nan
    matrix[3, 0] = 0.0
    cells = render_heatmap(steps, matrix, width=30, height=6)
    rows = cells.plain.splitlines()
    assert rows[0].startswith("t=4┤") and rows[1].startswith("t=1┤")
    assert log_extent(matrix) == (0.0, 6.0)
    top, bottom = _rgb(scale_color(1.0)), _rgb(scale_color(0.0))
    styles = {style for row in cells.rows for _, style in row}
    assert any(top in style for style in styles)  # 1e6 at t=1: the scale's top colour
    assert any(bottom in style for style in styles)  # 1 at t=4: its bottom
    assert any(_rgb(NONFINITE_COLOR) in style for style in styles)
    assert any(_rgb(ZERO_COLOR) in style for style in styles)
    legend = rows[-1]
    assert "1 " in legend and "1e6" in legend and "NaN/inf" in legend and "█0" in legend
    assert "0" in rows[-2]  # the step axis


def test_caption_names_the_ratio_at_its_worst_and_now():
    steps = np.array([0, 5, 9])
    matrix = np.array([[1e6, 1.0], [10.0, 1.0], [0.0, 2.0]])
    assert time_ratio_caption(steps, matrix) == "|dL/dh_1|/|dL/dh_2| max 1e6 (step 0), now 0"
    assert time_ratio_caption(steps, matrix, width=30) == "t1/t2 max 1e6 (@0), now 0"
    assert time_ratio_caption(steps[:0], matrix[:0]) == ""


def test_no_steps_gives_a_hint_not_a_crash():
    cells = render_heatmap(np.zeros(0), np.zeros((0, 0)), 20, 5)
    assert "no steps yet" in cells.plain


def test_the_rnn_dashboard_shows_the_heat_map_in_place_of_the_mean_plot():
    async def scenario():
        config = PRESETS["rnn-exploding"].config.replace(device="cpu")
        app = GradTUI(config, "rnn-exploding")
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 2)
            heatmap = app.query_one(TimestepHeatmap)
            assert heatmap.display and not app.query_one(GradMeanPlot).display
            await wait_for_frame(pilot, app)
            text = screen_text(app)
            assert "|dL/dh_t| per time step" in text and "t=60┤" in text
            # The explosion back in time: ~1e6 (9.8e5 with torch 2.11 on the same seed).
            ratio = re.search(r"t1/t60 max ([0-9.e+]+)", str(heatmap.border_subtitle))
            assert ratio and 1e5 <= float(ratio.group(1)) <= 1e7, heatmap.border_subtitle
            assert "EXPLODING" in text  # the verdict line reads the time ratio too

    asyncio.run(scenario())


def test_other_models_keep_the_mean_plot():
    async def scenario():
        app = GradTUI(PRESETS["clip-value"].config.replace(device="cpu"), "clip-value")
        async with app.run_test(size=(120, 40)) as pilot:
            await press_step(pilot, app, 1)
            assert app.query_one(GradMeanPlot).display
            assert not app.query_one(TimestepHeatmap).display

    asyncio.run(scenario())

"""The dashboard's number handling: sanitizing, log/symlog axes, tick labels, light renderers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.records import Histogram
from tui.plotting import (
    distinct_labels,
    format_number,
    layer_colors,
    log_ticks,
    power_label,
    short_number,
    split_finite,
    step_ticks,
    symlog,
    symlog_threshold,
    symlog_ticks,
)
from tui.widgets.flow_bars import render_bars
from tui.widgets.histogram_panel import render_histograms


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (math.nan, "NaN"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (0.0, "0"),
        (0.693147, "0.693"),
        (1.2e-5, "1.2e-5"),
        (3.3e26, "3.3e26"),
        (-4.5e9, "-4.5e9"),
        (1234.0, "1234"),
        (12345.0, "1.23e4"),
        (250.0, "250"),
    ],
)
def test_format_number_is_short_and_plain(value, text):
    assert format_number(value) == text


def test_power_labels_read_from_1e_minus_6_to_1e26():
    assert [power_label(k) for k in (-6, -2, -1, 0, 1, 2, 3, 26)] == [
        "1e-6",
        "0.01",
        "0.1",
        "1",
        "10",
        "100",
        "1e3",
        "1e26",
    ]


def test_short_number_fits_its_width():
    for value in (0.0032, 5e-5, 123456.0, -3.2e-7, 0.44):
        assert len(short_number(value, 5)) <= 5
    assert short_number(0.0032, 4) == "3e-3"
    assert short_number(0.07, 2) == "…"  # never a truncated, wrong number


def test_split_finite_keeps_nonfinite_steps_for_marking():
    steps = np.arange(6)
    values = np.array([1.0, np.inf, -2.0, np.nan, 0.0, 3.0])
    x, y, bad = split_finite(steps, values)
    assert x.tolist() == [0, 2, 4, 5] and bad.tolist() == [1, 3]
    x, y, bad = split_finite(steps, values, positive=True)
    assert x.tolist() == [0, 5] and bad.tolist() == [1, 3]  # <=0 is undrawable, not non-finite


def test_log_ticks_are_powers_of_ten_or_distinct_round_values():
    ticks, labels = log_ticks(-6.2, 26.4, 6)
    assert labels[0].startswith("1e") and labels[-1] == "1e26" and len(ticks) <= 7
    assert all(float(t).is_integer() for t in ticks)
    ticks, labels = log_ticks(math.log10(0.098), math.log10(0.112), 8)
    assert len(set(labels)) == len(labels) and len(labels) >= 2
    assert all(0.098 <= 10**t <= 0.112 for t in ticks)


def test_symlog_keeps_sign_and_reads_thirty_decades():
    values = np.array([-1e26, -1e-6, 0.0, 1e-6, 1e26])
    out = symlog(values, 1e-8)
    assert np.all(np.diff(out) > 0) and out[2] == 0 and out[0] == -out[-1]
    assert symlog_threshold(np.array([1e-7, 2e-7, 1e-4, 0.1])) <= 1e-7
    ticks, labels = symlog_ticks(float(out[0]), float(out[-1]), 1e-8, 9)
    assert "0" in labels and "1e26" in labels and "-1e26" in labels
    assert len(ticks) <= 9 and ticks == sorted(ticks)


def test_step_ticks_are_whole_numbers_with_short_labels():
    ticks, labels = step_ticks(0, 123_456, 5)
    assert all(float(t).is_integer() for t in ticks)
    assert labels[-1].endswith("k")


def test_distinct_labels_add_digits_only_when_needed():
    assert distinct_labels([0.1, 0.2]) == ["0.1", "0.2"]
    labels = distinct_labels([0.1, 0.1005, 0.101])
    assert len(set(labels)) == 3


def test_layer_colours_run_from_input_to_output():
    colors = layer_colors(6)
    assert len(colors) == 6 and len(set(colors)) == 6
    assert layer_colors(1) == [colors[0]] and layer_colors(0) == []


def test_flow_bars_rise_toward_the_output_when_gradients_vanish():
    layers = ("h1", "h2", "o")
    bars = {"h1": (1e-5, None), "h2": (1e-3, None), "o": (1.0, None)}
    colors = dict(zip(layers, layer_colors(3), strict=True))
    text = render_bars(bars, layers, colors, width=30, height=10).plain.splitlines()
    chart = text[:-2]
    heights = []
    for column in (6, 6 + 8, 6 + 16):  # the first cell of each layer's slot
        heights.append(sum(1 for row in chart if row[column : column + 1].strip()))
    assert heights[0] < heights[1] < heights[2]
    assert text[-2].split() == ["h1", "h2", "o"]
    assert text[-1].split() == ["1e-5", "0.001", "1"]


def test_flow_bars_draw_nan_as_a_full_red_column_and_never_raise():
    layers = ("fc1", "fc2")
    bars = {"fc1": (math.nan, 5.0), "fc2": (math.inf, math.inf)}
    colors = dict(zip(layers, layer_colors(2), strict=True))
    text = render_bars(bars, layers, colors, width=30, height=8)
    assert "▓" in text.plain and "NaN" in text.plain and "inf" in text.plain
    assert "raw 5" in text.plain  # clipping on: the raw norm is written under the applied one
    assert "bold red" in text.styles_of("▓")


def test_histograms_show_each_layers_range_and_nonfinite_count():
    layers = ("h1", "o")
    hists = {
        "h1": Histogram(-9e-6, 7e-6, tuple(float(b) for b in range(24)), nonfinite=3),
        "o": Histogram(0.2, 0.8, (0.0,) * 24),
    }
    colors = dict(zip(layers, layer_colors(2), strict=True))
    text = render_histograms(hists, layers, colors, width=40, height=8).plain
    assert "-9e-6" in text and "7e-6" in text and "3 NaN/inf" in text
    assert "(no finite values)" in text


def test_flow_bars_keep_the_step_0_profile_as_white_marks():
    layers = ("h1", "o")
    bars = {"h1": (5e-5, None), "o": (5e-5, None)}  # level now: the net has stalled
    ghosts = {"h1": 5e-5, "o": 0.95}  # step 0 had the thousandfold slope
    colors = dict(zip(layers, layer_colors(2), strict=True))
    cells = render_bars(bars, layers, colors, width=30, height=12, ghosts=ghosts)
    rows = cells.plain.splitlines()[:-2]
    o_column = 6 + 12  # the o slot starts after the gutter and h1's slot of 12
    marks = [i for i, row in enumerate(rows) if row[o_column : o_column + 1] == "━"]
    assert marks == [0]  # o's step-0 norm is the top of the axis
    assert "bold white" in cells.styles_of("━")


def test_a_canvas_redraws_its_rows_when_its_style_changes():
    """A change of CSS restyles what a canvas shows, with no new data drawn."""
    import asyncio

    from textual.app import App
    from textual.containers import Vertical

    from tui.widgets.panel import Canvas, Cells

    class Host(App):
        CSS = "Canvas { background: #000000; } .alt Canvas { background: #ff0000; }"

        def compose(self):
            with Vertical():
                yield Canvas()

    def backgrounds(canvas: Canvas) -> set:
        strips = [canvas.render_line(y) for y in range(2)]
        return {segment.style.bgcolor.triplet for strip in strips for segment in strip}

    async def scenario() -> None:
        app = Host()
        async with app.run_test(size=(20, 4)) as pilot:
            canvas = app.query_one(Canvas)
            cells = Cells()
            cells.append("ab", "bold")
            cells.newline()
            cells.append("cd")
            canvas.show(cells)
            await pilot.pause()
            assert backgrounds(canvas) == {(0, 0, 0)}
            app.query_one(Vertical).add_class("alt")
            await pilot.pause()
            assert backgrounds(canvas) == {(255, 0, 0)}
            assert canvas.cells is cells  # the same data, redrawn

    asyncio.run(scenario())

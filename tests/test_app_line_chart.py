"""The project's own line-chart renderer: braille lines, axes, ticks, marks and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tui.line_chart import LineChart, empty_chart

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _chart(width=30, height=12) -> LineChart:
    chart = LineChart(width, height)
    chart.limits(0.0, 10.0, 0.0, 10.0)
    chart.ticks([0, 5, 10], ["0", "5", "10"], [0, 5, 10], ["0", "5", "10"])
    chart.labels("step", "loss")
    return chart


def _data_rows(chart: LineChart, cells) -> list[str]:
    """The data area's rows, without the gutter."""
    rows = cells.plain.split("\n")[: chart.height - 3]
    return [row[chart.gutter :] for row in rows]


def _is_braille(char: str) -> bool:
    return 0x2800 < ord(char) <= 0x28FF


def test_every_row_has_the_charts_width_and_the_footer_is_laid_out_like_plotext():
    chart = _chart()
    chart.line([0, 10], [0, 10], RED)
    rows = chart.cells().plain.split("\n")
    assert len(rows) == 12 and all(len(row) == 30 for row in rows)
    assert chart.gutter == 3  # "10" and the axis
    assert rows[0].startswith("10┤") and rows[8].startswith(" 0┤")
    axis = rows[9]
    assert axis[2] == "└" and axis.count("┬") == 3
    assert rows[10].split() == ["0", "5", "10"]
    assert rows[11].split() == ["loss", "step"]


def test_a_diagonal_line_is_continuous_and_rises_to_the_right():
    chart = _chart()
    chart.line([0, 10], [0, 10], RED)
    rows = _data_rows(chart, chart.cells())
    lowest_row_per_column = []
    for column in range(len(rows[0])):
        hit = [r for r, row in enumerate(rows) if _is_braille(row[column])]
        assert hit, f"gap at column {column}"
        lowest_row_per_column.append(max(hit))
    assert lowest_row_per_column == sorted(lowest_row_per_column, reverse=True)
    assert lowest_row_per_column[0] == len(rows) - 1 and min(lowest_row_per_column) == 0


def test_a_level_line_lands_on_the_row_of_its_value():
    chart = _chart()
    chart.line([0, 10], [5, 5], BLUE)
    cells = chart.cells()
    rows = _data_rows(chart, cells)
    # 9 rows of 4 dots: value 5 of 0..10 is dot row 17.5 -> 18 (rounded), cell row 4.
    dot_row = round((10 - 5) / 10 * (9 * 4 - 1))
    filled = [r for r, row in enumerate(rows) if any(_is_braille(c) for c in row)]
    assert filled == [dot_row // 4]
    assert "rgb(0,0,255)" in cells.styles_of(rows[dot_row // 4].strip()[:1])


def test_crossing_lines_merge_their_dots_and_the_later_line_colours_the_cell():
    chart = _chart()
    chart.line([0, 10], [5, 5], RED)
    chart.line([0, 10], [5.2, 5.2], BLUE)  # the same cells, another dot row
    cells = chart.cells()
    rows = _data_rows(chart, cells)
    row = next(row for row in rows if row.strip())
    codes = {ord(c) - 0x2800 for c in row.strip()}
    # Two dot rows in one cell: more than one bit per column of dots.
    assert all(bin(code).count("1") >= 2 for code in codes)
    assert cells.styles_of(row.strip()[:1]) == {"rgb(0,0,255)"}


def test_marks_labels_and_character_lines():
    chart = _chart()
    chart.line([0, 10], [2, 2], RED, marker="·")
    chart.points([9.8], [10], "✖", BLUE)
    chart.text("loss NaN@9", 9.8, 10, BLUE, "right")
    rows = _data_rows(chart, chart.cells())
    assert rows[0].rstrip().endswith("loss NaN@9")  # kept inside, ending at the mark
    dotted = [row for row in rows if "·" in row]
    assert len(dotted) == 1 and dotted[0].count("·") == len(rows[0])


@pytest.mark.filterwarnings("error")
def test_points_outside_the_limits_are_clipped_and_tiny_charts_do_not_raise():
    chart = _chart()
    chart.line([-5, 5, 15, 16, 17], [-100, 5, 1e9, 1e308, math.nan], RED)
    chart.points([5, math.inf], [1e300, 5], "●", RED)
    chart.points([20, -1], [5, 5], "●", RED)
    chart.cells()  # no exception
    for width, height in ((2, 1), (3, 4), (5, 5)):
        small = LineChart(width, height)
        small.limits(0, 1, 0, 1)
        small.ticks([0, 1], ["0", "1"], [0.5], ["a long label"])
        small.line([0, 1], [0, 1], RED)
        small.text("a label longer than the chart", 0.5, 0.5)
        rows = small.cells().plain.split("\n")
        assert all(len(row) == small.width for row in rows)


@pytest.mark.parametrize("span", [(3.0, 3.0), (1.0, 0.0)])
def test_a_zero_or_inverted_span_is_widened(span):
    chart = LineChart(20, 8)
    chart.limits(*span, *span)
    assert chart.x_hi > chart.x_lo and chart.y_hi > chart.y_lo
    assert all(math.isfinite(v) for v in (chart.x_lo, chart.x_hi))


def test_an_empty_chart_centres_its_messages():
    cells = empty_chart(LineChart(40, 12), ["no steps yet", "second"])
    rows = cells.plain.split("\n")
    line = next(row for row in rows if "no steps yet" in row)
    data = line[1:]  # the gutter is the bare axis
    left = data.index("no steps yet")
    right = len(data) - left - len("no steps yet")
    assert abs(left - right) <= 1
    assert rows.index(line) < next(i for i, row in enumerate(rows) if "second" in row)


def test_ten_long_oscillating_series_fill_the_chart():
    chart = _chart(60, 20)
    x = np.linspace(0, 10, 5000)
    for k in range(10):
        chart.line(x, 5 + 4 * np.sin(x * (k + 1)), RED)
    rows = chart.cells().plain.split("\n")
    assert len(rows) == 20 and sum(_is_braille(c) for c in "".join(rows)) > 300


def _cells_line_by_line(chart: LineChart, monkeypatch):
    """The chart drawn one braille line at a time, as before lines were batched."""

    def one_by_one(self, layers, first, cols, rows, mask, owner):
        for k, (kind, _, x, y) in enumerate(layers):
            self._draw_line(kind, first + k, x, y, cols, rows, mask, owner, {})

    with monkeypatch.context() as patched:
        patched.setattr(LineChart, "_draw_braille", one_by_one)
        return chart.cells()


def test_braille_lines_drawn_together_match_them_drawn_one_by_one(monkeypatch):
    rng = np.random.default_rng(7)
    for trial in range(20):
        chart = _chart(width=int(rng.integers(8, 60)), height=int(rng.integers(5, 20)))
        for k in range(int(rng.integers(1, 12))):
            n = int(rng.choice([0, 1, 2, 5, 50, 400]))
            x = np.sort(rng.uniform(-2, 12, n))
            y = rng.normal(5, 4, n) * (1e6 if k == 3 else 1)  # one line mostly far off
            color = (int(rng.integers(256)), 20 * k, 255 - 20 * k)
            chart.line(x, y, color)
            if trial % 5 == 0 and k == 2:
                chart.points(
                    [5.0], [5.0], "x", RED
                )  # a character cell: the lines after it go one by one
        together, apart = chart.cells(), _cells_line_by_line(chart, monkeypatch)
        assert together.rows == apart.rows  # every run's text and style

"""The base of the line plots: axes, decimation, non-finite markers, legend.

Each subclass turns the history into a few `Line`s in axis units (already log
or symlog transformed); this class draws them (tui.line_chart), sets ticks the
way a person writes them, and marks every NaN/inf point on the top edge in
the line's colour with a label at the first one, so nothing is silently
dropped. The legend lives in the panel's bottom border.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tui.line_chart import LineChart, empty_chart
from tui.plotting import (
    NONFINITE_MARK,
    padded_range,
    rich_color,
    step_label,
    step_ticks,
)
from tui.widgets.panel import FrameContext, HistoryPanel

# Columns the y tick labels and the axis usually take; the rest is data.
_Y_LABEL_WIDTH = 7


@dataclass
class Line:
    """One series in axis units: drawn points, and the steps where it was NaN/inf."""

    name: str
    color: tuple[int, int, int]
    x: np.ndarray
    y: np.ndarray
    bad_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    marker: str = "braille"
    legend: bool = True  # raw lines share their layer's legend entry


def x_extent(lines: list[Line]) -> tuple[float, float] | None:
    """(first, last) step of the drawn and the NaN-marked points, or None if there are none."""
    xs = [line.x for line in lines if len(line.x)] + [
        line.bad_x for line in lines if len(line.bad_x)
    ]
    if not xs:
        return None
    values = np.concatenate(xs)
    return float(values.min()), float(values.max())


def y_extent(lines: list[Line]) -> tuple[float, float] | None:
    """(lowest, highest) drawn value in axis units, or None if nothing is drawn."""
    ys = [line.y for line in lines if len(line.x)]
    if not ys:
        return None
    values = np.concatenate(ys)
    return float(values.min()), float(values.max())


class LinePlotPanel(HistoryPanel):
    """A line plot of some series over steps; subclasses provide `lines` and `y_axis`."""

    HEAVY = True  # the costliest panels: the app redraws one per frame, or fewer
    X_LABEL = "step"
    Y_LABEL = ""

    def points(self, width: int) -> int:
        """How many points a series is decimated to: one per braille dot column (two a cell)."""
        return max(8, 2 * (width - _Y_LABEL_WIDTH))

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """The series to draw, in axis units."""
        raise NotImplementedError

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """Tick positions and labels for y limits lo..hi (axis units)."""
        raise NotImplementedError

    def x_limits(self, ctx: FrameContext, lines: list[Line]) -> tuple[float, float] | None:
        """The steps the plot spans (None: nothing to draw); the compare view shares them."""
        return x_extent(lines)

    def y_limits(self, ctx: FrameContext, lines: list[Line]) -> tuple[float, float] | None:
        """The y values to fit before padding (axis units); the compare view shares them."""
        return y_extent(lines)

    def legend_extra(self, ctx: FrameContext) -> str:
        """Markup appended to the layer legend (e.g. the raw/applied key)."""
        return ""

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render the lines, their NaN marks and the axes into the canvas."""
        lines = self.lines(ctx, self.points(width))
        self.border_subtitle = self._legend(ctx, lines)
        drawn = [line for line in lines if len(line.x)]
        x_range = self.x_limits(ctx, lines)
        if x_range is None:
            hint = "no steps yet: space runs, n steps" if width >= 44 else "no steps yet"
            self.show_empty(width, height, [hint])
            return
        chart = LineChart(width, height)
        chart.labels(self.X_LABEL, self.Y_LABEL)
        y_range = self.y_limits(ctx, lines)
        y_lo, y_hi = padded_range(*y_range) if y_range is not None else (-1.0, 1.0)
        rows = max(height - 3, 1)  # the axis, tick labels and axis labels take 3
        top = y_hi + (y_hi - y_lo) / max(rows, 1)  # a spare row for NaN markers
        chart.limits(*x_range, y_lo, top)
        x_lo, x_hi = chart.x_lo, chart.x_hi  # a single step's span widened
        x_ticks, x_labels = step_ticks(x_lo, x_hi, max(2, (width - _Y_LABEL_WIDTH) // 9))
        y_ticks, y_labels = self.y_axis(y_lo, y_hi, max(2, rows // 2 + 1))
        chart.ticks(x_ticks, x_labels, y_ticks, y_labels)
        for line in drawn:
            if len(line.x) == 1:
                chart.points(line.x, line.y, "●", line.color)
            else:
                chart.line(line.x, line.y, line.color, line.marker)
        firsts: dict[float, list[Line]] = {}
        for line in lines:
            if len(line.bad_x):
                chart.points(line.bad_x, np.full(len(line.bad_x), top), NONFINITE_MARK, line.color)
                firsts.setdefault(float(line.bad_x[0]), []).append(line)
        # A decimated point stands for a span of steps; its step is then approximate.
        exact = not drawn or all(len(line.x) < 2 or line.x[-1] - line.x[-2] <= 1 for line in drawn)
        for first, group in sorted(firsts.items()):
            # One label per step, naming every line that first went bad there.
            names = " ".join(dict.fromkeys(line.name for line in group))
            label = f"{names} NaN@{'' if exact else '~'}{step_label(first)}"
            right = (first - x_lo) / (x_hi - x_lo) > 0.5  # keep the label inside the plot
            chart.text(label, first, top, group[0].color, "right" if right else "left")
        self.surface.show(chart.cells())

    def show_empty(self, width: int, height: int, messages: list[str]) -> None:
        """Bare axes with `messages` in the middle: a plot with nothing to draw."""
        chart = LineChart(width, height)
        chart.labels(self.X_LABEL, self.Y_LABEL)
        self.surface.show(empty_chart(chart, messages))

    def _legend(self, ctx: FrameContext, lines: list[Line]) -> str:
        parts = []
        for line in lines:
            if line.legend:
                parts.append(f"[{rich_color(line.color)}]━[/]{line.name}")
        if any(len(line.bad_x) for line in lines):
            parts.append(f"[bold red]{NONFINITE_MARK}[/]NaN/inf")
        extra = self.legend_extra(ctx)
        if extra:
            parts.append(extra)
        return " ".join(parts)

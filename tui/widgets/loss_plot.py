"""Plot a: the loss per step on a log scale, NaN/inf steps marked on the top edge."""

from __future__ import annotations

import numpy as np

from tui.plotting import NONFINITE_COLOR, log10_positive, log_ticks, split_finite
from tui.widgets.line_plot import Line, LinePlotPanel
from tui.widgets.panel import FrameContext

_LOSS_COLOR = (235, 235, 235)


class LossPlot(LinePlotPanel):
    """The training loss over steps, log10 axis labelled in plain values."""

    TITLE = "Loss per step (log)"
    Y_LABEL = "loss"

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """One line: the loss; its non-finite steps become red marks."""
        series = ctx.history.series("loss", max_points=points)
        x, y, bad = split_finite(series.steps, series.values, positive=True)
        # A decimated point stands for a span: flag it if the span held NaN/inf.
        bad = np.union1d(bad, series.steps[series.nonfinite])
        line = Line("loss", _LOSS_COLOR, x, log10_positive(y))
        marks = Line("loss", NONFINITE_COLOR, np.zeros(0), np.zeros(0), bad, legend=False)
        return [line, marks]

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """Powers of ten, or round values when the loss spans less than a decade."""
        return log_ticks(lo, hi, ticks)

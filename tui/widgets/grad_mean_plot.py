"""Plot b: each layer's mean weight gradient per step on a symmetric log scale.

The slides' array of gradient means, one line per layer. A symmetric log
keeps the sign and lets 1e-7 (h1 of a vanishing net) and 1e26 (fc1 before
NaN) both read on one axis; the linear zone is set below the smallest
magnitudes shown.
"""

from __future__ import annotations

import numpy as np

from tui.plotting import split_finite, symlog, symlog_threshold, symlog_ticks
from tui.widgets.line_plot import Line, LinePlotPanel
from tui.widgets.panel import FrameContext


class GradMeanPlot(LinePlotPanel):
    """Mean of each layer's applied weight gradient, input to output colours."""

    TITLE = "Gradient mean per layer (symlog)"
    Y_LABEL = "mean grad"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._linthresh = 1.0

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """One line per layer, symlog-transformed with one threshold for all."""
        raw = []
        for layer in ctx.layers:
            series = ctx.history.series(f"{layer}.grad_mean", max_points=points)
            x, y, bad = split_finite(series.steps, series.values)
            bad = np.union1d(bad, series.steps[series.nonfinite])
            raw.append((layer, x, y, bad))
        values = [y for _, _, y, _ in raw if len(y)]
        self._linthresh = symlog_threshold(np.concatenate(values)) if values else 1.0
        colors = ctx.colors
        return [
            Line(layer, colors[layer], x, symlog(y, self._linthresh), bad)
            for layer, x, y, bad in raw
        ]

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """0 and ±powers of ten."""
        return symlog_ticks(lo, hi, self._linthresh, ticks)

"""Plot c: each layer's gradient L2 norm per step on a log scale; raw too when clipping.

The norm is a sentinel recorded on every step, so this plot is the densest
view of the run. With clipping on, each layer gets a second, dotted line for
the raw gradient (before clipping): the gap between the two is what the
clipping changed.
"""

from __future__ import annotations

import numpy as np

from tui.plotting import log10_positive, log_ticks, split_finite
from tui.widgets.line_plot import Line, LinePlotPanel
from tui.widgets.panel import FrameContext

_RAW_MARKER = "·"


class GradNormPlot(LinePlotPanel):
    """Applied (and raw, when clipping) gradient norm of each layer."""

    TITLE = "Gradient norm per layer (log)"
    Y_LABEL = "‖grad‖"

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """Applied norms as lines; raw norms as dots when the run clips."""
        colors = ctx.colors
        result = []
        keys = [("grad_norm", "braille", True)]
        if ctx.clipping:
            keys.insert(0, ("raw_grad_norm", _RAW_MARKER, False))
        for layer in ctx.layers:
            for stat, marker, legend in keys:
                series = ctx.history.series(f"{layer}.{stat}", max_points=points)
                x, y, bad = split_finite(series.steps, series.values, positive=True)
                bad = np.union1d(bad, series.steps[series.nonfinite])
                if not legend:
                    bad = np.zeros(0)  # the applied line marks the layer's NaN once
                line = Line(layer, colors[layer], x, log10_positive(y), bad, marker, legend)
                result.append(line)
        return result

    def legend_extra(self, ctx: FrameContext) -> str:
        """The raw/applied key when the run clips."""
        if ctx.clipping:
            return f"(━ applied {_RAW_MARKER}{_RAW_MARKER} raw, {ctx.config.clip} clip)"
        return ""

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """Powers of ten."""
        return log_ticks(lo, hi, ticks)

"""Two more signals per layer: how fast each weight moves, and how saturated its activation is.

Update-to-weight ratio: lr·‖grad‖/‖w‖, the fraction of its own size a layer
moves per step; about 1e-3 is the usual rule of thumb, drawn as a reference
line, so a layer stuck at 1e-7 (vanishing) or at 1 (exploding) stands out.

Activation saturation: the fraction of sigmoid/tanh outputs within 2% of a
bound, where the slope is ~0. Only hidden layers are shown: the output layer's
"activation" is its linear output, not a sigmoid's. The RNN's cell.weight_ih
and cell.weight_hh feed one tanh, so the cell is shown once.
"""

from __future__ import annotations

import numpy as np

from engine.diagnosis import SATURATION, TYPICAL_UPDATE
from engine.diagnosis_facts import module_of
from tui.plotting import log10_positive, log_ticks, nice_ticks, split_finite
from tui.widgets.line_plot import Line, LinePlotPanel, x_extent, y_extent
from tui.widgets.panel import FrameContext

_REFERENCE = (150, 150, 150)
_SATURATING = ("sigmoid", "tanh")


def _reference(lines: list[Line], value: float, name: str) -> Line | None:
    """A dotted horizontal line at `value` (axis units) across the steps the lines span."""
    if x_extent(lines) is None:
        return None
    # At the data's own steps, so the plot's spacing (exact or decimated steps) is unchanged.
    x = np.unique(np.concatenate([line.x for line in lines] + [line.bad_x for line in lines]))
    return Line(name, _REFERENCE, x, np.full(len(x), value), marker="·", legend=False)


class UpdateRatioPlot(LinePlotPanel):
    """lr·‖grad‖/‖w‖ of each layer per captured step, log scale, with the 1e-3 reference."""

    TITLE = "Update/weight ratio per layer (log)"
    Y_LABEL = "lr‖g‖/‖w‖"

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """One line per layer and the dotted reference at 1e-3."""
        colors = ctx.colors
        result = []
        for layer in ctx.layers:
            series = ctx.history.series(f"{layer}.update_ratio", max_points=points)
            x, y, bad = split_finite(series.steps, series.values, positive=True)
            bad = np.union1d(bad, series.steps[series.nonfinite])
            result.append(Line(layer, colors[layer], x, log10_positive(y), bad))
        reference = _reference(result, float(np.log10(TYPICAL_UPDATE)), "1e-3")
        return result + ([reference] if reference is not None else [])

    def legend_extra(self, ctx: FrameContext) -> str:
        """The reference line's key."""
        return "[rgb(150,150,150)]··[/] 1e-3"

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """Powers of ten."""
        return log_ticks(lo, hi, ticks)


def saturation_layers(ctx: FrameContext) -> list[tuple[str, str]]:
    """(name shown, layer whose series is read): hidden layers, one per activation."""
    shown: dict[str, str] = {}
    for layer in ctx.layers[:-1]:  # the output layer has no sigmoid/tanh
        shown.setdefault(module_of(layer), layer)
    return list(shown.items())


def activation_of(ctx: FrameContext) -> str:
    """The hidden activation of the run (the RNN cell is a tanh)."""
    return "tanh" if ctx.config.model == "rnn" else ctx.config.activation


class SaturationPlot(LinePlotPanel):
    """Fraction of each hidden layer's sigmoid/tanh outputs at a bound, per activation step."""

    TITLE = "Activation saturation per layer"
    Y_LABEL = "saturated"

    def lines(self, ctx: FrameContext, points: int) -> list[Line]:
        """One line per hidden activation, with the diagnosis threshold dotted."""
        colors = ctx.colors
        result = []
        for name, layer in saturation_layers(ctx):
            series = ctx.history.series(f"{layer}.act_saturation", max_points=points)
            x, y, bad = split_finite(series.steps, series.values)
            bad = np.union1d(bad, series.steps[series.nonfinite])
            result.append(Line(name, colors[layer], x, y, bad))
        reference = _reference(result, SATURATION, "limit")
        return result + ([reference] if reference is not None else [])

    def legend_extra(self, ctx: FrameContext) -> str:
        """The threshold's key."""
        return f"[rgb(150,150,150)]··[/] {SATURATION:.0%}"

    def y_limits(self, ctx: FrameContext, lines: list[Line]) -> tuple[float, float] | None:
        """Always the whole 0 to 100%: a fraction reads against its bounds."""
        extent = y_extent(lines)
        if extent is None:
            return 0.0, 1.0
        return min(extent[0], 0.0), max(extent[1], 1.0)

    def y_axis(self, lo: float, hi: float, ticks: int) -> tuple[list[float], list[str]]:
        """Percentages."""
        values = nice_ticks(max(lo, 0.0), min(hi, 1.0), ticks)
        return values, [f"{v:.0%}" for v in values]

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """The plot; for ReLU-like activations, why there is nothing to show."""
        activation = activation_of(ctx)
        if activation in _SATURATING:
            super().draw(ctx, width, height)
            return
        messages = [f"{activation} has no bounded output" if width >= 40 else activation]
        if width >= 40:
            messages.append("(saturation: sigmoid/tanh only)")
        self.border_subtitle = ""
        self.show_empty(width, height, messages)

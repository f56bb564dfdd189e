"""The compare view's panels: the dashboard's own, each on axes shared with the other side.

A paired panel draws its side's history but fits its axes to both sides: the
steps, the y range of the line plots, the decades of the flow bars and the
colour scale of the heat map are the union of what both sides show. It reads
the other side's frame context from its screen (`screen.contexts`), and
redraws when either side moved, so the two halves always agree.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from engine.config import RunConfig
from engine.records import StepRecord
from engine.session import SessionStatus
from tui.plotting import format_number
from tui.widgets.flow_bars import FlowBars, bar_values
from tui.widgets.grad_norm_plot import GradNormPlot
from tui.widgets.line_plot import Line, x_extent, y_extent
from tui.widgets.loss_plot import LossPlot
from tui.widgets.panel import Cells, FrameContext
from tui.widgets.status_bar import _STATE_ICONS, _alarm, clip_summary
from tui.widgets.timestep_heatmap import TimestepHeatmap, log_extent, render_heatmap


def union(a: tuple[float, float] | None, b: tuple[float, float] | None):
    """The smallest range holding both (either may be None)."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


class Paired:
    """Mixin for a HistoryPanel on one side (0 left, 1 right) of the compare screen."""

    side = 0

    def partner(self) -> FrameContext | None:
        """This frame's context of the other side, once the screen has one."""
        contexts = getattr(self.screen, "contexts", None)
        return contexts[1 - self.side] if contexts else None

    def data_key(self, ctx: FrameContext) -> Any:
        """Redraw when this side's data or the other side's moved."""
        key = super().data_key(ctx)
        other = self.partner()
        return key if other is None else (key, other.history, other.version, other.layers)


class _PairedLines(Paired):
    """Line plots whose x and y ranges cover both sides."""

    _other: list[Line] = []
    shared: tuple = (None, None)  # the (x, y) ranges of the last drawing, for tests

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Read the other side's lines (same transform), then draw this side's."""
        other = self.partner()
        self._other = self.lines(other, self.points(width)) if other is not None else []
        super().draw(ctx, width, height)

    def x_limits(self, ctx: FrameContext, lines: list[Line]):
        """Both sides' steps (None while this side has none)."""
        own = x_extent(lines)
        shared = None if own is None else union(own, x_extent(self._other))
        self.shared = (shared, self.shared[1])
        return shared

    def y_limits(self, ctx: FrameContext, lines: list[Line]):
        """Both sides' values."""
        shared = union(y_extent(lines), y_extent(self._other))
        self.shared = (self.shared[0], shared)
        return shared


class PairedLossPlot(_PairedLines, LossPlot):
    """The loss, on the axes of both sides."""


class PairedGradNormPlot(_PairedLines, GradNormPlot):
    """Per-layer gradient norms, on the axes of both sides."""


class PairedFlowBars(Paired, FlowBars):
    """The flow bars, on the decades of both sides."""

    def range_values(self, ctx: FrameContext) -> list[float]:
        """The other side's bars (and step-0 marks) widen this side's axis."""
        other = self.partner()
        if other is None:
            return []
        latest = other.history.latest_measured
        values = [
            v for pair in bar_values(latest, other.layers, other.clipping).values() for v in pair
        ]
        if other.first is not None and latest is not None and latest.step > other.first.step:
            values += [pair[0] for pair in bar_values(other.first, other.layers).values()]
        return [v for v in values if v is not None]


class PairedHeatmap(Paired, TimestepHeatmap):
    """The RNN heat map, on a colour scale shared by both sides."""

    def render_cells(self, ctx: FrameContext, steps, matrix, width: int, height: int) -> Cells:
        """The map with the union of both sides' decades."""
        if matrix.size == 0:
            return super().render_cells(ctx, steps, matrix, width, height)
        other = self.partner()
        extent = log_extent(matrix)
        if other is not None:
            extent = union(extent, log_extent(other.history.timestep_matrix()[1]))
        return render_heatmap(steps, matrix, width, height, extent)


class SideStatus(Static):
    """Two lines naming one side: state, label, steps, loss; then its alarm or its clipping."""

    DEFAULT_CSS = """
    SideStatus { height: 2; padding: 0 1; background: $boost; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._last = ""

    def show(
        self,
        status: SessionStatus,
        config: RunConfig,
        label: str,
        latest: StepRecord | None,
        captured: StepRecord | None,
    ) -> None:
        """Update from a status snapshot; repaints only when the text changed."""
        width = max(self.size.width, 20)
        first = Text()
        icon = _STATE_ICONS.get(status.state, "?")
        total = f"/{status.total_steps}" if status.total_steps else ""
        loss = format_number(latest.loss, 4) if latest is not None else "—"
        rest = f"  {status.step}{total} steps  loss "
        state = f"{icon} {status.state.upper()}"
        if len(state) + len(label) + len(rest) + len(loss) + 2 > width:
            state, rest = icon, f"  {status.step}{total}  loss "  # narrow: the icon says it
        first.append(state, style="bold")
        first.append(f"  {label}", style="bold cyan")
        first.append(rest)
        first.append(loss, style="bold red" if loss in ("NaN", "inf", "-inf") else "bold")
        alarm = _alarm(status, config)
        second = (
            Text(alarm, style="bold white on red")
            if alarm
            else Text(clip_summary(config, latest, captured), style="dim")
        )
        for line in (first, second):
            line.truncate(width, overflow="ellipsis")
        text = Text("\n").join([first, second])
        plain = text.plain + repr(text.spans)
        if plain != self._last:
            self._last = plain
            self.update(text)

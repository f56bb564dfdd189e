"""Plot d: the gradient flow now, one bar per layer of the latest gradient norm.

Drawn by hand with block characters (an eighth of a cell of resolution):
it is redrawn on every frame and costs well under a millisecond. The axis is log10, layers run input → output left to right, so
a vanishing gradient reads as a slope rising to the right at a glance. With
clipping on, each layer shows its raw norm (shaded) beside the applied one.
A white tick marks each layer's norm at step 0, so the starting profile
stays in view after the run has moved on (a stalled sigmoid net ends with
level bars; its first step shows the thousandfold slope that stalled it).
"""

from __future__ import annotations

import math

from engine.records import StepRecord
from tui.plotting import format_number, power_label, rich_color, short_name, short_number
from tui.widgets.panel import Cells, FrameContext, HistoryPanel

_BLOCKS = " ▁▂▃▄▅▆▇█"
_GUTTER = 6  # tick labels and the axis line
_GHOST = "━"  # the step-0 mark


class FlowBars(HistoryPanel):
    """Latest gradient norm per layer as log-scale bars, input → output."""

    TITLE = "Gradient flow now"
    _subtitle: str | None = None  # the last subtitle set

    def data_key(self, ctx: FrameContext):
        """Only the latest record with per-layer norms (and the first) matter."""
        return (ctx.history.latest_measured, ctx.first, ctx.layers, ctx.config.clip)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render the bars into the canvas."""
        # Most steps of a fast run carry the total norms alone (engine.policy).
        record = ctx.history.latest_measured
        self.show_title(self.TITLE if record is None else f"{self.TITLE} · step {record.step}")
        bars = bar_values(record, ctx.layers, ctx.clipping)
        ghosts = {}
        if ctx.first is not None and record is not None and record.step > ctx.first.step:
            ghosts = {layer: pair[0] for layer, pair in bar_values(ctx.first, ctx.layers).items()}
        # Most telling first: the border cuts the subtitle's end when narrow.
        parts = [_ratio_caption(bars, ctx.layers)]
        if ctx.clipping:
            parts.append("[dim]░ raw █ applied[/]")
        if ghosts:
            parts.append(f"{_GHOST} step {ctx.first.step}")
        parts.append("log, input→output")
        subtitle = " · ".join(part for part in parts if part)
        if subtitle != self._subtitle:  # setting it parses markup and repaints, every frame
            self._subtitle = self.border_subtitle = subtitle
        extra = self.range_values(ctx)
        self.surface.show(render_bars(bars, ctx.layers, ctx.colors, width, height, ghosts, extra))

    def range_values(self, ctx: FrameContext) -> list[float]:
        """Values the log axis must also cover (the compare view's other side)."""
        return []


def bar_values(record: StepRecord | None, layers, clipping: bool = False):
    """{layer: (applied norm, raw norm or None)}; None where not yet known."""
    result = {}
    for layer in layers:
        stats = record.layers.get(layer) if record is not None else None
        if stats is None:
            result[layer] = (None, None)
            continue
        raw = stats.raw_grad_norm if clipping else None
        result[layer] = (stats.grad_norm, raw)
    return result


def _ratio_caption(bars, layers) -> str:
    """'h1/o = 5.3e-5': the first layer's norm relative to the last's."""
    if len(layers) < 2:
        return ""
    first, last = bars[layers[0]][0], bars[layers[-1]][0]
    if first is None or last is None:
        return ""
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
        return f"{layers[0]} {format_number(first)} · {layers[-1]} {format_number(last)}"
    return f"{layers[0]}/{layers[-1]} = {format_number(first / last, 2)}"


def _drawable(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _log_range(values) -> tuple[float, float]:
    logs = [math.log10(v) for v in values if _drawable(v)]
    if not logs:
        return -1.0, 1.0
    lo = math.floor(min(logs) - 0.3)  # the smallest bar keeps a visible stub
    hi = math.ceil(max(logs))
    return lo, max(hi, lo + 1)


def render_bars(bars, layers, colors, width: int, height: int, ghosts=None, extra=()) -> Cells:
    """The bar chart: gutter with powers of ten, bars, step-0 marks, names, values.

    `extra` values widen the axis without being drawn (a shared compare axis).
    """
    text = Cells()
    if not layers:
        text.append("waiting for the model's layers…", "dim")
        return text
    ghosts = ghosts or {}
    clipping = any(raw is not None for _, raw in bars.values())
    rows = max(height - (3 if clipping and height >= 5 else 2), 1)
    values = [v for pair in bars.values() for v in pair] + list(ghosts.values()) + list(extra)
    lo, hi = _log_range(values)
    slot = max(1, min((width - _GUTTER) // len(layers), 14))
    per_bar = 2 if clipping else 1
    bar_width = max(1, (slot - 1) // per_bar) if slot > 2 else 1
    # No scale without a finite value to read on it.
    labels = _gutter_labels(lo, hi, rows) if any(map(_drawable, values)) else {}
    ghost_rows = {layer: _ghost_row(v, lo, hi, rows) for layer, v in ghosts.items()}
    for row in range(rows):
        from_bottom = rows - 1 - row
        text.append(labels.get(from_bottom, "").rjust(_GUTTER - 1), "dim")
        text.append("┤" if from_bottom in labels else "│", "dim")
        for layer in layers:
            applied, raw = bars[layer]
            color = rich_color(colors[layer])
            used = 0
            if clipping:
                text.append(
                    _cell(raw, lo, hi, rows, from_bottom, shade=True) * bar_width, f"{color} dim"
                )
                used += bar_width
            char = _cell(applied, lo, hi, rows, from_bottom)
            if ghost_rows.get(layer) == from_bottom:
                # The step-0 mark: white over empty cells, white on the bar's colour inside it.
                style = "bold white" if char == " " else f"bold white on {color}"
                text.append(_GHOST * bar_width, style)
            else:
                text.append(char * bar_width, "bold red" if char == "▓" else color)
            used += bar_width
            text.append(" " * (slot - used))
        text.newline()
    text.append(" " * _GUTTER)
    for layer in layers:
        name = short_name(layer, slot - 1 if slot >= 4 else slot)  # a gap when there is room
        text.append(name.center(slot), f"bold {rich_color(colors[layer])}")
    text.newline()
    text.append(" " * _GUTTER)
    for layer in layers:
        applied, _ = bars[layer]
        label = _value_label(applied, slot)
        style = "bold red" if applied is not None and not math.isfinite(applied) else ""
        text.append(label.center(slot), style)
    if clipping and height >= 5:
        text.newline()
        text.append(" " * _GUTTER)
        for layer in layers:
            _, raw = bars[layer]
            label = "raw " + _value_label(raw, slot - 4) if raw is not None else ""
            text.append(label.center(slot), "dim")
    return text


def _cell(value, lo: float, hi: float, rows: int, from_bottom: int, shade: bool = False) -> str:
    """The character of one bar at one row: a block eighth, a full block or blank."""
    if value is None:
        return " "
    if not math.isfinite(value):
        return "▓"  # non-finite: the whole column, red
    if value <= 0:
        return " "
    fill = (math.log10(value) - lo) / (hi - lo) * rows - from_bottom
    if fill <= 0:
        return " "
    if shade:
        return "░" if fill >= 0.5 else " "
    return _BLOCKS[min(8, max(1, round(fill * 8)))]


def _ghost_row(value, lo: float, hi: float, rows: int) -> int | None:
    """The row (from the bottom) holding the top of a bar of `value`, if drawable."""
    if not _drawable(value):
        return None
    top = (math.log10(value) - lo) / (hi - lo) * rows
    return min(rows - 1, max(0, math.ceil(top) - 1))


def _gutter_labels(lo: float, hi: float, rows: int) -> dict[int, str]:
    """Row (from the bottom) → power-of-ten label, thinned so labels never touch."""
    labels: dict[int, str] = {}
    exponents = list(range(math.ceil(lo), math.floor(hi) + 1))
    stride = max(1, math.ceil(len(exponents) / max(1, (rows + 1) // 2)))
    for exponent in exponents[::-1][::stride]:
        row = min(rows - 1, int((exponent - lo) / (hi - lo) * rows))
        if row not in labels and row - 1 not in labels and row + 1 not in labels:
            labels[row] = power_label(exponent)
    return labels


def _value_label(value, slot: int) -> str:
    return short_number(value, max(slot - 1, 1))

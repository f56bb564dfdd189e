"""Plot e: per-layer histograms of weights, activations or gradients, in the terminal.

The source's violin figures, one panel per kind: each layer gets a strip of
block-character bars over its own range, with the range printed under it, so
both the shape (activations piled at 0.5 under a sigmoid, ReLU's spike at 0)
and the scale (h1's gradients a thousand times narrower than h5's) read.
They come from the latest step that captured activations (step 0 and every
`activation_every`-th step).
"""

from __future__ import annotations

from engine.records import Histogram
from tui.plotting import format_number, rich_color, short_name
from tui.widgets.panel import Cells, FrameContext, HistoryPanel

_BLOCKS = " ▁▂▃▄▅▆▇█"
KIND_TITLES = {"weight": "Weights", "act": "Activations", "grad": "Gradients"}


class HistogramPanel(HistoryPanel):
    """Histograms of one kind ("weight", "act" or "grad") for every layer."""

    def __init__(self, kind: str, **kwargs) -> None:
        self.kind = kind
        self.TITLE = KIND_TITLES[kind]
        super().__init__(**kwargs)

    def data_key(self, ctx: FrameContext):
        """Only the latest record with histograms matters."""
        return (ctx.history.latest_activations, ctx.layers)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render one strip per layer."""
        record = ctx.history.latest_activations
        hists = {}
        if record is not None and record.histograms:
            hists = record.histograms.get(self.kind, {})
        step = f" · step {record.step}" if record is not None else ""
        self.border_title = f"{self.TITLE}{step}"
        self.border_subtitle = "each layer on its own range"
        self.surface.show(render_histograms(hists, ctx.layers, ctx.colors, width, height))


def render_histograms(hists, layers, colors, width: int, height: int) -> Cells:
    """Strips of bars, one per layer, with lo/hi (and 0) marked beneath."""
    text = Cells()
    if not layers:
        text.append("waiting for the model's layers…", "dim")
        return text
    if not hists:
        text.append("no histograms yet: they are taken", "dim")
        text.newline()
        text.append("on step 0 and every activation_every steps", "dim")
        return text
    names = {layer: short_name(layer, 10) for layer in layers}
    gutter = max(len(name) for name in names.values()) + 1
    bar_width = max(width - gutter, 4)
    per_layer = max(1, height // len(layers))
    bar_rows = max(1, min(per_layer - 1, 4))
    for index, layer in enumerate(layers):
        hist = hists.get(layer)
        color = rich_color(colors[layer])
        bars = _strip(hist, bar_width, bar_rows)
        for i, row in enumerate(bars):
            if index or i:
                text.newline()
            name = names[layer] if i == len(bars) - 1 else ""
            text.append(name.ljust(gutter), f"bold {color}")
            text.append(row, color)
        if per_layer >= 2:
            text.newline()
            text.append(" " * gutter)
            for run, style in _range_row(hist, bar_width):
                text.append(run, style)
    return text


def _strip(hist: Histogram | None, width: int, rows: int) -> list[str]:
    """`rows` lines of block characters drawing the counts resampled to `width`."""
    if hist is None or not hist.counts:
        return [" " * width for _ in range(rows - 1)] + ["(not captured)".ljust(width)]
    if not any(hist.counts):
        return [" " * width for _ in range(rows - 1)] + ["(no finite values)".ljust(width)]
    counts = list(hist.counts)
    bins = len(counts)
    cells = []
    for c in range(width):
        start = c * bins // width
        end = max(start + 1, (c + 1) * bins // width)
        cells.append(max(counts[start:end]))
    peak = max(cells) or 1.0
    levels = [value / peak * rows * 8 for value in cells]
    lines = []
    for row in range(rows):
        from_bottom = rows - 1 - row
        line = []
        for level in levels:
            fill = level - from_bottom * 8
            if fill <= 0:
                line.append(" ")
            else:
                line.append(_BLOCKS[min(8, max(1, round(fill)))])
        lines.append("".join(line))
    return lines


def _range_row(hist: Histogram | None, width: int) -> list[tuple[str, str]]:
    """lo at the left edge, hi at the right, 0 where it falls, NaN count in red."""
    if hist is None:
        return []
    lo, hi = format_number(hist.lo, 2), format_number(hist.hi, 2)
    chars = [" "] * width
    for i, ch in enumerate(lo[:width]):
        chars[i] = ch
    start = max(len(lo) + 1, width - len(hi))
    for i, ch in enumerate(hi[: max(width - start, 0)]):
        chars[start + i] = ch
    if hist.lo < 0 < hist.hi:
        zero = int((0 - hist.lo) / (hist.hi - hist.lo) * (width - 1))
        if len(lo) + 1 < zero < start - 1:
            chars[zero] = "0"
    line = "".join(chars)
    if not hist.nonfinite:
        return [(line, "dim")]
    # Non-finite values cannot be binned: say how many there were, mid-row, in red.
    label = f" {format_number(hist.nonfinite)} NaN/inf "
    middle = max(len(lo) + 1, (width - len(label)) // 2)
    return [
        (line[:middle], "dim"),
        (label[: max(width - middle, 0)], "bold red"),
        (line[middle + len(label) :], "dim"),
    ]

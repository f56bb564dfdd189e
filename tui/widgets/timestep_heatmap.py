"""The RNN's heat map: |dL/dh_t| for every time step t (rows) at every training step (columns).

A light renderer of its own, like the flow bars: each character cell holds two
time steps as an upper and a lower half block (fg and bg colours), so 60 time
steps fit in 30 rows. The colour scale is log10 over the finite values shown,
from dark violet (small) to yellow (large); the legend row gives its ends.
Non-finite cells are bright red and exact zeros (no gradient reached that
step, e.g. through a saturated tanh) dark grey: neither is ever a colour of
the scale. Time runs upward, t=1 at the bottom, t=T (next to the loss) on
top, so an explosion back through time reads as colour rising toward the
bottom rows. Older training steps are thinned by the history (every other
row once it holds 256), so the map's cost is bounded.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tui.plotting import NONFINITE_COLOR, format_number, power_label, step_label, step_ticks
from tui.widgets.panel import Cells, FrameContext, HistoryPanel

# A viridis-like scale: violet, blue, teal, green, yellow; no red, which means NaN.
_SCALE = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
LEVELS = 24  # colours the scale is quantized to (so Rich's style cache works)
ZERO_COLOR = (70, 70, 70)
_OK, _ZERO, _BAD = 0, 1, 2  # cell kinds


def scale_color(fraction: float) -> tuple[int, int, int]:
    """The scale's colour at `fraction` (0 = smallest, 1 = largest)."""
    pos = min(max(fraction, 0.0), 1.0) * (len(_SCALE) - 1)
    lo = min(int(pos), len(_SCALE) - 2)
    a, b, f = _SCALE[lo], _SCALE[lo + 1], pos - lo
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


_PALETTE = [scale_color(i / (LEVELS - 1)) for i in range(LEVELS)]


def _rgb(color: tuple[int, int, int]) -> str:
    return f"rgb({color[0]},{color[1]},{color[2]})"


def bin_matrix(values: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean log10, kind) of `values` binned to at most rows × cols contiguous blocks.

    A block is non-finite if any value in it is, zero if none is positive,
    else the mean of the log10 of its positive values. Rows are training
    steps, columns time steps.
    """
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    positive = ~bad & (values > 0)
    logs = np.where(positive, np.log10(np.where(positive, values, 1.0)), 0.0)
    parts = [logs, positive.astype(float), bad.astype(float)]
    for axis, count in ((0, rows), (1, cols)):
        size = values.shape[axis]
        starts = np.unique(np.arange(min(count, size)) * size // max(min(count, size), 1))
        parts = [np.add.reduceat(p, starts, axis=axis) for p in parts]
    total, n_pos, n_bad = parts
    kind = np.where(n_bad > 0, _BAD, np.where(n_pos > 0, _OK, _ZERO))
    mean = np.where(n_pos > 0, total / np.maximum(n_pos, 1), np.nan)
    return mean, kind


def log_extent(values: np.ndarray) -> tuple[float, float] | None:
    """Whole decades around the finite positive values, or None when there are none."""
    values = np.asarray(values, dtype=float)
    good = values[np.isfinite(values) & (values > 0)]
    if not len(good):
        return None
    lo, hi = math.floor(math.log10(good.min())), math.ceil(math.log10(good.max()))
    return float(lo), float(max(hi, lo + 1))


# Every cell colour as a style string: the scale's levels, then NaN/inf, then zero.
_STYLES = [_rgb(c) for c in (*_PALETTE, NONFINITE_COLOR, ZERO_COLOR)]


def color_index(mean: np.ndarray, kind: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Each cell's index into the colours: its level on the scale, or NaN/inf, or zero."""
    with np.errstate(invalid="ignore"):
        level = np.rint((mean - lo) / (hi - lo) * (LEVELS - 1))
    level = np.clip(np.nan_to_num(level), 0, LEVELS - 1).astype(int)
    return np.where(kind == _BAD, LEVELS, np.where(kind == _ZERO, LEVELS + 1, level))


@functools.lru_cache(maxsize=1024)
def _cell_style(upper: int, lower: int | None) -> tuple[str, str]:
    """The glyph and style of a cell whose halves have colours `upper` and `lower`."""
    if lower is None:
        return "▀", _STYLES[upper]
    if lower == upper:  # one colour: a blank on it (no glyph a font could stretch)
        return " ", f"on {_STYLES[upper]}"
    return "▀", f"{_STYLES[upper]} on {_STYLES[lower]}"


def render_heatmap(
    steps: np.ndarray,
    matrix: np.ndarray,
    width: int,
    height: int,
    extent: tuple[float, float] | None = None,
) -> Cells:
    """The map (time up, training steps right), step labels, and the colour legend.

    `extent` fixes the log10 colour range (the compare view shares one);
    by default it spans the values shown.
    """
    cells = Cells()
    steps = np.asarray(steps)
    if matrix.size == 0:
        cells.append("no steps yet: space runs, n steps", "dim")
        return cells
    time_steps = matrix.shape[1]
    labels = {"top": f"t={time_steps}", "bottom": "t=1"}
    gutter = max(len(v) for v in labels.values()) + 1
    map_rows = max(height - 2, 1)  # the step labels and the legend take a row each
    map_cols = max(width - gutter, 1)
    # Per column a block of training steps; the time axis binned to two per row.
    mean, kind = bin_matrix(matrix, map_cols, min(time_steps, 2 * map_rows))
    n_cols, n_time = mean.shape
    repeat = max(1, map_cols // n_cols) if n_cols < map_cols else 1
    extent = extent or log_extent(matrix) or (-1.0, 1.0)
    lo, hi = extent
    # Top row first: the last time bins, two to a row (upper half, lower half).
    index = color_index(mean, kind, lo, hi)
    order = list(range(n_time - 1, -1, -1))
    text_rows = math.ceil(n_time / 2)
    middle = text_rows // 2 if text_rows >= 5 else None
    for r in range(text_rows):
        label = labels["top"] if r == 0 else labels["bottom"] if r == text_rows - 1 else ""
        if r == middle:  # the first time step of the row's upper bin
            label = f"t={order[2 * r] * time_steps // n_time + 1}"
        cells.append(label.rjust(gutter - 1) + ("┤" if label else "│"), "dim")
        upper_t = order[2 * r]
        lower_t = order[2 * r + 1] if 2 * r + 1 < n_time else None
        uppers = index[:, upper_t].tolist()
        lowers = index[:, lower_t].tolist() if lower_t is not None else [None] * n_cols
        for upper, lower in zip(uppers, lowers, strict=True):
            glyph, style = _cell_style(upper, lower)
            cells.append(glyph * repeat, style)
        cells.newline()
    cells.append(" " * gutter)
    cells.append(_step_axis(steps, n_cols, repeat), "dim")
    cells.newline()
    _legend(cells, lo, hi, kind)
    return cells


def _step_axis(steps: np.ndarray, n_cols: int, repeat: int) -> str:
    """Training-step labels under the columns that hold them."""
    used = n_cols * repeat
    chars = [" "] * used
    first, last = float(steps[0]), float(steps[-1])
    ticks, texts = step_ticks(first, last, max(2, used // 8))
    # Column c shows the block of rows starting at index c * len(steps) // n_cols.
    starts = steps[(np.arange(n_cols) * len(steps)) // n_cols]
    free = 0
    for value, text in zip(ticks, texts, strict=True):
        col = int(np.searchsorted(starts, value, side="right")) - 1
        pos = max(col, 0) * repeat
        if pos < free or pos + len(text) > used:
            continue
        chars[pos : pos + len(text)] = text
        free = pos + len(text) + 1
    if free == 0 and used >= len(step_label(last)):  # at least the latest step
        text = step_label(last)
        chars[used - len(text) :] = text
    return "".join(chars)


def _legend(cells: Cells, lo: float, hi: float, kind: np.ndarray) -> None:
    cells.append(" " + power_label(round(lo)) + " ", "dim")
    for i in range(8):
        cells.append("█", _rgb(_PALETTE[round(i * (LEVELS - 1) / 7)]))
    cells.append(" " + power_label(round(hi)), "dim")
    cells.append("  ")
    cells.append("█", _rgb(NONFINITE_COLOR))
    cells.append("NaN/inf", "dim")
    if (kind == _ZERO).any():
        cells.append(" ")
        cells.append("█", _rgb(ZERO_COLOR))
        cells.append("0", "dim")


def time_ratio_caption(steps: np.ndarray, matrix: np.ndarray, width: int = 80) -> str:
    """'|dL/dh_1|/|dL/dh_60| max 1e6 (step 0), now 3e-8': the map's gist, within `width`."""
    if matrix.size == 0:
        return ""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = matrix[:, 0] / matrix[:, -1]
    now = format_number(float(ratios[-1]), 2)
    finite = np.isfinite(ratios)
    worst = int(np.argmax(np.where(finite, ratios, -np.inf))) if finite.any() else None
    peak = "" if worst is None else format_number(float(ratios[worst]), 2)
    for name, at in (
        (f"|dL/dh_1|/|dL/dh_{matrix.shape[1]}|", "step "),
        (f"t1/t{matrix.shape[1]}", "@"),
    ):
        text = f"{name} now {now}"
        if worst is not None:
            text = f"{name} max {peak} ({at}{int(steps[worst])}), now {now}"
        if len(text) <= width:
            break
    return text


class TimestepHeatmap(HistoryPanel):
    """|dL/dh_t| per time step and training step: how the gradient fares back through time."""

    TITLE = "|dL/dh_t| per time step (log)"

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render the map of the history's per-time-step norms."""
        steps, matrix = ctx.history.timestep_matrix()
        caption = time_ratio_caption(steps, matrix, width - 4)
        self.border_subtitle = caption or "time up, training steps right"
        self.surface.show(self.render_cells(ctx, steps, matrix, width, height))

    def render_cells(self, ctx: FrameContext, steps, matrix, width: int, height: int) -> Cells:
        """The map, or why there is none; the compare view overrides the colour range."""
        if matrix.size == 0 and ctx.config.model != "rnn":
            cells = Cells()
            cells.append("only the rnn model has time steps", "dim")
            return cells
        return render_heatmap(steps, matrix, width, height)

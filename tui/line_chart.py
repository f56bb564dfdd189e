"""A light line-chart renderer of the project's own: braille lines, axes, ticks, marks.

The dashboard's line plots were plotext's, at ~12 ms each: three of them
made most of a full frame's cost. This draws the same picture into Cells in
about a millisecond: each character cell holds a 2x4 grid of braille dots,
lines are rasterized with numpy, and the axes and labels are laid out the
way plotext lays them out (tick labels left of a `┤`, a `└┬──` bottom axis,
step labels under it, the axis names on the last row).

Where several lines cross one cell, their dots merge and the cell takes the
colour of the line drawn last.
"""

from __future__ import annotations

import numpy as np

from tui.plotting import rich_color
from tui.widgets.panel import Cells

# Braille dot bits by (row within the cell, column within the cell).
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint8)
_BRAILLE = [chr(0x2800 + code) for code in range(256)]
_FOOTER_ROWS = 3  # the bottom axis, the step labels, the axis names


class LineChart:
    """One chart of `width` x `height` cells: set the axes, add lines and marks, take `cells()`.

    x and y are in axis units (already log or symlog transformed); `y_hi`
    is the top of the data area. Everything outside the limits is clipped.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = max(width, 2)
        self.height = max(height, _FOOTER_ROWS + 1)
        self.x_lo, self.x_hi, self.y_lo, self.y_hi = 0.0, 1.0, 0.0, 1.0
        self.x_ticks: list[tuple[float, str]] = []
        self.y_ticks: list[tuple[float, str]] = []
        self.x_label = self.y_label = ""
        self._layers: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # kind, style, x, y
        self._texts: list[tuple[str, float, float, str, str]] = []

    # -- set up ------------------------------------------------------------
    def limits(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float) -> None:
        """The axis ranges (a zero span is widened so points still land)."""
        if not x_hi > x_lo:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        if not y_hi > y_lo:
            y_lo, y_hi = y_lo - 1, y_hi + 1
        self.x_lo, self.x_hi, self.y_lo, self.y_hi = x_lo, x_hi, y_lo, y_hi

    def ticks(self, x_ticks, x_labels, y_ticks, y_labels) -> None:
        """Tick positions (axis units) and their labels, for both axes."""
        self.x_ticks = list(zip(x_ticks, x_labels, strict=True))
        self.y_ticks = list(zip(y_ticks, y_labels, strict=True))

    def labels(self, x_label: str, y_label: str) -> None:
        """The axis names on the last row: y's at the left, x's centred."""
        self.x_label, self.y_label = x_label, y_label

    # -- content -----------------------------------------------------------
    def line(self, x, y, color: tuple[int, int, int], marker: str = "braille") -> None:
        """A line through the points, in braille dots, or in `marker` characters."""
        self._layers.append((marker, rich_color(color), *_finite(x, y)))

    def points(self, x, y, char: str, color: tuple[int, int, int]) -> None:
        """A character at each point, unconnected (single points, NaN marks)."""
        style = rich_color(color)
        self._layers.append(("point:" + char, style, *_finite(x, y)))

    def text(self, label: str, x: float, y: float, color=None, alignment: str = "left") -> None:
        """A label at (x, y): starting there, ending there (right) or centred on it."""
        style = rich_color(color) if color is not None else ""
        self._texts.append((label, x, y, style, alignment))

    # -- geometry ----------------------------------------------------------
    @property
    def gutter(self) -> int:
        """Columns left of the data: the widest y tick label and the axis line."""
        widest = max((len(label) for _, label in self.y_ticks), default=0)
        return min(widest + 1, self.width - 1)

    def _dots(self, x: np.ndarray, y: np.ndarray, columns: int, rows: int):
        """Dot coordinates (floats) of points on a grid of columns x rows dots."""
        with np.errstate(over="ignore", invalid="ignore"):
            px = (x - self.x_lo) / (self.x_hi - self.x_lo) * (columns - 1)
            py = (self.y_hi - y) / (self.y_hi - self.y_lo) * (rows - 1)
        # Far-off points are pulled in: the visible part of their segments barely moves.
        return np.clip(px, -1e6, 1e6), np.clip(py, -1e6, 1e6)

    def _cell(self, x: float, y: float, cols: int, rows: int) -> tuple[int, int]:
        """(column, row) of the data-area cell that the point (x, y) falls in."""
        px, py = self._dots(np.array([x], dtype=float), np.array([y], dtype=float), cols, rows)
        return int(round(float(px[0]))), int(round(float(py[0])))

    # -- output ------------------------------------------------------------
    def cells(self) -> Cells:
        """The whole chart as styled rows."""
        width, height, gutter = self.width, self.height, self.gutter
        cols, rows = width - gutter, height - _FOOTER_ROWS
        mask = np.zeros((rows, cols), dtype=np.uint8)
        owner = np.full((rows, cols), -1, dtype=np.int32)  # which style a cell takes
        chars: dict[tuple[int, int], str] = {}  # cells a character marker holds
        styles = [style for _, style, _, _ in self._layers]
        layers, index = self._layers, 0
        while index < len(layers):
            kind, _, x, y = layers[index]
            if kind == "braille" and not chars:
                # A run of braille lines over no character cells: drawn in one
                # pass (a plot's ten layers cost ten times numpy's call overhead).
                end = index
                while end < len(layers) and layers[end][0] == "braille":
                    end += 1
                self._draw_braille(layers[index:end], index, cols, rows, mask, owner)
                index = end
                continue
            if kind.startswith("point:"):
                self._place_points(kind[6:], index, x, y, cols, rows, owner, chars)
            else:
                self._draw_line(kind, index, x, y, cols, rows, mask, owner, chars)
            index += 1
        grid = [[" "] * width for _ in range(height)]
        color = [[""] * width for _ in range(height)]
        self._fill_data(grid, color, mask, owner, chars, styles, gutter)
        self._draw_axes(grid, gutter, rows, cols)
        self._draw_texts(grid, color, gutter, rows, cols)
        out = Cells()
        for r in range(height):
            if r:
                out.newline()
            row_chars, row_styles = grid[r], color[r]
            for c in range(width):
                out.append(row_chars[c], row_styles[c])
        return out

    def _draw_braille(self, layers, first: int, cols, rows, mask, owner) -> None:
        """Braille lines `first`, `first + 1`, ... at once: each cell's owner the last drawn.

        The same dots as drawing them one by one: every line's segments (a
        lone point a segment of no length) sampled in one call.
        """
        width, height = cols * 2, rows * 4
        starts, ends, line_of = [], [], []
        for k, (_, _, x, y) in enumerate(layers):
            if not len(x):
                continue
            px, py = self._dots(x, y, width, height)
            if len(px) > 1:
                starts.append((px[:-1], py[:-1]))
                ends.append((px[1:], py[1:]))
            else:
                starts.append((px, py))
                ends.append((px, py))
            line_of.append(np.full(len(starts[-1][0]), first + k, dtype=np.int32))
        if not starts:
            return
        x0, y0 = (np.concatenate([s[i] for s in starts]) for i in (0, 1))
        x1, y1 = (np.concatenate([e[i] for e in ends]) for i in (0, 1))
        px, py, segment = _segment_samples(x0, y0, x1 - x0, y1 - y0, width, height)
        dot_x, dot_y, inside = _inside(px, py, width, height)
        cell = (dot_y // 4, dot_x // 2)
        np.bitwise_or.at(mask, cell, _DOT_BITS[dot_y % 4, dot_x % 2])
        # Lines drawn later have larger indices than every earlier layer.
        np.maximum.at(owner, cell, np.concatenate(line_of)[segment[inside]])

    def _draw_line(self, kind, index, x, y, cols, rows, mask, owner, chars) -> None:
        """Rasterize consecutive segments: enough samples per segment to touch every dot."""
        if not len(x):
            return
        braille = kind == "braille"
        width, height = (cols * 2, rows * 4) if braille else (cols, rows)
        px, py = self._dots(x, y, width, height)
        if len(px) > 1:
            px, py, _ = _segment_samples(px[:-1], py[:-1], np.diff(px), np.diff(py), width, height)
        dot_x, dot_y, _ = _inside(px, py, width, height)
        if braille:
            cell_r, cell_c = dot_y // 4, dot_x // 2
            np.bitwise_or.at(mask, (cell_r, cell_c), _DOT_BITS[dot_y % 4, dot_x % 2])
            owner[cell_r, cell_c] = index
            for cell in set(zip(cell_r.tolist(), cell_c.tolist(), strict=True)) & chars.keys():
                del chars[cell]  # drawn over: the braille shows again
        else:
            owner[dot_y, dot_x] = index
            for cell in zip(dot_y.tolist(), dot_x.tolist(), strict=True):
                chars[cell] = kind

    def _place_points(self, char, index, x, y, cols, rows, owner, chars) -> None:
        """One character per point, in the cell the point falls in."""
        px, py = self._dots(x, y, cols, rows)
        for c, r in zip(np.rint(px).tolist(), np.rint(py).tolist(), strict=True):
            if 0 <= r < rows and 0 <= c < cols:
                owner[int(r), int(c)] = index
                chars[int(r), int(c)] = char

    def _fill_data(self, grid, color, mask, owner, chars, styles, gutter) -> None:
        """Copy the data area's dots and characters into the grid."""
        for r, c in zip(*np.nonzero(owner >= 0), strict=True):
            r, c = int(r), int(c)
            grid[r][gutter + c] = chars.get((r, c)) or _BRAILLE[mask[r, c]]
            color[r][gutter + c] = styles[owner[r, c]]

    def _draw_axes(self, grid, gutter, rows, cols) -> None:
        """The y axis with its tick labels, the bottom axis, step labels and axis names."""
        axis = gutter - 1
        tick_rows = {}
        for value, label in self.y_ticks:
            row = self._cell(self.x_lo, value, cols, rows)[1]
            if 0 <= row < rows:
                tick_rows[row] = label
        for r in range(rows):
            label = tick_rows.get(r)
            if label is not None:
                _put(grid[r], axis - len(label), label)
            grid[r][axis] = "┤" if label is not None else "│"
        bottom, under = grid[rows], grid[rows + 1]
        bottom[axis] = "└"
        for c in range(cols):
            bottom[gutter + c] = "─"
        free_from = 0  # step labels must not run into each other
        for value, label in self.x_ticks:
            column = self._cell(value, self.y_lo, cols, rows)[0]
            if not 0 <= column < cols:
                continue
            bottom[gutter + column] = "┬"
            start = min(max(gutter + column - len(label) // 2, 0), self.width - len(label))
            if start >= free_from:
                _put(under, start, label)
                free_from = start + len(label) + 1
        names = grid[rows + 2]
        _put(names, 0, self.y_label[: self.width])
        x_start = gutter + (cols - len(self.x_label)) // 2
        _put(names, max(x_start, len(self.y_label) + 1), self.x_label)

    def _draw_texts(self, grid, color, gutter, rows, cols) -> None:
        """Labels over the data area, kept inside it."""
        for label, x, y, style, alignment in self._texts:
            label = label[:cols]
            column, row = self._cell(x, y, cols, rows)
            if alignment == "right":
                column -= len(label) - 1
            elif alignment == "center":
                column -= len(label) // 2
            column = min(max(column, 0), cols - len(label))
            row = min(max(row, 0), rows - 1)
            for offset, char in enumerate(label):
                grid[row][gutter + column + offset] = char
                color[row][gutter + column + offset] = style


def _finite(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The points with both coordinates finite (callers mark NaN/inf separately)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _inside(px, py, width: int, height: int):
    """(dot columns, dot rows, which samples) of the samples that land on the grid."""
    dot_x, dot_y = np.rint(px).astype(np.int64), np.rint(py).astype(np.int64)
    inside = (dot_y >= 0) & (dot_y < height) & (dot_x >= 0) & (dot_x < width)
    return dot_x[inside], dot_y[inside], inside


def _segment_samples(x0, y0, dx, dy, width: int, height: int):
    """Points along each segment from (x0, y0) by (dx, dy), a dot apart, inside the grid.

    Also which segment each point is on. Segments are first clipped to the
    grid (Liang-Barsky), so a point far off the chart (a loss of 1e30 on a
    linear axis) costs no more than one inside. `_dots` has already pulled
    far-off points to a million dots away.
    """
    t0, t1 = np.zeros(len(dx)), np.ones(len(dx))
    rejected = np.zeros(len(dx), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in (
            (-dx, x0 + 0.5),
            (dx, width - 0.5 - x0),
            (-dy, y0 + 0.5),
            (dy, height - 0.5 - y0),
        ):
            r = q / p
            t0 = np.where(p < 0, np.maximum(t0, r), t0)
            t1 = np.where(p > 0, np.minimum(t1, r), t1)
            rejected |= (p == 0) & (q < 0)
    kept = np.flatnonzero(~rejected & (t0 <= t1))
    x0, y0, dx, dy, t0, t1 = x0[kept], y0[kept], dx[kept], dy[kept], t0[kept], t1[kept]
    x0, y0, dx, dy = x0 + t0 * dx, y0 + t0 * dy, (t1 - t0) * dx, (t1 - t0) * dy
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.int64) + 1
    segment = np.repeat(np.arange(len(steps)), steps)
    offset = np.arange(int(steps.sum())) - (np.cumsum(steps) - steps)[segment]
    t = offset / np.maximum(steps - 1, 1)[segment]
    return x0[segment] + t * dx[segment], y0[segment] + t * dy[segment], kept[segment]


def _put(row: list[str], start: int, text: str) -> None:
    """Write text into a row of characters from `start`, cut at the row's end."""
    for offset, char in enumerate(text):
        if 0 <= start + offset < len(row):
            row[start + offset] = char


def empty_chart(chart: LineChart, messages: list[str]) -> Cells:
    """Bare axes with messages centred in the data area (a plot with nothing to show)."""
    chart.limits(0.0, 1.0, 0.0, 1.0)
    chart.ticks([0.0], ["0"], [], [])
    for index, message in enumerate(messages):
        chart.text(message, 0.5, 0.5 - 0.2 * index, alignment="center")
    return chart.cells()

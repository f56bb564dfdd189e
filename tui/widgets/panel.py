"""The base of every view of the history: a bordered panel redrawn only when its input moved.

The app's frame timer hands each visible panel a FrameContext; a panel asks
`data_key` whether anything it shows has changed since its last drawing (the
history's version, the layers, its own size) and does nothing when not.
Panels added later (a diagnosis, a heat map) subclass HistoryPanel and are
picked up by the app with no other change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from engine.config import RunConfig
from engine.history import History
from engine.records import StepRecord
from engine.session import SessionStatus
from tui.plotting import layer_colors


@dataclass(frozen=True)
class FrameContext:
    """What one frame draws from: the history, a status snapshot, the running config."""

    history: History
    status: SessionStatus
    config: RunConfig  # the config of the running session (not the form's)
    layers: tuple[str, ...]  # input to output
    version: int  # history.version read once, so every panel of a frame agrees
    first: StepRecord | None = None  # the run's first record (step 0), kept by the app

    @property
    def colors(self) -> dict[str, tuple[int, int, int]]:
        """Each layer's colour, input (cool) to output (warm)."""
        return dict(zip(self.layers, layer_colors(len(self.layers)), strict=True))

    @property
    def clipping(self) -> bool:
        """Whether raw and applied gradients differ by design in this run."""
        return self.config.clip != "none"


class Cells:
    """Rows of styled runs, built left to right: the light renderers' output.

    Cheaper than a Rich Text with a span per cell: consecutive runs of one
    style merge, and the canvas turns each row straight into a Strip.
    """

    def __init__(self) -> None:
        self.rows: list[list[list[str]]] = [[]]

    def append(self, text: str, style: str = "") -> None:
        """Add text in a style (a Rich style string) to the current row."""
        if not text:
            return
        row = self.rows[-1]
        if row and row[-1][1] == style:
            row[-1][0] += text
        else:
            row.append([text, style])

    def newline(self) -> None:
        """Start the next row."""
        self.rows.append([])

    @property
    def plain(self) -> str:
        """The text without styles, rows joined by newlines."""
        return "\n".join("".join(text for text, _ in row) for row in self.rows)

    def styles_of(self, fragment: str) -> set[str]:
        """The styles of the runs containing `fragment` (for tests)."""
        return {style for row in self.rows for text, style in row if fragment in text}


class Canvas(Widget):
    """Shows prepared Cells, one Strip per row: the light renderers' surface."""

    DEFAULT_CSS = "Canvas { width: 1fr; height: 1fr; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cells = Cells()
        self._strips: list[Strip] = []
        self._base: Style | None = None  # the widget's style the strips were built on

    def show(self, cells: Cells) -> None:
        """Replace what is shown (repaints, never relayouts; not at all when unchanged)."""
        base = self.rich_style
        # Most frames of a fast run change a few panels only: skip the repaint of the rest.
        if self._strips and cells.rows == self.cells.rows and base == self._base:
            return
        self.cells = cells
        self._build(base)

    def notify_style_update(self) -> None:
        """Rebuild the rows on the new style (a class or CSS change), with no new data."""
        super().notify_style_update()
        if self._strips:
            self._build(self.rich_style)

    def _build(self, base: Style) -> None:
        self._base = base
        self._strips = [
            Strip(
                [Segment(text, base + Style.parse(style) if style else base) for text, style in row]
            )
            for row in self.cells.rows
        ]
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """Row y, cropped or padded to the widget's width."""
        width = self.size.width
        # The style the strips were built on, not `rich_style` again: that walks the
        # widget's ancestors' styles each call, and was a third of a steady frame's
        # compositing (the strips and this base are rebuilt whenever the style changes).
        base = self._base if self._base is not None else self.rich_style
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, base)
        return Strip.blank(width, base)


class HistoryPanel(Widget):
    """A titled, bordered view of the history; subclasses implement `draw`."""

    DEFAULT_CSS = """
    HistoryPanel {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-title-style: bold;
        height: 1fr;
        width: 1fr;
        padding: 0 0;
    }
    """

    TITLE = ""
    HEAVY = False  # True for the line plots: the app spreads their redraws over frames

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._drawn_key: Any = None
        self.drawn_at = 0.0  # time.monotonic() of the last drawing
        self._title_row_only = False  # while show_title sets the title
        self.border_title = self.TITLE

    def show_title(self, title: str) -> None:
        """Set the border title, repainting the top border row only.

        For titles that change every frame (the flow bars' step): setting
        `border_title` repaints the whole panel, border rows and all.
        """
        if title == self.border_title:
            return
        self._title_row_only = True
        try:
            self.border_title = title
        finally:
            self._title_row_only = False

    def refresh(self, *regions: Region, **kwargs: Any) -> HistoryPanel:
        """Widget.refresh, limited to the title row while show_title sets it."""
        if self._title_row_only and not regions and not kwargs:
            left, top = self.content_offset  # regions are relative to the content
            regions = (Region(-left, -top, self.outer_size.width, 1),)
        return super().refresh(*regions, **kwargs)

    def compose(self) -> ComposeResult:
        """One canvas, which the panel fills with Cells."""
        yield Canvas()

    @property
    def surface(self) -> Widget:
        """The child that is drawn on."""
        return self.children[0]

    def data_key(self, ctx: FrameContext) -> Any:
        """What the drawing depends on; the panel is redrawn when it changes."""
        return (ctx.history, ctx.version, ctx.layers, ctx.config)

    @property
    def drawn(self) -> bool:
        """Whether the panel has been drawn at least once."""
        return self._drawn_key is not None

    def needs_draw(self, ctx: FrameContext) -> bool:
        """Whether the data or the size moved since the last drawing."""
        if not self.children:
            return False
        size = self.surface.size
        if size.width < 2 or size.height < 1:
            return False
        return (self.data_key(ctx), size) != self._drawn_key

    def update_frame(self, ctx: FrameContext, force: bool = False) -> bool:
        """Draw if the data or the size moved since the last drawing; True if drawn."""
        if not (force or self.needs_draw(ctx)) or not self.children:
            return False
        size = self.surface.size
        if size.width < 2 or size.height < 1:
            return False
        self._drawn_key = (self.data_key(ctx), size)
        self.drawn_at = time.monotonic()
        self.draw(ctx, size.width, size.height)
        return True

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render the context into the surface (width × height cells)."""
        raise NotImplementedError

    def take_render_time(self) -> float:
        """CPU seconds the surface spent rendering since the last call (plots measure it)."""
        return 0.0

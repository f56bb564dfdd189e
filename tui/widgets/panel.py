"""The base of every view of the history: a bordered panel redrawn only when its input moved.

The app's frame timer hands each visible panel a FrameContext; a panel asks
`data_key` whether anything it shows has changed since its last drawing (the
history's version, the layers, its own size) and does nothing when not.
Panels added later (a diagnosis, a heat map) subclass HistoryPanel and are
picked up by the app with no other change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.widget import Widget

from engine.config import RunConfig
from engine.history import History
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

    @property
    def colors(self) -> dict[str, tuple[int, int, int]]:
        """Each layer's colour, input (cool) to output (warm)."""
        return dict(zip(self.layers, layer_colors(len(self.layers)), strict=True))

    @property
    def clipping(self) -> bool:
        """Whether raw and applied gradients differ by design in this run."""
        return self.config.clip != "none"


class Canvas(Widget):
    """A widget that shows a prepared Rich Text: the light renderer's surface."""

    DEFAULT_CSS = "Canvas { width: 1fr; height: 1fr; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = Text()

    def show(self, text: Text) -> None:
        """Replace what is shown (repaints, never relayouts)."""
        self._text = text
        self.refresh()

    def render(self) -> RenderResult:
        """The prepared text, cropped by the widget."""
        return self._text


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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._drawn_key: Any = None
        self.border_title = self.TITLE

    def compose(self) -> ComposeResult:
        """One canvas by default; plotext panels compose a PlotextPlot instead."""
        yield Canvas()

    @property
    def surface(self) -> Widget:
        """The child that is drawn on."""
        return self.children[0]

    def data_key(self, ctx: FrameContext) -> Any:
        """What the drawing depends on; the panel is redrawn when it changes."""
        return (ctx.history, ctx.version, ctx.layers, ctx.config)

    def update_frame(self, ctx: FrameContext, force: bool = False) -> bool:
        """Draw if the data or the size moved since the last drawing; True if drawn."""
        if not self.children:
            return False
        size = self.surface.size
        if size.width < 2 or size.height < 1:
            return False
        key = (self.data_key(ctx), size)
        if key == self._drawn_key and not force:
            return False
        self._drawn_key = key
        self.draw(ctx, size.width, size.height)
        return True

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Render the context into the surface (width × height cells)."""
        raise NotImplementedError

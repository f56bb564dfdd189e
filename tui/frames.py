"""One frame's drawing: which panels are visible, and which of them redraw now.

Cheap panels (status, flow bars, histograms) redraw whenever their data
moved. The plotext plots cost ~10 ms each, so they take turns: one redraw
per frame, the stalest first. A frame therefore costs about one plot,
whatever the run's length or the number of layers, and every plot still
catches up within a few frames.
"""

from __future__ import annotations

from collections.abc import Iterable

from tui.widgets.panel import FrameContext, HistoryPanel


def visible_panels(panels: Iterable[HistoryPanel]) -> list[HistoryPanel]:
    """The panels shown now: displayed, and every container above them too."""
    return [
        panel
        for panel in panels
        if all(node.display for node in panel.ancestors_with_self if hasattr(node, "display"))
    ]


def draw_frame(panels: list[HistoryPanel], ctx: FrameContext, force: bool = False) -> bool:
    """Draw what moved (all of it when forced); True once every panel shows ctx.version."""
    heavy = []
    for panel in panels:
        if panel.HEAVY and not force:
            heavy.append(panel)
        else:
            panel.update_frame(ctx, force)
    stale = [panel for panel in heavy if panel.needs_draw(ctx)]
    if stale:
        min(stale, key=lambda panel: panel.drawn_at).update_frame(ctx)
    return all(panel.drawn and not panel.needs_draw(ctx) for panel in panels)

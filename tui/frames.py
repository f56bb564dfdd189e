"""One frame's drawing: which panels are visible, and which of them redraw now.

Cheap panels (status, flow bars, histograms) redraw whenever their data
moved. The line plots cost the most (1-3 ms each with ten layers: a series
per layer read from the history, then rasterized), so they take turns: at
most one redraw per frame, the stalest first. A frame therefore costs at most one plot,
whatever the run's length or the number of layers, and every plot still
catches up within a few frames.

While a run trains unthrottled, the UI thread and the training thread share
the interpreter's lock: every millisecond spent drawing is one the model does
not train. A PlotPacer then also spaces the plots' turns out so that they
take about PLOT_SHARE of a core (each plot redraws about once a second at
120x40); the cheap panels keep the full frame rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tui.widgets.panel import FrameContext, HistoryPanel

PLOT_SHARE = 0.03  # of one core: what plot redraws may take while a run trains unthrottled


class PlotPacer:
    """Spaces plot redraws so that their CPU time stays near `share` of a core.

    Each redraw is charged its CPU time (the drawing, and its render in the
    compositor, which the panel reports afterwards); the next one may start
    once that time, divided by `share`, has passed. Unused time is not saved
    up, so a pause never buys a burst of redraws later.
    """

    def __init__(self, share: float = PLOT_SHARE) -> None:
        self.share = share
        self.free_at = 0.0  # time.monotonic() from which the next redraw may start

    def ready(self) -> bool:
        """Whether a plot may redraw now."""
        return time.monotonic() >= self.free_at

    def charge(self, seconds: float) -> None:
        """Account `seconds` of CPU time spent on plots."""
        if seconds > 0:
            self.free_at = max(self.free_at, time.monotonic()) + seconds / self.share


def visible_panels(panels: Iterable[HistoryPanel]) -> list[HistoryPanel]:
    """The panels shown now: displayed, and every container above them too."""
    return [
        panel
        for panel in panels
        if all(node.display for node in panel.ancestors_with_self if hasattr(node, "display"))
    ]


def draw_frame(
    panels: list[HistoryPanel],
    ctx: FrameContext,
    force: bool = False,
    pacer: PlotPacer | None = None,
) -> bool:
    """Draw what moved (all of it when forced); True once every panel shows ctx.version.

    With a `pacer`, a stale plot waits for its turn until the pacer is ready.
    """
    heavy = []
    for panel in panels:
        if panel.HEAVY and not force:
            heavy.append(panel)
        else:
            panel.update_frame(ctx, force)
    # The renders of earlier redraws, done by the compositor since the last frame.
    rendered = sum(panel.take_render_time() for panel in heavy)
    if pacer is not None:
        pacer.charge(rendered)
    stale = [panel for panel in heavy if panel.needs_draw(ctx)]
    if stale and (pacer is None or pacer.ready()):
        started = time.thread_time()
        min(stale, key=lambda panel: panel.drawn_at).update_frame(ctx)
        if pacer is not None:
            pacer.charge(time.thread_time() - started)
    return all(panel.drawn and not panel.needs_draw(ctx) for panel in panels)

"""The diagnosis in the dashboard: a one-line verdict on the main view, the full panel in Lab.

Both read `engine.diagnosis.diagnose` on the session's history. It is a pure
function of the recorded statistics costing about a millisecond, but it reads
whole series, so while the run goes it is recomputed at most every
MIN_INTERVAL seconds; a paused or stepped run is diagnosed on the frame its
step arrives. One frame's diagnosis is cached and shared by both widgets.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from engine.diagnosis import Diagnosis, diagnose
from engine.session import RUNNING
from tui.widgets.panel import Cells, FrameContext, HistoryPanel

MIN_INTERVAL = 0.3  # seconds between two diagnoses of a running session

VERDICT_COLORS = {
    "exploding": "rgb(255,70,70)",
    "clipping": "rgb(255,190,60)",
    "dead": "rgb(220,110,255)",
    "vanishing": "rgb(90,160,255)",
    "saturated": "rgb(255,150,40)",
    "healthy": "rgb(80,220,120)",
    "waiting": "rgb(150,150,150)",
}

_cache: tuple[tuple, Diagnosis] | None = None


def frame_diagnosis(ctx: FrameContext) -> Diagnosis:
    """The diagnosis of the frame's history, computed once per history version."""
    global _cache
    key = (id(ctx.history), ctx.version, ctx.config, ctx.status.first_nonfinite)
    if _cache is None or _cache[0] != key:
        try:
            found = diagnose(ctx.history, ctx.config, ctx.status.first_nonfinite)
        except Exception as error:  # a bug in a rule must not take the dashboard down
            found = Diagnosis("waiting", f"no diagnosis: {type(error).__name__}: {error}")
        _cache = (key, found)
    return _cache[1]


def verdict_style(verdict: str) -> str:
    """The Rich colour of a verdict (red exploding, blue vanishing, green healthy…)."""
    return VERDICT_COLORS.get(verdict, "white")


def headline_text(diagnosis: Diagnosis) -> str:
    """The headline without its 'verdict: ' prefix (the verdict is shown as a badge)."""
    prefix = f"{diagnosis.verdict}: "
    head = diagnosis.headline
    return head[len(prefix) :] if head.startswith(prefix) else head


class _Throttled(HistoryPanel):
    """A panel that, while the session runs, redraws at most every MIN_INTERVAL seconds."""

    def needs_draw(self, ctx: FrameContext) -> bool:
        """As HistoryPanel, but a running session's frames are thinned out."""
        if not super().needs_draw(ctx):
            return False
        recent = time.monotonic() - self.drawn_at < MIN_INTERVAL
        return not (ctx.status.state == RUNNING and recent and self.drawn)


class VerdictLine(_Throttled):
    """One row over the plots: the verdict badge and its headline, in the verdict's colour."""

    DEFAULT_CSS = """
    VerdictLine { border: none; height: 1; padding: 0 1; background: $boost; }
    """

    def data_key(self, ctx: FrameContext):
        """What the diagnosis reads."""
        return (ctx.history, ctx.version, ctx.config, ctx.status.first_nonfinite)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Badge, headline, and where to read more when there is room."""
        diagnosis = frame_diagnosis(ctx)
        color = verdict_style(diagnosis.verdict)
        cells = Cells()
        badge = f" {diagnosis.verdict.upper()} "
        cells.append(badge, f"bold black on {color}")
        room = width - len(badge) - 1
        head = headline_text(diagnosis)
        hint = "  (d → Lab: evidence, remedies)"
        if diagnosis.verdict != "waiting" and len(head) + len(hint) <= room:
            head += hint
        if len(head) > room:
            head = head[: max(room - 1, 0)] + "…"
        cells.append(" " + head, f"bold {color}")
        self.surface.show(cells)


class DiagnosisPanel(_Throttled):
    """The verdict with its evidence, side notes and the slides' remedies, wrapped to fit."""

    TITLE = "Diagnosis"
    DEFAULT_CSS = """
    DiagnosisPanel Static { width: 1fr; height: 1fr; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        """A wrapping Static: the diagnosis is sentences, not a plot."""
        yield Static()

    def data_key(self, ctx: FrameContext):
        """What the diagnosis reads."""
        return (ctx.history, ctx.version, ctx.config, ctx.status.first_nonfinite)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """The verdict's text, and the border in the verdict's colour."""
        diagnosis = frame_diagnosis(ctx)
        color = verdict_style(diagnosis.verdict)
        step = "" if diagnosis.step is None else f" · step {diagnosis.step}"
        self.border_title = f"{self.TITLE}{step}"
        self.border_subtitle = "read from the recorded statistics"
        self.styles.border = ("round", color)
        self.surface.update(diagnosis_text(diagnosis))


def diagnosis_text(diagnosis: Diagnosis) -> Text:
    """Badge and headline, then evidence, notes and remedies as short lists."""
    color = verdict_style(diagnosis.verdict)
    text = Text()
    text.append(f" {diagnosis.verdict.upper()} ", style=f"bold black on {color}")
    text.append(" " + headline_text(diagnosis) + "\n", style=f"bold {color}")
    for title, lines, mark in (
        ("evidence", diagnosis.evidence, "•"),
        ("also", diagnosis.notes, "•"),
        ("remedies", diagnosis.remedies, "→"),
    ):
        if not lines:
            continue
        text.append(f"\n{title}\n", style="bold")
        for line in lines:
            text.append(f" {mark} ", style=color)
            text.append(line + "\n")
    if diagnosis.verdict == "waiting":
        text.append("\nspace runs, n steps: the verdict follows the statistics\n", style="dim")
    return text

"""The diagnosis in the dashboard: a one-line verdict on the main view, the full panel in Lab.

Both read `engine.diagnosis.diagnose` on the session's history. It is a pure
function of the recorded statistics costing about a millisecond, but it reads
whole series, so while the run goes it is recomputed at most every
MIN_INTERVAL seconds; a paused or stepped run is diagnosed on the frame its
step arrives. A frame's diagnosis is cached and shared by both widgets.

The verdict reads the latest statistics, so it can change as the run goes
on: a sigmoid net that stalls ends with level gradients and reads healthy.
Like the flow bars' step-0 marks, the step-0 verdict (the run's first
record, diagnosed once) stays in view whenever it differs from the verdict
now: "HEALTHY … · step 0: VANISHING".
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from engine.diagnosis import HEALTHY, WAITING, Diagnosis, diagnose, diagnose_records
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

# A few entries (the compare view has two histories). Keyed by the id of what was
# diagnosed, which the entry keeps alive, so an id is never reused while cached.
_cache: dict[tuple, tuple[object, Diagnosis]] = {}


def _cached(anchor: object, key: tuple, compute) -> Diagnosis:
    key = (id(anchor), *key)
    hit = _cache.get(key)
    if hit is not None and hit[0] is anchor:
        return hit[1]
    try:
        found = compute()
    except Exception as error:  # a bug in a rule must not take the dashboard down
        found = Diagnosis(WAITING, f"no diagnosis: {type(error).__name__}: {error}")
    if len(_cache) >= 8:
        _cache.clear()
    _cache[key] = (anchor, found)
    return found


def frame_diagnosis(ctx: FrameContext) -> Diagnosis:
    """The diagnosis of the frame's history, computed once per history version."""
    nonfinite = ctx.status.first_nonfinite
    key = ("now", ctx.version, ctx.config, nonfinite)
    return _cached(ctx.history, key, lambda: diagnose(ctx.history, ctx.config, nonfinite))


def first_diagnosis(ctx: FrameContext) -> Diagnosis | None:
    """The verdict on the run's first record (step 0) alone, or None before it exists."""
    first = ctx.first
    if first is None:
        return None
    return _cached(first, ("first", ctx.config), lambda: diagnose_records([first], ctx.config))


def earlier_verdict(ctx: FrameContext, now: Diagnosis) -> Diagnosis | None:
    """The step-0 diagnosis when it found a problem the verdict now no longer names."""
    first = first_diagnosis(ctx)
    if first is None or now.step is None or now.step <= (first.step or 0):
        return None
    if first.verdict in (HEALTHY, WAITING) or first.verdict == now.verdict:
        return None
    return first


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
        return (ctx.history, ctx.version, ctx.config, ctx.status.first_nonfinite, ctx.first)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """Badge, headline, the step-0 verdict if it differs, where to read more if room."""
        diagnosis = frame_diagnosis(ctx)
        color = verdict_style(diagnosis.verdict)
        cells = Cells()
        badge = f" {diagnosis.verdict.upper()} "
        cells.append(badge, f"bold black on {color}")
        earlier = earlier_verdict(ctx, diagnosis)
        note = f" · step 0: {earlier.verdict.upper()}" if earlier else ""
        room = width - len(badge) - 1 - len(note)
        head = headline_text(diagnosis)
        hint = "  (d → Lab: evidence, remedies)"
        if diagnosis.verdict != WAITING and len(head) + len(hint) <= room:
            head += hint
        if len(head) > room:
            head = head[: max(room - 1, 0)] + "…"
        cells.append(" " + head, f"bold {color}")
        if earlier:
            cells.append(note, f"bold {verdict_style(earlier.verdict)}")
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
        return (ctx.history, ctx.version, ctx.config, ctx.status.first_nonfinite, ctx.first)

    def draw(self, ctx: FrameContext, width: int, height: int) -> None:
        """The verdict's text, and the border in the verdict's colour."""
        diagnosis = frame_diagnosis(ctx)
        earlier = earlier_verdict(ctx, diagnosis)
        color = verdict_style(diagnosis.verdict)
        step = "" if diagnosis.step is None else f" · step {diagnosis.step}"
        self.border_title = f"{self.TITLE}{step}"
        self.border_subtitle = "read from the recorded statistics"
        self.styles.border = ("round", color)
        self.surface.update(diagnosis_text(diagnosis, earlier))


def diagnosis_text(diagnosis: Diagnosis, earlier: Diagnosis | None = None) -> Text:
    """Badge and headline, then evidence, notes and remedies; the step-0 verdict if it differs."""
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
    if earlier is not None:
        tint = verdict_style(earlier.verdict)
        text.append("\nat step 0 ", style="bold")
        text.append(f" {earlier.verdict.upper()} ", style=f"bold black on {tint}")
        text.append(" " + headline_text(earlier) + "\n", style=tint)
        for line in earlier.remedies:
            text.append(" → ", style=tint)
            text.append(line + "\n")
    if diagnosis.verdict == WAITING:
        text.append("\nspace runs, n steps: the verdict follows the statistics\n", style="dim")
    return text

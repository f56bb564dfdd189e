"""The status line: what runs, how far, how fast, what clipping does, and the alarm.

A plain Static re-rendered from a status snapshot; it only repaints when its
text changes, and only asks for a layout when its wrapped height changes: a
layout re-arranges the whole screen and redraws every plot, and one per frame
was most of the dashboard's cost while a run trained. While the run goes the
bar does not shrink either: a line that wraps on and off as the numbers
change would make every panel below it jump. The red alarm names the first
non-finite step and layer, or the exception that ended the training thread.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text
from textual.visual import visualize
from textual.widgets import Static

from engine.config import RunConfig
from engine.policy import ACTIVATION_BUDGET, STATS_BUDGET
from engine.records import StepRecord
from engine.session import ERROR, RUNNING, SessionStatus
from tui.plotting import format_number

_TOKENS = re.compile(r"\S+|\s+")

_STATE_ICONS = {
    "idle": "■",
    "preparing": "…",
    "running": "▶",
    "paused": "‖",
    "finished": "✔",
    "stopped": "■",
    "error": "✖",
}


def capture_policy(
    config: RunConfig, period: int | None = None, stats_period: int | None = None
) -> str:
    """The sampling policy in words, e.g. 'stats every step, activations every 10'.

    `period` and `stats_period` are the activation and statistics periods in
    force; when the engine's budget (engine.policy) spaced them out, the text
    says so.
    """
    budget = config.sampling == "budget"

    def every(configured: int, now: int | None, share: str) -> str:
        if now is not None and now != configured and budget:
            return f"every ~{now} (≤{share} of time)"
        return "every step" if configured == 1 else f"every {configured}"

    stats = every(config.capture_every, stats_period, f"{STATS_BUDGET:.1%}")
    acts = every(config.activation_every, period, f"{ACTIVATION_BUDGET:.1%}")
    return f"stats {stats}, activations {acts}"


def clip_summary(config: RunConfig, latest: StepRecord | None, captured: StepRecord | None) -> str:
    """The clipping mode and, once steps exist, what it changed on the latest one."""
    mode = {
        "none": "none",
        "value": f"value ±{format_number(config.clip_value)} after backward",
        "norm": f"norm ≤{format_number(config.max_norm)} (L{config.norm_type}) after backward",
        "hook": f"hook clamp ±{format_number(config.clip_value)} during backward",
        "timestep": f"timestep clamp ±{format_number(config.clip_value)}",
    }.get(config.clip, config.clip)
    text = f"clip: {mode}"
    if config.clip == "none" or latest is None:
        return text
    if captured is not None and captured.clipped_frac is not None:
        text += f" · {captured.clipped_frac:.0%} of elements clipped"
    text += (
        f" · total ‖g‖ {format_number(latest.grad_norm)}"
        f" → {format_number(latest.grad_norm_clipped)}"
    )
    return text


class StatusBar(Static):
    """Two lines of run state, plus a red alarm line once something went wrong."""

    DEFAULT_CSS = """
    StatusBar { height: auto; padding: 0 1; background: $boost; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._last_plain = ""
        self._heights: dict[tuple, int] = {}  # (width, word shape) -> wrapped rows
        self.alarm = ""  # the alarm line's text, for tests and summaries

    def show(
        self,
        status: SessionStatus,
        config: RunConfig,
        preset: str,
        latest: StepRecord | None,
        captured: StepRecord | None,
        speed: float | None,
        show_rate: bool = True,
    ) -> None:
        """Update from a snapshot; repaints only when the text changed."""
        text = Text(no_wrap=False)
        icon = _STATE_ICONS.get(status.state, "?")
        text.append(f"{icon} {status.state.upper()}", style="bold")
        text.append(f"  {preset}", style="bold cyan")
        # A count of steps trained; plots and the alarm name steps by index (from 0).
        total = f"/{status.total_steps}" if status.total_steps else ""
        text.append(f"  trained {status.step}{total} steps")
        epoch = status.epoch + 1 if status.step else 0
        text.append(f"  epoch {epoch}/{config.epochs}")
        loss = format_number(latest.loss, 4) if latest is not None else "—"
        bad_loss = latest is not None and loss in ("NaN", "inf", "-inf")
        text.append("  loss ")
        text.append(loss, style="bold red" if bad_loss else "bold")
        text.append("\n")
        rate = f"{status.steps_per_second:.1f}" if show_rate else "—"
        limit = "" if not speed else f" (limit {format_number(speed)})"
        text.append(f"{rate} steps/s{limit} │ ")
        text.append(clip_summary(config, latest, captured))
        # The spaced-out periods come from measured step times: hidden with the rate.
        period = status.activation_period if show_rate else None
        stats_period = status.stats_period if show_rate else None
        text.append(f" │ {capture_policy(config, period, stats_period)}", style="dim")
        if status.device:
            text.append(f" │ {status.device}", style="dim")
        self.alarm = _alarm(status, config)
        if self.alarm:
            text.append("\n")
            text.append(f" {self.alarm} ", style="bold white on red")
        plain = text.plain + repr(text.spans)
        if plain != self._last_plain:
            self._last_plain = plain
            self.update(text, layout=self._needs_layout(text, status.state == RUNNING))

    def _needs_layout(self, text: Text, running: bool) -> bool:
        """Whether `text` wraps to more rows than the bar has (or fewer, unless running)."""
        width, height = self.content_size
        if not width:
            return True  # not laid out yet
        # Wrapping depends only on where the spaces are and how wide each word is, so
        # texts that differ only in their digits share one measurement (wrapping is
        # a good part of a frame's cost otherwise).
        shape = (width, *(t if t.isspace() else cell_len(t) for t in _TOKENS.findall(text.plain)))
        needed = self._heights.get(shape)
        if needed is None:
            if len(self._heights) > 256:
                self._heights.clear()
            needed = visualize(self, text).get_height(self.styles, width)
            self._heights[shape] = needed
        return needed > height or (needed < height and not running)


def _alarm(status: SessionStatus, config: RunConfig) -> str:
    if status.state == ERROR:
        return f"✖ training failed: {status.error} — fix the config, then r resets"
    nf = status.first_nonfinite
    if nf is None:
        return ""
    then = {"pause": "paused", "stop": "stopped", "continue": "going on"}.get(
        config.on_nonfinite, ""
    )
    return f"✖ NaN/inf at step {nf.step} in {nf.layer} (first non-finite {nf.what}) — {then}"

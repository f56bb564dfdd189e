"""The status line: what runs, how far, how fast, what clipping does, and the alarm.

A plain Static re-rendered from a status snapshot; it only repaints when its
text changes, and only asks for a layout when its wrapped height changes: a
layout re-arranges the whole screen and redraws every plot, and one per frame
was most of the dashboard's cost while a run trained. Its rows are counted on
the widest text the run's numbers grow to (all steps, a four-digit period
"(≤0.5% of time)"), so the bar has its height before the run starts and
keeps it; while the run goes it does not shrink either: a line that wraps on
and off as the numbers change would make every panel below it jump. The red
alarm names the first non-finite step and layer, or the exception that ended
the training thread.
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
_WIDEST_PERIOD = 9999  # the rows of the status line are counted with periods this wide

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
        self._measured_width = 0  # the content width the rows were counted at
        self._reserved = 0  # rows the bar keeps (its min-height)
        self._counted: tuple | None = None  # what the rows were last counted for
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
        """Update from a snapshot; repaints only when the text or the bar's width changed."""
        args = (status, config, preset, latest, captured, speed, show_rate)
        text = self._text(args)
        plain = text.plain + repr(text.spans)
        width = self.content_size.width
        if plain == self._last_plain and width == self._measured_width:
            return
        self._last_plain, self._measured_width = plain, width
        if not width:  # not laid out yet
            self.update(text, layout=True)
            return
        # Rows are counted on the widest text this run's numbers grow to, too: the
        # line that gains "(≤0.5% of time)" once the budget binds, or a digit at
        # step 1000, must not re-arrange the screen mid-run (a relayout is 0.1-0.3 s
        # of the main thread, and every panel below would jump). The widest text
        # follows from the words' widths, so it is rebuilt only when they change.
        shape = _shape(text, width)
        running = status.state == RUNNING
        counted = (shape, running, config, show_rate)
        if counted != self._counted:
            self._counted = counted
            widest = self._text(args, widest=True)
            rows = max(self._rows(text, shape), self._rows(widest, _shape(widest, width)))
            if rows > self._reserved or (rows < self._reserved and not running):
                self._reserved = rows
                self.styles.min_height = rows  # the bar's height: auto, at least this (a layout)
        self.update(text, layout=False)

    def _text(self, shown: tuple, widest: bool = False) -> Text:
        # `shown`: show()'s arguments, in its order.
        status, config, preset, latest, captured, speed, show_rate = shown

        def wide(token: str, width: int) -> str:
            # One word as wide as the token can get (for counting rows only).
            return token.ljust(width, "0") if widest else token

        text = Text(no_wrap=False)
        icon = _STATE_ICONS.get(status.state, "?")
        text.append(f"{icon} {status.state.upper()}", style="bold")
        text.append(f"  {preset}", style="bold cyan")
        # A count of steps trained; plots and the alarm name steps by index (from 0).
        total = f"/{status.total_steps}" if status.total_steps else ""
        step = status.total_steps if widest and status.total_steps else status.step
        text.append(f"  trained {step}{total} steps")
        epoch = status.epoch + 1 if status.step else 0
        text.append(f"  epoch {config.epochs if widest else epoch}/{config.epochs}")
        loss = format_number(latest.loss, 4) if latest is not None else "—"
        bad_loss = latest is not None and loss in ("NaN", "inf", "-inf")
        text.append("  loss ")
        text.append(wide(loss, 7), style="bold red" if bad_loss else "bold")
        text.append("\n")
        rate = f"{status.steps_per_second:.1f}" if show_rate else "—"
        limit = "" if not speed else f" (limit {format_number(speed)})"
        text.append(f"{wide(rate, 6)} steps/s{limit} │ ")
        text.append(clip_summary(config, latest, captured))
        # The spaced-out periods come from measured step times: hidden with the rate.
        period = status.activation_period if show_rate else None
        stats_period = status.stats_period if show_rate else None
        if widest and show_rate:
            period = stats_period = _WIDEST_PERIOD
        text.append(f" │ {capture_policy(config, period, stats_period)}", style="dim")
        if status.device:
            text.append(f" │ {status.device}", style="dim")
        alarm = _alarm(status, config)
        if not widest:
            self.alarm = alarm
        if alarm:
            text.append("\n")
            text.append(f" {alarm} ", style="bold white on red")
        return text

    def _rows(self, text: Text, shape: tuple) -> int:
        """The rows `text`, of `_shape` `shape`, wraps to."""
        rows = self._heights.get(shape)
        if rows is None:
            if len(self._heights) > 256:
                self._heights.clear()
            rows = visualize(self, text).get_height(self.styles, shape[0])
            self._heights[shape] = rows
        return rows


def _shape(text: Text, width: int) -> tuple:
    """What wrapping `text` at `width` depends on: where the spaces are, each word's width.

    Texts that differ only in their digits share one shape, and one measurement
    (wrapping is a good part of a frame's cost otherwise).
    """
    return (width, *(t if t.isspace() else cell_len(t) for t in _TOKENS.findall(text.plain)))


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

"""The dashboard's frame: a status snapshot, every visible panel, one turn of the training.

A mixin of GradTUI, kept apart so app.py stays about layout and keys. Each
tick of the app's timer (at most `fps` a second) takes a consistent
snapshot of the session and hands it to every visible HistoryPanel; each
redraws only if its part of the history moved.

While a run trains unthrottled, the frame takes a turn with it: the training
thread waits after its current step until Textual has painted the frame
(`engine.gate` says why: both threads share the interpreter's lock, and a
frame drawn in the middle of a step costs the step far more than the frame's
own time). The timer's frames are then spaced so that their waits take at
most FRAME_SHARE of the run's time: a frame that cost 4 ms leaves the next
timer frame 76 ms later, within the `fps` limit, and a slow one no more than
MAX_FRAME_GAP later. A throttled, paused or stepped run sleeps between steps
anyway and is drawn at every tick.
"""

from __future__ import annotations

import sys
import time

from engine.gate import HOLD_LIMIT
from engine.session import RUNNING, TrainingSession
from tui.frames import draw_frame, visible_panels
from tui.layers import expected_layers
from tui.widgets.panel import FrameContext, HistoryPanel

SWITCH_INTERVAL = 0.0005  # seconds: the interpreter's GIL switch interval while the app runs
VIEW_TITLES = {"gradients": "Gradients", "distributions": "Histograms"}  # the view button
# How long a frame waits for the step in flight to end before it draws beside it
# (a model whose steps take longer than this gets its frames drawn concurrently).
HOLD_WAIT = 0.02  # seconds
# The most of an unthrottled run's time that frames may take: the timer's ticks are
# skipped until the last frame's cost is this share of the time since it began.
FRAME_SHARE = 0.05
# However slow one paint was (a slow minute, a collection), the next timer frame
# comes within this: a dashboard must not look frozen for seconds.
MAX_FRAME_GAP = 1.0  # seconds


def _imported(warm) -> bool:
    """Whether the app's torch import (its warm thread, started after the first frame) ended."""
    return warm is not None and warm.ident is not None and not warm.is_alive()


class FrameLoop:
    """GradTUI's frame: `refresh_frame` and the snapshot and turn-taking it uses."""

    _held: TrainingSession | None = None  # the session waiting for this frame to paint
    _held_since = 0.0  # when the hold began (perf_counter)
    _next_paced_frame = 0.0  # no timer frame before this while a run trains unthrottled
    frame_hold_seconds = 0.0  # how long runs have waited for frames in all (benchmarks)

    def frame_tick(self) -> None:
        """The frame timer's tick: a frame, unless the last one's share says wait."""
        if time.perf_counter() >= self._next_paced_frame:
            self.refresh_frame()

    def _hold_training_for_frame(self) -> None:
        session = self.session
        if self._held is not None or session.max_steps_per_second or not session.training:
            return
        started = time.perf_counter()
        if session.hold_between_steps(HOLD_WAIT):
            self._held, self._held_since = session, started
            # Runs once the screen has painted what this frame changed.
            self.call_after_refresh(self.release_training)

    def release_training(self) -> None:
        """Let a run held for a frame go on (also on a session swap and on exit).

        The time it waited is what the frame cost the run; the next timer frame
        comes no sooner than keeps that within FRAME_SHARE of the time.
        """
        held, self._held = self._held, None
        if held is not None:
            held.release_hold()
            now = time.perf_counter()
            # The run waited no longer than the gate lets it (it goes on by itself).
            cost = min(now - self._held_since, HOLD_LIMIT)
            self.frame_hold_seconds += cost
            self._next_paced_frame = now + min(cost * (1 / FRAME_SHARE - 1), MAX_FRAME_GAP)

    def frame_context(self) -> FrameContext:
        """A consistent snapshot of the session for one frame."""
        session = self.session
        status = session.status()
        history = session.history
        version = history.version
        layers = status.layer_names or tuple(history.layer_names)
        layers = layers or expected_layers(session.config)
        keeper = self._first_records.get(session)
        first = keeper.record if keeper is not None else None
        return FrameContext(history, status, session.config, tuple(layers), version, first)

    def refresh_frame(self, force: bool = False) -> None:
        """One frame: the status line always; each visible panel if its data moved."""
        if not self.screen_stack:
            return  # a tick that outlived the screen, while the app closes
        self._hold_training_for_frame()
        started = time.perf_counter()
        warm = self._warm
        if self._switch_interval is None and _imported(warm):
            # A frame drawn beside a step (one longer than HOLD_WAIT, or a throttled
            # run) holds the GIL for up to a switch interval while the training
            # thread waits on it between torch ops; a shorter one hands it back
            # sooner (+5-13% steps/s before frames took turns; 1.01x since, for a
            # held run). Not before torch is imported: the first frame would share
            # the GIL with the import in 0.5 ms slices.
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)
        ctx = self.frame_context()
        self.lab_frame(ctx)
        history = ctx.history
        self._status_bar.show(
            ctx.status,
            ctx.config,
            self.session_label,
            history.latest,
            history.latest_captured,
            self.speed,
            self.show_rate,
        )
        next_title = VIEW_TITLES.get(self.next_view(), self.next_view().title())
        self._control_bar.show(ctx.status.state == RUNNING, self.speed, next_title)
        # Walked each frame, so panels mounted later count too: a walk of the main column
        # only, not a query of the screen (a selector match per node of the whole form).
        panels = visible_panels(self._main.walk_children(HistoryPanel))
        # An unthrottled run wants the whole core (it shares the interpreter's lock with
        # this thread); a throttled, paused or stepped one leaves room to draw at once.
        paced = ctx.status.state == RUNNING and not self.session.max_steps_per_second
        settled = draw_frame(panels, ctx, force, self._pacer if paced else None)
        self._settled = (ctx.history, ctx.version) if settled else None
        self.frame_ms = (time.perf_counter() - started) * 1000

    @property
    def drawn_version(self) -> int | None:
        """The history version every visible panel has drawn, or None while some lag.

        Tests and snapshots wait for it to equal `session.history.version`.
        """
        settled = self._settled
        if settled is None or settled[0] is not self.session.history:
            return None
        return settled[1]

"""The training session: a Trainer in its own thread, controlled by method calls.

The thread (engine/session_thread.py) builds the experiment, importing torch
there so that a UI thread creating a session never waits for it, trains, and
appends each record to the bounded History. It never calls back into a UI:
readers poll `status()` and the history. Controls are plain calls: start,
pause, resume, step, stop, reset. Only this module's lock, its StepGate's
(engine.gate) and the history's are shared between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.config import RunConfig
from engine.gate import StepGate
from engine.history import History
from engine.records import NonFinite, StepRecord
from engine.session_status import (  # noqa: F401 (the states are part of this module's API)
    ERROR,
    FINISHED,
    IDLE,
    PAUSED,
    PREPARING,
    RUNNING,
    STOPPED,
    SessionStatus,
    StepRate,
)
from engine.session_thread import SessionThread


class TrainingSession(SessionThread):
    """Runs one RunConfig in a background thread; see the module doc."""

    def __init__(
        self,
        config: RunConfig,
        history: History | None = None,
        max_steps_per_second: float | None = None,
        on_record: Callable[[StepRecord], None] | None = None,
        share_cores: bool = False,
    ) -> None:
        """`share_cores`: train on one core fewer than torch would (another session
        trains beside this one); otherwise torch keeps its own thread count."""
        self.config = config
        self.history = history if history is not None else History()
        self.max_steps_per_second = max_steps_per_second  # None or 0: unlimited
        self.on_record = on_record  # called in the training thread (headless export)
        self.share_cores = share_cores
        self._cond = threading.Condition()
        self._gate = StepGate()
        self._thread: threading.Thread | None = None
        # Each thread serves one generation; reset starts the next, so a thread
        # that outlived stop()'s join (a long step) can never touch the new run.
        self._generation = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self._state = IDLE
        self._busy = False  # a step is being trained right now
        self._running = False
        self._pending_steps = 0
        self._stop = False
        self._step = 0
        self._epoch = 0
        self._total: int | None = None
        self._nonfinite: NonFinite | None = None
        self._error: str | None = None
        self._error_detail: str | None = None
        self._layers: tuple[str, ...] = ()
        self._activation_period: int | None = None
        self._stats_period: int | None = None
        self._device: str | None = None
        self._rate = StepRate()

    # -- controls ------------------------------------------------------------
    def start(self) -> None:
        """Train continuously (starting the thread if needed)."""
        with self._cond:
            if self._state in (FINISHED, STOPPED, ERROR):
                return
            self._running = True
            self._ensure_thread()
            self._cond.notify_all()

    resume = start

    def pause(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Stop after the current step; `start`, `resume` or `step` go on.

        With `wait`, return only once a step in flight has finished, so the
        step counter no longer moves.
        """
        with self._cond:
            self._running = False
            self._pending_steps = 0
            if self._state == RUNNING:
                self._state = PAUSED
            self._cond.notify_all()
            if wait:
                self._cond.wait_for(lambda: not self._busy, timeout)

    def hold_between_steps(self, timeout: float) -> bool:
        """Have the training thread wait after its current step, for a frame to draw.

        True once it waits (call `release_hold` when done; it goes on by itself
        after `engine.gate.HOLD_LIMIT`); False when no step ended within
        `timeout`, and then nothing waits. See `engine.gate` for why.
        """
        return self._gate.hold(timeout)

    def release_hold(self) -> None:
        """Let the training thread go on after `hold_between_steps`."""
        self._gate.release()

    def toggle(self) -> None:
        """Pause when running, start otherwise (the space key)."""
        if self._running:
            self.pause()
        else:
            self.start()

    def step(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Train exactly one more step (pausing a running session first)."""
        with self._cond:
            if self._state in (FINISHED, STOPPED, ERROR):
                return
            target = self._step + self._pending_steps + 1
            self._running = False
            self._pending_steps += 1
            self._ensure_thread()
            self._cond.notify_all()
            if wait:
                self._cond.wait_for(
                    lambda: self._step >= target or self._state in (FINISHED, STOPPED, ERROR),
                    timeout,
                )

    def stop(self, timeout: float = 5.0) -> bool:
        """End the thread and join it; True when it has ended."""
        with self._cond:
            self._stop = True
            self._running = False
            if self._thread is None and self._state == IDLE:
                self._state = STOPPED  # never started: start() must not start it now
            self._cond.notify_all()
            thread = self._thread
        self._gate.release()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def reset(self, config: RunConfig | None = None, timeout: float = 5.0) -> None:
        """Stop, forget the run and its history, and get ready for `config`.

        A thread still busy after `timeout` (a long step, a slow torch import)
        is abandoned: it ends at its next check and never touches the new run.
        """
        self.stop(timeout)
        with self._cond:
            self.config = config or self.config
            self._generation += 1
            self._thread = None
            self._reset_state()
            self.history.clear()
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[SessionStatus], bool], timeout: float = 30.0) -> bool:
        """Block until predicate(status) holds (for tests and the headless run)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._status()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    @property
    def training(self) -> bool:
        """True while it trains continuously (started, not paused, built, not ended).

        An unlocked read of two fields, for a per-frame check that must not take
        a whole status snapshot; `status()` is the consistent one.
        """
        return self._running and self._state == RUNNING

    @property
    def alive(self) -> bool:
        """True while the training thread exists."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def error_detail(self) -> str | None:
        """The full traceback of a failure, for a log or a details pane."""
        return self._error_detail

    def status(self) -> SessionStatus:
        """A snapshot for the UI; cheap, never blocks on a training step."""
        with self._cond:
            return self._status()

    def _status(self) -> SessionStatus:
        return SessionStatus(
            state=self._state,
            step=self._step,
            epoch=self._epoch,
            total_steps=self._total,
            steps_per_second=self._rate.per_second() if self._running else 0.0,
            first_nonfinite=self._nonfinite,
            error=self._error,
            layer_names=self._layers,
            device=self._device,
            activation_period=self._activation_period,
            stats_period=self._stats_period,
        )

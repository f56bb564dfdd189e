"""The training session: a Trainer in its own thread, controlled by method calls.

The thread builds the experiment (importing torch there, so a UI thread that
creates a session never waits for it), trains, and appends each record to
the bounded History. It never calls back into a UI: readers poll `status()`
and the history. Controls are plain calls: start, pause, resume, step, stop,
reset. Only this module's lock and the history's are shared between threads.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from engine.config import RunConfig
from engine.history import History
from engine.records import NonFinite, StepRecord

IDLE, PREPARING, RUNNING, PAUSED, FINISHED, STOPPED, ERROR = (
    "idle",
    "preparing",
    "running",
    "paused",
    "finished",
    "stopped",
    "error",
)


@dataclass(frozen=True)
class SessionStatus:
    """A consistent snapshot of the session for a status line."""

    state: str
    step: int  # steps trained so far
    epoch: int
    total_steps: int | None  # known once the experiment is built
    steps_per_second: float  # measured over the last second or so
    first_nonfinite: NonFinite | None
    error: str | None  # the exception that ended the thread, one line
    layer_names: tuple[str, ...]
    device: str | None
    # The sampling periods in force (engine.policy may stretch capture_every and
    # activation_every to keep captured steps within their share of the time).
    activation_period: int | None = None
    stats_period: int | None = None


class TrainingSession:
    """Runs one RunConfig in a background thread; see the module doc."""

    def __init__(
        self,
        config: RunConfig,
        history: History | None = None,
        max_steps_per_second: float | None = None,
        on_record: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.history = history if history is not None else History()
        self.max_steps_per_second = max_steps_per_second  # None or 0: unlimited
        self.on_record = on_record  # called in the training thread (headless export)
        self._cond = threading.Condition()
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
        self._rate_marks: list[tuple[float, int]] = []

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
            steps_per_second=self._rate(),
            first_nonfinite=self._nonfinite,
            error=self._error,
            layer_names=self._layers,
            device=self._device,
            activation_period=self._activation_period,
            stats_period=self._stats_period,
        )

    # -- the thread ----------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._state = PREPARING
            self._generation += 1
            self._thread = threading.Thread(
                target=self._run,
                args=(self._generation, self.config),
                name="gradtui-session",
                daemon=True,
            )
            self._thread.start()

    def _run(self, generation: int, config: RunConfig) -> None:
        trainer = None
        try:
            from engine.trainer import Trainer  # torch loads here, off the caller's thread

            trainer = Trainer(config, share_cores=True)
            with self._cond:
                if self._generation != generation:
                    return  # reset while building
                self._total = trainer.total_steps
                self._layers = tuple(trainer.layer_names)
                self._device = str(trainer.device)
                if not self._stop:
                    self._state = RUNNING if self._running else PAUSED
                self._cond.notify_all()
            self._loop(trainer, generation)
        except Exception as exc:  # shown in the UI; the app stays usable
            with self._cond:
                if self._generation != generation:
                    return
                self._state = ERROR
                self._error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self._error_detail = traceback.format_exc()
                self._running = False
                self._cond.notify_all()
        finally:
            if trainer is not None:
                trainer.close()

    def _loop(self, trainer, generation: int) -> None:
        next_time = time.monotonic()
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._stop
                        or self._running
                        or self._pending_steps > 0
                        or self._generation != generation
                    )
                )
                if self._generation != generation:
                    return
                if self._stop:
                    self._state = STOPPED
                    self._cond.notify_all()
                    return
                if trainer.finished:
                    self._state, self._running, self._pending_steps = FINISHED, False, 0
                    self._cond.notify_all()
                    return
                single = not self._running
                self._state = RUNNING if self._running else PAUSED
                self._busy = True
            try:
                record = trainer.step()
                with self._cond:
                    if self._generation != generation:
                        return  # reset during the step: the record belongs to no run
                    self.history.append(record)
                if self.on_record is not None:
                    self.on_record(record)
            finally:
                # The counter moves in the same breath as `busy` clears, so that
                # pause(wait=True) never returns with a step about to land.
                with self._cond:
                    if self._generation == generation:
                        self._busy = False
                        self._step, self._epoch = trainer.step_index, trainer.epoch
                        self._activation_period = trainer.policy.activation_period
                        self._stats_period = trainer.policy.stats_period
                    self._cond.notify_all()
            with self._cond:
                if self._generation != generation:
                    return
                self._rate_marks.append((time.monotonic(), self._step))
                if len(self._rate_marks) > 400:
                    del self._rate_marks[:200]
                if single:
                    self._pending_steps = max(0, self._pending_steps - 1)
                if trainer.first_nonfinite is not None and self._nonfinite is None:
                    self._nonfinite = trainer.first_nonfinite
                    self._apply_nonfinite_policy()
                if not self._running:
                    self._state = PAUSED
                if trainer.finished and not self._stop:
                    # The last step ends the run now, not at the next request.
                    self._state, self._running, self._pending_steps = FINISHED, False, 0
                    self._cond.notify_all()
                    return
                self._cond.notify_all()
            next_time = self._throttle(next_time, single, generation)

    def _apply_nonfinite_policy(self) -> None:
        policy = self.config.on_nonfinite
        if policy == "pause":
            self._running = False
            self._pending_steps = 0
        elif policy == "stop":
            self._stop = True

    def _throttle(self, next_time: float, single: bool, generation: int) -> float:
        rate = self.max_steps_per_second
        if not rate or single:
            return time.monotonic()
        next_time = max(next_time + 1.0 / rate, time.monotonic() - 1.0)
        with self._cond:
            # Waiting on the condition keeps pause and stop immediate.
            self._cond.wait_for(
                lambda: self._stop or not self._running or self._generation != generation,
                max(0.0, next_time - time.monotonic()),
            )
        return next_time

    def _rate(self) -> float:
        now = time.monotonic()
        marks = [m for m in self._rate_marks if now - m[0] <= 1.5]
        self._rate_marks = marks[-200:]
        if len(marks) < 2 or not self._running:
            return 0.0
        (t0, s0), (t1, s1) = marks[0], marks[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

"""The training session: a Trainer in its own thread, controlled by method calls.

The thread builds the experiment (importing torch there, so a UI thread that
creates a session never waits for it), trains, and appends each record to
the bounded History. It never calls back into a UI: readers poll `status()`
and the history. Controls are plain calls: start, pause, resume, step, stop,
reset. Only this module's lock, its StepGate's (engine.gate) and the history's are
shared between threads.
"""

from __future__ import annotations

import threading
import time
import traceback
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


class TrainingSession:
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

            trainer = Trainer(config, share_cores=self.share_cores)
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
                record = trainer.step(exact=single)
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
                self._rate.mark(self._step)
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
            self._gate.checkpoint()
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

"""The training session's thread: build the experiment, then step it until told not to.

A mixin of engine.session.TrainingSession, kept apart so that module stays
about the controls a UI calls. Everything here runs in the session's own
thread, except `_ensure_thread`, which the controls call to start it. State
is the session's, read and written under its condition (`self._cond`); each
thread serves one generation and returns as soon as a reset moves past it.
"""

from __future__ import annotations

import threading
import time
import traceback

from engine.collector import import_quietly
from engine.config import RunConfig
from engine.session_status import ERROR, FINISHED, PAUSED, PREPARING, RUNNING, STOPPED


class SessionThread:
    """TrainingSession's thread body: `_run` builds, `_loop` trains, step by step."""

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
            # torch loads here, off the caller's thread (engine.collector: with no collections)
            Trainer = import_quietly("engine.trainer").Trainer

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

        def wanted() -> bool:
            return (
                self._stop
                or self._running
                or self._pending_steps > 0
                or self._generation != generation
            )

        while True:
            with self._cond:
                if not wanted():
                    # Paused: the time waited is no step's, and the capture
                    # policy is told so (a pause read from the wall alone
                    # would charge a capture just before it a whole step).
                    paused = time.perf_counter()
                    self._cond.wait_for(wanted)
                    trainer.policy.skip(time.perf_counter() - paused)
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

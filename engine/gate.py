"""A turn-taking point between steps, so a UI can draw while training waits.

Why: the dashboard's thread and the training thread share one interpreter
lock, and torch releases it around every op. When a frame is drawn while a
step runs, each op's release hands the lock to the UI and the training thread
waits a switch interval to get it back: on 2 cores the regression model lost
about 17% of its steps to a UI using 10% of a core. Waiting between steps
while the frame is drawn costs the training only the frame's own time, and
the frame draws in half the time for having the lock to itself.

The training thread calls `checkpoint()` after each step: one attribute read
when nobody asks. The UI calls `hold()`, draws, then `release()`. A hold
always ends: the training thread waits at most `HOLD_LIMIT` per request, so a
release that never comes (an app closing mid-frame) costs one wait, not a run.
"""

from __future__ import annotations

import threading

HOLD_LIMIT = 0.1  # seconds the training thread waits for one release at most


class StepGate:
    """Lets one other thread take turns with the training loop, between steps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._wanted = False  # a hold was asked for and not yet served or withdrawn
        self._parked = False  # the training thread is waiting at its checkpoint

    def hold(self, timeout: float) -> bool:
        """Ask the training thread to wait at its next checkpoint.

        Returns True once it waits there; False after `timeout` (a long step,
        or a loop that is not stepping), in which case the request is
        withdrawn and nothing waits. Pair a True with `release()`.
        """
        with self._cond:
            self._wanted = True
            if self._cond.wait_for(lambda: self._parked, timeout):
                return True
            self._wanted = False
            return False

    def release(self) -> None:
        """Let a waiting training thread go on (harmless when none waits)."""
        with self._cond:
            self._wanted = False
            self._cond.notify_all()

    def checkpoint(self) -> None:
        """Called by the training thread between steps: wait here if asked."""
        if not self._wanted:  # read without the lock: a request seen a step late is fine
            return
        with self._cond:
            if not self._wanted:
                return
            self._parked = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._wanted, HOLD_LIMIT)
            self._wanted = False  # served: an unreleased request never parks twice
            self._parked = False

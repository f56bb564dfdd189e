"""Ctrl+C and SIGTERM for `gradtui run`: a step in flight is abandoned, the bookkeeping never split.

A signal raises at once wherever the run is (importing torch, building the
model, inside a training step: a long step on a big model does not make the
user wait), but for one place: while the loop records a finished step (the
export, the summary's counts), it is held until that step is wholly
recorded. A KeyboardInterrupt raised in between had left the summary one
step off from the exported file (458 steps reported, 457 records written).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT: Ctrl+C, or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


class InterruptGate:
    """Where a signal may interrupt the loop: at once, but while `recording`, at the next `check`.

    `hold()` ignores both signals from then on (the cleanup must not be cut
    short: a second press would lose the export).
    """

    def __init__(self) -> None:
        self.recording = False  # set while the loop records a finished step
        self.pending = 0  # a signal that came while recording, not yet raised
        self._ours: list[int] = []

    def on_signal(self, signum: int, frame) -> None:
        """The handler: raise at once, or while `recording`, note the signal for `check`."""
        self.hold()  # a second press must not lose the export
        if not self.recording:
            raise Interrupted(signum)
        self.pending = signum

    def check(self) -> None:
        """End `recording`; raise the signal that came meanwhile, if one did."""
        self.recording = False
        if self.pending:
            raise Interrupted(self.pending)

    def hold(self) -> None:
        """Ignore SIGINT and SIGTERM from now on (those this gate handles)."""
        for number in self._ours:
            signal.signal(number, signal.SIG_IGN)


@contextlib.contextmanager
def interrupt_gate() -> Iterator[InterruptGate]:
    """An InterruptGate handling SIGINT and SIGTERM for the block; the old handlers after it.

    A signal whose handler is not Python's default is left alone (a shell's
    background job ignores SIGINT on purpose), and so is everything off the
    main thread: the gate then never raises.
    """
    gate = InterruptGate()
    if threading.current_thread() is not threading.main_thread():
        yield gate
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    gate._ours = [s for s, default in defaults.items() if signal.getsignal(s) is default]
    for number in gate._ours:
        signal.signal(number, gate.on_signal)
    try:
        yield gate
    finally:
        for number in gate._ours:
            signal.signal(number, defaults[number])

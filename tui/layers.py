"""The layer names a config will produce, known before torch has loaded.

The first frame names the layers while torch is still importing; once the
session has built the model its own list (status.layer_names) takes over.
"""

from __future__ import annotations

from engine.config import RunConfig


def expected_layers(config: RunConfig) -> tuple[str, ...]:
    """h1…hN and o for the block model, fc1 and fc2 for the shallow one, else ()."""
    if config.model == "block":
        return tuple(f"h{i}" for i in range(1, config.n_layers + 1)) + ("o",)
    if config.model == "shallow":
        return ("fc1", "fc2")
    return ()

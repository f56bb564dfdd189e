"""Histories of a million steps in seconds: synthetic records, no training.

The frame and memory benchmarks need histories of 1,000 to 1,000,000 steps of
a 10-layer model. Training that long takes hours; what the History stores
and what a frame reads do not depend on where the numbers came from. Records
are built from a small pool of per-layer statistics (vanishing-like: norms
falling toward the input, a slow wobble), every field captured, histograms
every 10th step, as the default capture policy produces them.
"""

from __future__ import annotations

import math

from engine.history import History
from engine.records import Histogram, LayerStats, StepRecord

LAYERS = 10
POOL = 64  # distinct per-layer statistics, cycled


def layer_names(layers: int = LAYERS) -> list[str]:
    """h1 .. h{layers-1}, o: the block model's names (n_layers = layers - 1)."""
    return [f"h{i}" for i in range(1, layers)] + ["o"]


def _pool(names: list[str]) -> list[dict[str, LayerStats]]:
    pool = []
    for k in range(POOL):
        wobble = 1 + 0.1 * math.sin(2 * math.pi * k / POOL)
        stats = {}
        for i, name in enumerate(names):
            norm = 10.0 ** (i - len(names)) * wobble
            mean = norm * 0.01 * (-1) ** i
            stats[name] = LayerStats(
                grad_mean=mean, grad_std=norm, grad_norm=norm, grad_abs_max=3 * norm,
                raw_grad_mean=mean, raw_grad_std=norm, raw_grad_norm=norm,
                raw_grad_abs_max=3 * norm, grad_nonfinite=0.0, weight_mean=0.0,
                weight_std=0.1, act_mean=0.5, act_std=0.1 * wobble, act_zero_frac=0.0,
                update_ratio=1e-3 * wobble, act_saturation=0.01,
            )  # fmt: skip
        pool.append(stats)
    return pool


def records(steps: int, layers: int = LAYERS, start: int = 0):
    """Yield `steps` records of a `layers`-layer model, every statistic captured."""
    names = layer_names(layers)
    pool = _pool(names)
    hist = Histogram(-1.0, 1.0, tuple(float(abs(12 - b)) for b in range(24)))
    hists = {kind: {name: hist for name in names} for kind in ("weight", "grad", "act")}
    for step in range(start, start + steps):
        acts = step % 10 == 0
        yield StepRecord(
            step=step,
            epoch=step // 32,
            loss=1.0 / (1 + step) + 0.1,
            grad_norm=1.0,
            grad_norm_clipped=1.0,
            clipped_frac=0.0,
            layers=pool[step % POOL],
            histograms=hists if acts else None,
            captured=True,
            activations_captured=acts,
        )


def filled_history(steps: int, layers: int = LAYERS) -> History:
    """A History holding `steps` synthetic records, as the session builds it."""
    history = History()
    for record in records(steps, layers):
        history.append(record)
    return history

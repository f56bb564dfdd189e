"""Shared by the probe tests: a plain training loop with a GradientProbe in it."""

from __future__ import annotations

import torch
from torch import nn


def random_batches(steps: int, features: int, rows: int, device: str = "cpu") -> list:
    """`steps` (x, y) pairs of standard normals, the same for every call (seed 1)."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps):
        x = torch.randn(rows, features, generator=generator)
        y = torch.randn(rows, 1, generator=generator)
        batches.append((x.to(device), y.to(device)))
    return batches


def probed_steps(probe, model, batches, flat=None, after_backward=None, lr: float = 0.05) -> list:
    """Train `model` on `batches` (MSE, plain SGD) with `probe` measuring each step: the records.

    `flat`: the gradients are zeroed through this FlatGradients buffer, as the
    Trainer does. `after_backward(step)` runs between backward and the probe
    (where a test poisons a gradient).
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    records = []
    for step, (x, y) in enumerate(batches):
        probe.begin_step(step)
        loss = nn.functional.mse_loss(model(x), y)
        if flat is not None:
            flat.zero()
        else:
            optimizer.zero_grad()
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        probe.after_backward(loss)
        optimizer.step()
        records.append(probe.end_step(loss, 0))
    return records

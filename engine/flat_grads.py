"""Every gradient of a small model as a view into one flat buffer.

The sentinel every step pays, the total gradient norm, is then one kernel over
one buffer instead of a norm per parameter; and zeroing the gradients is one
fill instead of `zero_grad()`'s Python loop over parameters. On the slides'
regression model (six tensors, 181 numbers) that is the difference between a
sentinel costing 14% of a step and costing nothing measurable; on the block
model, 2% and nothing (benchmarks/README.md).

Above FLAT_BELOW elements the buffer does not pay: filling it and adding
backward's gradients into it are two more passes over memory than letting
autograd hand its fresh gradients over (+2% on an 8x1024 MLP). So only the
Trainer, which owns the loop and its zeroing, uses it, and only for models
whose trainable parameters are few, on one device, in one dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FLAT_BELOW = 1 << 20  # trainable elements: larger models keep autograd's own gradients


class FlatGradients:
    """One buffer holding every trainable parameter's `.grad` as a view."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        first = params[0]
        total = sum(p.numel() for p in params)
        self.buffer = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.device_type = first.device.type
        # A CPU float buffer's norm is a BLAS dot product (see host_norm).
        self._dot = self.device_type == "cpu" and first.dtype in (torch.float32, torch.float64)
        self.views: list[torch.Tensor] = []
        offset = 0
        for p in params:
            self.views.append(self.buffer[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    @staticmethod
    def suits(params: list[nn.Parameter]) -> bool:
        """Whether a flat buffer pays for these parameters (few, one device, one dtype)."""
        if not params:
            return False
        first = params[0]
        return (
            sum(p.numel() for p in params) < FLAT_BELOW
            and all(p.device == first.device and p.dtype == first.dtype for p in params)
            and all(p.is_contiguous() and not p.is_sparse for p in params)
        )

    def zero(self) -> None:
        """Zero every gradient (in place), re-attaching any view someone replaced.

        With `.grad` defined and grad mode off, autograd adds backward's
        gradient into it in place, so the views keep the buffer current.
        """
        self.buffer.zero_()
        for p, view in zip(self.params, self.views, strict=True):
            if p.grad is not view:
                p.grad = view

    def intact(self) -> bool:
        """Whether every `.grad` is still its view (nothing swapped one out since zero)."""
        return all(p.grad is view for p, view in zip(self.params, self.views, strict=True))

    def attached(self) -> bool:
        """A cheap `intact` for the owner's own loop: the first gradient is still its view.

        Between `zero` and the optimizer step of the Trainer's loop nothing
        replaces a `.grad` (autograd adds into them in place); this catches a
        caller that zeroed with `set_to_none` in between.
        """
        return self.params[0].grad is self.views[0]

    def norm(self) -> torch.Tensor:
        """The total L2 norm of all gradients: one kernel (a device scalar)."""
        return torch.linalg.vector_norm(self.buffer)

    def host_norm(self) -> float:
        """The total L2 norm as a Python float; inf or NaN as they come.

        On a CPU float buffer, one BLAS dot product: 1.3 us on the slides'
        regression model and 3.8 us on the block model, where `float(norm())`
        costs 1.9 and 6.2. Its float32 sum of squares overflows to inf where
        torch's own does; a caller that finds it not finite takes torch's path.
        """
        if not self._dot:
            return float(self.norm())
        buffer = self.buffer
        return math.sqrt(torch.dot(buffer, buffer).item())

"""Gradient clipping as interchangeable strategies, with raw and applied views.

- `value` and `norm` clip after backward, as torch.nn.utils does;
- `hook` clamps each parameter's gradient during backward (the slides' hooks);
- `timestep` clamps the gradient flowing into an RNN's hidden state at every
  time step (the model applies it; see engine.recurrent).

Every strategy exposes the raw gradient it started from, so the probe can
report what clipping changed. Hooks remove themselves when the strategy closes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ClipStrategy:
    """No clipping: the raw gradient is the applied one."""

    name = "none"
    changes_gradients = False

    def attach(self, params: list[nn.Parameter]) -> None:
        """Prepare for a run over `params` (hooks are registered here)."""
        self.params = params

    def close(self) -> None:
        """Remove anything attached."""

    def raw_grads(self) -> list[torch.Tensor | None]:
        """The gradients as backward produced them, before any clipping."""
        return [p.grad for p in self.params]

    def apply(self, raw_norms: list[torch.Tensor]) -> None:
        """Clip `.grad` in place after backward; `raw_norms` are their L2 norms."""

    def clipped_count(self, raw: list[torch.Tensor]) -> torch.Tensor | None:
        """How many elements clipping changed on this step (a device scalar)."""
        return None

    def __enter__(self) -> ClipStrategy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ValueClip(ClipStrategy):
    """clip_grad_value_ after backward: each element clamped to +-clip_value."""

    name = "value"
    changes_gradients = True

    def __init__(self, clip_value: float) -> None:
        self.clip_value = clip_value

    def apply(self, raw_norms: list[torch.Tensor]) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_clamp_min_(grads, -self.clip_value)
            torch._foreach_clamp_max_(grads, self.clip_value)

    def clipped_count(self, raw: list[torch.Tensor]) -> torch.Tensor | None:
        return _count_above(raw, self.clip_value)


class NormClip(ClipStrategy):
    """clip_grad_norm_ after backward: all gradients scaled so their total norm <= max_norm.

    Reuses the per-parameter norms the probe computed anyway, so clipping costs
    one multiply; the arithmetic is torch.nn.utils.clip_grad_norm_'s.
    """

    name = "norm"
    changes_gradients = True

    def __init__(self, max_norm: float, norm_type: float = 2.0) -> None:
        self.max_norm = max_norm
        self.norm_type = norm_type

    def apply(self, raw_norms: list[torch.Tensor]) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        if self.norm_type == math.inf:
            norms = torch._foreach_norm(grads, math.inf)
            total = torch.stack(norms).max()
        else:
            total = torch.linalg.vector_norm(torch.stack(raw_norms), 2.0)
        coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef)

    def clipped_count(self, raw: list[torch.Tensor]) -> torch.Tensor | None:
        # The probe counts before `apply` (value clipping edits the raw tensors in
        # place), so the decision is taken here from the raw gradients themselves.
        if not raw:
            return None
        norms = torch.stack(torch._foreach_norm(raw, self.norm_type))
        total = norms.max() if self.norm_type == math.inf else torch.linalg.vector_norm(norms, 2.0)
        clipped = self.max_norm / (total + 1e-6) < 1.0
        return clipped.to(torch.float32) * sum(g.numel() for g in raw)


class HookClip(ClipStrategy):
    """A clamp hook on every parameter, so gradients are clipped during backward.

    The hook keeps the unclamped gradient it received, which is the raw view.
    """

    name = "hook"
    changes_gradients = True

    def __init__(self, clip_value: float) -> None:
        self.clip_value = clip_value
        self._handles: list = []
        self._raw: dict[int, torch.Tensor] = {}

    def attach(self, params: list[nn.Parameter]) -> None:
        super().attach(params)
        for index, param in enumerate(params):
            if param.requires_grad:
                self._handles.append(param.register_hook(self._make_hook(index)))

    def _make_hook(self, index: int):
        def clamp(grad: torch.Tensor) -> torch.Tensor:
            self._raw[index] = grad
            return torch.clamp(grad, -self.clip_value, self.clip_value)

        return clamp

    def raw_grads(self) -> list[torch.Tensor | None]:
        raw = [self._raw.get(i, p.grad) for i, p in enumerate(self.params)]
        self._raw = {}
        return raw

    def clipped_count(self, raw: list[torch.Tensor]) -> torch.Tensor | None:
        return _count_above(raw, self.clip_value)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class TimestepClip(ClipStrategy):
    """Clamping inside the recurrence; the model does it, nothing happens here."""

    name = "timestep"
    changes_gradients = False  # the parameter gradients are what backward produced


def _count_above(grads: list[torch.Tensor], limit: float) -> torch.Tensor | None:
    if not grads:
        return None
    counts = [torch.count_nonzero(g.abs() > limit) for g in grads]
    return torch.stack(counts).sum().to(torch.float32)


def make_clip(
    clip: str, clip_value: float = 1.0, max_norm: float = 1.0, norm_type: str = "2"
) -> ClipStrategy:
    """The strategy for a config's clip mode."""
    if clip == "none":
        return ClipStrategy()
    if clip == "value":
        return ValueClip(clip_value)
    if clip == "norm":
        return NormClip(max_norm, math.inf if norm_type == "inf" else 2.0)
    if clip == "hook":
        return HookClip(clip_value)
    if clip == "timestep":
        return TimestepClip()
    raise ValueError(f"unknown clip mode {clip!r}")

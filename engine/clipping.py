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
    raw_is_grad = True  # the raw gradient is `.grad` itself (not kept aside by a hook)

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

    def clipped_count(
        self, raw: list[torch.Tensor], raw_norms: list[torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """How many elements clipping will change on this step (a device scalar).

        Called before `apply`, with the same raw gradients and their L2 norms.
        """
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

    def clipped_count(self, raw, raw_norms=None) -> torch.Tensor | None:
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
        self._coef: tuple[int, torch.Tensor] | None = None  # (id of raw_norms, coefficient)

    def _coefficient(self, grads: list[torch.Tensor], raw_norms: list[torch.Tensor] | None):
        # clipped_count and apply of one step share it: computed once.
        if raw_norms is not None and self._coef is not None and self._coef[0] == id(raw_norms):
            return self._coef[1]
        if self.norm_type == math.inf:
            total = torch.stack(torch._foreach_norm(grads, math.inf)).max()
        else:
            norms = raw_norms if raw_norms is not None else torch._foreach_norm(grads)
            total = torch.linalg.vector_norm(torch.stack(list(norms)), 2.0)
        coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        self._coef = (id(raw_norms), coef) if raw_norms is not None else None
        return coef

    def apply(self, raw_norms: list[torch.Tensor]) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        coef = self._coefficient(grads, raw_norms)
        self._coef = None
        torch._foreach_mul_(grads, coef)

    def clipped_count(self, raw, raw_norms=None) -> torch.Tensor | None:
        # The probe counts before `apply` (value clipping edits the raw tensors in
        # place), so the decision is taken here from the raw gradients themselves.
        if not raw:
            return None
        clipped = self._coefficient(raw, raw_norms) < 1.0
        return clipped.to(torch.float32) * sum(g.numel() for g in raw)


class HookClip(ClipStrategy):
    """A clamp hook on every parameter, so gradients are clipped during backward.

    The hook keeps the unclamped gradient it received, which is the raw view.
    """

    name = "hook"
    changes_gradients = True
    raw_is_grad = False

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

    def clipped_count(self, raw, raw_norms=None) -> torch.Tensor | None:
        return _count_above(raw, self.clip_value)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class TimestepClip(ClipStrategy):
    """Clamping inside the recurrence; the model does it, nothing happens here."""

    name = "timestep"
    changes_gradients = False  # the parameter gradients are what backward produced


# Below this many elements in all, counting over one concatenated copy saves
# the per-tensor dispatch that dominates on small models.
_CONCAT_BELOW = 1 << 16


def _count_above(grads: list[torch.Tensor], limit: float) -> torch.Tensor | None:
    """How many elements exceed +-limit (a float32 device scalar)."""
    if not grads:
        return None
    f32 = torch.float32
    if len(grads) > 1 and sum(g.numel() for g in grads) < _CONCAT_BELOW:
        flat = torch.cat([g.reshape(-1) for g in grads])
        return torch.sum(flat.abs() > limit, dtype=f32)
    counts = [torch.sum(g.abs() > limit, dtype=f32) for g in grads]
    return counts[0] if len(counts) == 1 else torch.stack(counts).sum()


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

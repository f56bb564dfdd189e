"""Device-side reductions the probe gathers before its single host copy.

Every function returns tensors on the training device; none synchronizes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def weight_layers(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """The layers the probe reports: every trainable parameter of 2+ dimensions.

    A layer is named after its parameter without ".weight" (so `h1.weight` is
    `h1`, `cell.weight_hh` stays whole); shared parameters appear once.
    """
    names, params = [], []
    for name, param in model.named_parameters():
        if param.requires_grad and param.dim() >= 2:
            names.append(name[: -len(".weight")] if name.endswith(".weight") else name)
            params.append(param)
    return names, params


def moments(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Rows of (mean, unbiased std, L2 norm, abs max), one per tensor."""
    if not tensors:
        return torch.zeros((0, 4))
    pairs = [torch.std_mean(t) for t in tensors]
    std = torch.stack([s for s, _ in pairs])
    mean = torch.stack([m for _, m in pairs])
    l2 = torch.stack(torch._foreach_norm(tensors))
    abs_max = torch.stack(torch._foreach_norm(tensors, math.inf))
    return torch.stack([mean, std, l2, abs_max], dim=1)


def nonfinite_counts(tensors: list[torch.Tensor | None]) -> torch.Tensor:
    """How many NaN or infinite elements each tensor holds."""
    counts = [
        (~torch.isfinite(t)).sum() if t is not None else torch.zeros((), dtype=torch.long)
        for t in tensors
    ]
    return torch.stack(counts) if counts else torch.zeros(0)


def histogram_rows(groups: dict[str, list[torch.Tensor | None]], bins: int) -> torch.Tensor:
    """For each group, each tensor: (lo, hi, non-finite count, bin counts...).

    lo and hi are the finite extremes; non-finite values are counted apart. A
    missing tensor gives lo = hi = NaN and no counts.
    """
    present = [t for tensors in groups.values() for t in tensors if t is not None]
    device = present[0].device if present else torch.device("cpu")
    rows = []
    for tensors in groups.values():
        for t in tensors:
            rows.append(_histogram_row(t, bins, device))
    return torch.stack(rows) if rows else torch.zeros((0, bins + 3))


def _histogram_row(t: torch.Tensor | None, bins: int, device: torch.device) -> torch.Tensor:
    if t is None or t.numel() == 0:
        row = torch.zeros(bins + 3, device=device)
        row[:2] = math.nan
        return row
    t = t.detach().reshape(-1).float()
    finite = torch.isfinite(t)
    lo = torch.where(finite, t, math.inf).min()
    hi = torch.where(finite, t, -math.inf).max()
    width = torch.clamp(hi - lo, min=1e-30)
    position = torch.nan_to_num((t - lo) / width * bins, nan=0.0, posinf=0.0, neginf=0.0)
    index = torch.clamp(position.floor(), 0, bins - 1).long()
    counts = torch.bincount(index, weights=finite.float(), minlength=bins).float()
    nonfinite = (~finite).sum().float()
    return torch.cat([torch.stack([lo, hi, nonfinite]), counts])


class ActivationTap:
    """Forward hooks that keep each layer's activation output on armed steps.

    A layer's activation is the parameterless module right after it in its
    parent (h1 -> a1), or the layer's own output where none follows (o, fc2).
    Modules called several times per forward (a recurrent cell) keep every call.
    """

    def __init__(self, model: nn.Module, layer_names: list[str]) -> None:
        self.model = model
        self.layer_names = layer_names
        self.armed = False
        self._handles: list = []
        self._kept: dict[str, list[torch.Tensor]] = {}
        self._outputs: list[torch.Tensor | None] | None = None
        self.sources = {name: self._activation_module(name) for name in layer_names}

    def _activation_module(self, layer: str) -> str:
        owner = layer.rsplit(".", 1)[0] if "." in layer else layer
        modules = dict(self.model.named_modules())
        if owner not in modules:
            return ""
        parent_name, _, child = owner.rpartition(".")
        parent = modules.get(parent_name, self.model)
        children = list(parent.named_children())
        names = [n for n, _ in children]
        if child in names:
            following = children[names.index(child) + 1 :]
            if following and not any(True for _ in following[0][1].parameters()):
                follower = following[0][0]
                return f"{parent_name}.{follower}" if parent_name else follower
        return owner

    def attach(self) -> None:
        """Register the forward hooks (once per distinct module)."""
        modules = dict(self.model.named_modules())
        for source in sorted(set(self.sources.values())):
            if source in modules:
                self._handles.append(modules[source].register_forward_hook(self._make_hook(source)))

    def _make_hook(self, source: str):
        def keep(module: nn.Module, inputs: tuple, output) -> None:
            if self.armed and isinstance(output, torch.Tensor):
                self._kept.setdefault(source, []).append(output.detach())

        return keep

    def outputs(self) -> list[torch.Tensor | None]:
        """Each layer's kept activation (flattened over calls), then forget them."""
        if self._outputs is None:
            outputs = []
            for name in self.layer_names:
                kept = self._kept.get(self.sources[name])
                outputs.append(torch.cat([k.reshape(-1) for k in kept]) if kept else None)
            self._outputs = outputs
        return self._outputs

    def statistics(self, saturating: tuple[float, float] | None) -> torch.Tensor:
        """Rows of (present, mean, std, zero fraction, saturated fraction) per layer."""
        rows = []
        outputs = self.outputs()
        device = next((a.device for a in outputs if a is not None), torch.device("cpu"))
        for a in outputs:
            if a is None:
                rows.append(torch.tensor([0.0] + [math.nan] * 4, device=device))
                continue
            a = a.float()
            std, mean = torch.std_mean(a)
            zero = (a == 0).float().mean()
            if saturating is None:
                sat = torch.full((), math.nan, device=a.device)
            else:
                low, high = saturating
                margin = 0.02 * (high - low)
                sat = ((a <= low + margin) | (a >= high - margin)).float().mean()
            rows.append(torch.stack([torch.ones((), device=a.device), mean, std, zero, sat]))
        self._kept, self._outputs = {}, None
        return torch.stack(rows) if rows else torch.zeros((0, 5))

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._kept, self._outputs = {}, None

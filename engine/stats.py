"""The reductions behind the probe's statistics: queued on the device, finished on the host.

On the CPU the probe queues a few cheap float32 partials per tensor (its sum,
its min and max, its L2 norm from `torch._foreach_norm`) and derives mean and
unbiased std on the host in float64: three passes over memory instead of
`std_mean`'s slow double-precision pair. Where that shortcut would not match
`torch.std` to float tolerance (sums that overflowed float32, a mean that
dwarfs the spread, NaN or inf) the host recomputes the one tensor concerned
with torch itself, while it is still intact (`exact_moments`).

On other devices, where every host read is a synchronization, the probe queues
torch's own reductions instead (`device_moments`) and reads them once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

HIST_BINS = 24
# Histograms of larger tensors are estimated from an evenly strided sample of
# about this many values (exact extremes, counts scaled to the tensor's size):
# 24 bars in a terminal cannot show the difference, the step can feel the cost.
HIST_SAMPLE = 1 << 14
# Above this ratio of sum of squares to (n - 1) * variance, float32 partials
# lose too many digits to the subtraction (the ratio multiplies the sums'
# ~1e-7 relative error: 64 keeps the std within ~1e-5 of torch.std, which
# benchmarks/check_probe.py holds it to); such tensors are recomputed exactly.
# A sigmoid layer's output sits at 16-42 (mean ~0.5, std ~0.1).
ILL_CONDITIONED = 64.0


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


# -- host-side arithmetic ------------------------------------------------------------
def mean_std(n: int, total: float, square_sum: float, finite: bool | None = None):
    """(mean, unbiased std) from a sum and a sum of squares, or None when unsafe.

    `finite` is whether every element is known finite (from min and max);
    None when unknown. None comes back when only torch itself can answer
    exactly (overflowed or ill-conditioned sums); the caller recomputes.
    """
    mean = total / n
    if finite is False or n < 2:
        return mean, math.nan  # torch.std of one element, or of anything holding NaN or inf
    if not (math.isfinite(total) and math.isfinite(square_sum)):
        return None
    if square_sum == 0.0:
        return mean, 0.0
    var = (square_sum - total * total / n) / (n - 1)
    if var <= 0.0 or square_sum > ILL_CONDITIONED * (n - 1) * var:
        return None
    return mean, math.sqrt(var)


def abs_max(low: float, high: float) -> float:
    """max |x| from min and max, NaN when either is NaN (as `x.abs().max()`)."""
    if low != low or high != high:
        return math.nan
    return max(-low, high)


def exact_moments(t: torch.Tensor) -> tuple[float, float]:
    """(mean, std) where the one-pass partials cannot give them to float tolerance.

    The usual case is a tensor whose mean dwarfs its spread (a sigmoid layer's
    output near 0.5): shifted by its own mean, accumulated in float64, the
    sums are well conditioned again, at a tenth of `torch.std_mean`'s cost.
    What still is not (NaN, inf, sums that overflow) goes to torch itself.
    """
    flat = t.detach().reshape(-1)
    n = flat.numel()
    if n < 2:
        return float(flat.float().mean()), math.nan
    f64 = torch.float64
    mean = float(flat.sum(dtype=f64)) / n
    if math.isfinite(mean):
        centred = flat - mean
        shift = float(centred.sum(dtype=f64))
        square_sum = float(torch.linalg.vector_norm(centred, dtype=f64)) ** 2
        var = (square_sum - shift * shift / n) / (n - 1)
        if math.isfinite(var) and 0.0 < var and square_sum <= ILL_CONDITIONED * (n - 1) * var:
            return mean + shift / n, math.sqrt(var)
        if var == 0.0 and square_sum == 0.0:
            return mean, 0.0
    std, mean_t = torch.std_mean(flat)
    return float(mean_t), float(std)


def nonfinite_count(t: torch.Tensor) -> float:
    """How many NaN or infinite elements `t` holds (a host read; rare steps only)."""
    return float((~torch.isfinite(t)).sum().item())


# -- CPU partials ----------------------------------------------------------------------
def queue_sum_range(tensors: list[torch.Tensor], out: list) -> None:
    """Append sum, min and max of each tensor (three device scalars each) to `out`."""
    for t in tensors:
        out.append(t.sum())
        out.extend(torch.aminmax(t))


def queue_sums(tensors: list[torch.Tensor], out: list) -> None:
    """Append the sum of each tensor to `out`."""
    out.extend([t.sum() for t in tensors])


def host_counts(a: torch.Tensor, saturating) -> tuple[float, float | None]:
    """(zero count, saturated count or None) of a CPU activation, through numpy.

    numpy counts a boolean mask ten times faster than torch's bool sum on the
    CPU; the comparisons are float32's, as torch's would be.
    """
    x = a.numpy()
    zeros = float(np.count_nonzero(x == 0))
    if saturating is None:
        return zeros, None
    low, high = saturating
    margin = 0.02 * (high - low)
    lo, hi = x.dtype.type(low + margin), x.dtype.type(high - margin)
    return zeros, float(np.count_nonzero((x <= lo) | (x >= hi)))


# -- exact device reductions (CUDA and other devices) ----------------------------------
def queue_device_moments(tensors: list[torch.Tensor], out: list, grads: bool) -> None:
    """Append torch's own (mean, std, abs max, non-finite count) per tensor to `out`.

    For weights (`grads=False`) only mean and std; their norms come separately.
    """
    absmax = torch._foreach_norm(tensors, math.inf) if grads else None
    for j, t in enumerate(tensors):
        std, mean = torch.std_mean(t)
        out += [mean, std]
        if grads:
            out += [absmax[j], (~torch.isfinite(t)).sum()]


def queue_device_activations(acts: list[torch.Tensor], saturating, out: list) -> None:
    """Append mean, std, zero count and saturated count per activation (device path)."""
    f32 = torch.float32
    for a in acts:
        std, mean = torch.std_mean(a)
        out += [mean, std, torch.sum(a == 0, dtype=f32)]
        if saturating is not None:
            low, high = saturating
            margin = 0.02 * (high - low)
            out.append(torch.sum((a <= low + margin) | (a >= high - margin), dtype=f32))


# -- histograms ---------------------------------------------------------------------------
_strides: dict[tuple[int, int], int] = {}


def hist_sample(t: torch.Tensor) -> torch.Tensor:
    """`t` flattened, or an evenly strided sample of about HIST_SAMPLE of its values.

    The stride is coprime with the last dimension, so a matrix's sample visits
    every column rather than the same few.
    """
    flat = t.reshape(-1)
    n = flat.numel()
    if n <= HIST_SAMPLE:
        return flat
    key = (n, t.shape[-1] if t.dim() else 1)
    stride = _strides.get(key)
    if stride is None:
        stride = -(-n // HIST_SAMPLE)
        while math.gcd(stride, key[1]) != 1:
            stride += 1
        _strides[key] = stride
    return flat[::stride]


def fast_histogram(x: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """bins + 1 counts of `x` between finite host-side extremes; three passes.

    Values equal to the maximum land in the extra last bin, which the host
    folds into the one before. The caller checked that low and high are finite
    and that their difference fits the tensor's dtype; otherwise it uses
    `histogram_row`, which sets NaN and inf apart.
    """
    scale = bins / max(high - low, 1e-30)
    # x - low >= 0 exactly (rounding is monotonic), so no index is negative;
    # the largest, bins, is reached by the maximum alone.
    index = torch.sub(x, low).mul_(scale).int()
    return torch.bincount(index, minlength=bins + 1)[: bins + 1]


def histogram_row(t: torch.Tensor | None, bins: int, device: torch.device) -> torch.Tensor:
    """(lo, hi, non-finite count, bin counts...) of every value of `t`, NaN and inf apart.

    lo and hi are the finite extremes; a missing tensor gives lo = hi = NaN
    and no counts. About a dozen passes: the device path and the fallback.
    """
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
    # scatter_add, not bincount: on a GPU bincount reads the largest index back
    # to size its output, a synchronization the one-copy-per-step rule forbids.
    counts = torch.zeros(bins, device=t.device).scatter_add_(0, index, finite.float())
    nonfinite = (~finite).sum().float()
    return torch.cat([torch.stack([lo, hi, nonfinite]), counts])


# -- activations ----------------------------------------------------------------------------
class ActivationTap:
    """Forward hooks that keep each layer's activation output on armed steps.

    A layer's activation is the parameterless module right after it in its
    parent (h1 -> a1), or the layer's own output where none follows (o, fc2).
    Modules called several times per forward (a recurrent cell) keep every call.
    The hooks exist only while armed: an unarmed forward pays nothing for them.
    """

    def __init__(self, model: nn.Module, layer_names: list[str]) -> None:
        self.model = model
        self.layer_names = layer_names
        self._handles: list = []
        self._kept: dict[str, list[torch.Tensor]] = {}
        self.sources = {name: self._activation_module(name) for name in layer_names}
        modules = dict(model.named_modules())
        self._modules = [
            (source, modules[source])
            for source in sorted(set(self.sources.values()))
            if source in modules
        ]

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

    @property
    def armed(self) -> bool:
        """True while the hooks are registered (an activation step)."""
        return bool(self._handles)

    @armed.setter
    def armed(self, value: bool) -> None:
        if value and not self._handles:
            self._handles = [
                module.register_forward_hook(self._make_hook(source))
                for source, module in self._modules
            ]
        elif not value and self._handles:
            self._remove()

    def attach(self) -> None:
        """Nothing to register up front: hooks come with `armed = True`."""

    def _make_hook(self, source: str):
        def keep(module: nn.Module, inputs: tuple, output) -> None:
            if isinstance(output, torch.Tensor):
                self._kept.setdefault(source, []).append(output.detach())

        return keep

    def take(self) -> list[torch.Tensor | None]:
        """Each layer's kept activation (flattened over calls); forgets them and disarms."""
        outputs = []
        for name in self.layer_names:
            kept = self._kept.get(self.sources[name])
            if not kept:
                outputs.append(None)
            elif len(kept) == 1:
                outputs.append(kept[0].reshape(-1))
            else:
                outputs.append(torch.cat([k.reshape(-1) for k in kept]))
        self._kept = {}
        self.armed = False
        return outputs

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def close(self) -> None:
        """Remove the hooks and forget anything kept."""
        self._remove()
        self._kept = {}

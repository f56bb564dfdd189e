"""Histograms of a layer's weights, gradients and activations, counted on the device.

The CPU path (`fast_histogram`) bins an evenly strided sample between
extremes the host already knows; the exact path (`histogram_row`) sets NaN
and inf apart and needs no host read, for GPUs and for tensors holding them.
"""

from __future__ import annotations

import math

import torch

HIST_BINS = 24
# Histograms of larger tensors are estimated from an evenly strided sample of
# about this many values (exact extremes, counts scaled to the tensor's size):
# 24 bars in a terminal cannot show the difference, the step can feel the cost.
HIST_SAMPLE = 1 << 14

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

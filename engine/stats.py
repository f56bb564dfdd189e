"""The reductions behind the probe's statistics: queued on the device, finished on the host.

On the CPU the probe queues a few cheap float32 partials per tensor (its sum,
its min and max, its L2 norm from `torch._foreach_norm`, or `cpu_norm` for
large tensors) and derives mean and unbiased std on the host in float64:
three passes over memory instead of `std_mean`'s slow double-precision pair.
Where that shortcut would not match `torch.std` to float tolerance (sums that
overflowed float32, a mean that dwarfs the spread, NaN or inf) the host
recomputes the one tensor concerned with torch itself, while it is still
intact (`exact_moments`).

On other devices, where every host read is a synchronization, the probe queues
torch's own reductions instead (`device_moments`) and reads them once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from engine.native_stats import TensorSweep, places, torch_norms_where_infinite

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


def nonfinite_counts(tensors: list[torch.Tensor]) -> list[float]:
    """How many NaN or infinite elements each tensor holds, in one host read (rare steps only)."""
    if not tensors:
        return []
    return torch.stack([(~torch.isfinite(t)).sum() for t in tensors]).tolist()


# -- CPU partials ----------------------------------------------------------------------
# Above this many elements a CPU norm is a BLAS dot product: one pass, measured
# 1.6x faster than torch.linalg.vector_norm on 4 MB gradients (and no less
# exact: float32 dot products came within 3e-6 of a float64 sum of squares
# where vector_norm came within 2.5e-5).
DOT_ABOVE = 1 << 16


def cpu_norm(t: torch.Tensor) -> torch.Tensor:
    """The L2 norm of a CPU tensor (a 0-d tensor), as `torch.linalg.vector_norm` gives it.

    Large contiguous float tensors go through `torch.dot`. Where its float32
    sum of squares comes out infinite (read on the spot: free on the CPU),
    vector_norm answers instead, so clipping and the record see torch's own
    result whatever its accumulator (on torch 2.13 it overflows alike). NaN
    and inf in `t` come out as they would from vector_norm.
    """
    if (
        t.numel() < DOT_ABOVE
        or not t.is_contiguous()
        or t.dtype not in (torch.float32, torch.float64)
    ):
        return torch.linalg.vector_norm(t)
    flat = t.reshape(-1)
    square_sum = torch.dot(flat, flat)
    if math.isinf(square_sum.item()):  # overflowed squares (or an inf inside: same answer)
        return torch.linalg.vector_norm(t)
    return square_sum.sqrt()


class HostNorms:
    """L2 norms of CPU float tensors as floats, without torch's per-call cost.

    For the weights a statistics step reads: one pass of C over them all
    (engine.native_stats) where it builds, else BLAS dot products over numpy
    views; both kept across steps and rebuilt when a tensor moves. In place,
    right after backward, the dot products were 2.5x cheaper than
    `_foreach_norm` and its read (43 against 109 us on the block model's six
    weights). None where a tensor is not a contiguous CPU float one. A sum of
    squares that overflows float32 is torch's own `vector_norm`
    (engine.stats.cpu_norm).
    """

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        self._places: list | None = None
        self._arrays: list[np.ndarray] = []
        self._sweep = None

    def norms(self) -> list[float] | None:
        """Each tensor's L2 norm, or None where this way does not apply."""
        tensors = self.tensors
        now = places(tensors)
        if now != self._places:
            if not all(
                t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
                and t.is_contiguous() for t in tensors
            ):  # fmt: skip
                return None
            self._sweep = TensorSweep.build(tensors) if tensors else None
            if self._sweep is None:  # dot products over kept numpy views instead
                self._arrays = [t.detach().numpy().reshape(-1) for t in tensors]
            self._places = now
        if self._sweep is not None:
            out = self._sweep()[1]
        else:
            dot, out = np.dot, []
            with np.errstate(all="ignore"):  # NaN and inf are data here
                for a in self._arrays:
                    out.append(math.sqrt(float(dot(a, a))))
        return torch_norms_where_infinite(out, tensors)


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
def queue_device_moments(
    tensors: list[torch.Tensor], out: list, grads: bool, counts: bool = True
) -> None:
    """Append torch's own (mean, std, abs max, non-finite count) per tensor to `out`.

    For weights (`grads=False`) only mean and std; their norms come separately.
    Without `counts` no non-finite count: the caller counts after the read,
    where a norm says there is something to count (`nonfinite_counts`).
    A count is six operators a tensor (isfinite alone is four), and every
    operator costs host time on a GPU whose steps are host-bound.
    """
    absmax = torch._foreach_norm(tensors, math.inf) if grads else None
    for j, t in enumerate(tensors):
        std, mean = torch.std_mean(t)
        out += [mean, std]
        if grads:
            out.append(absmax[j])
            if counts:
                out.append((~torch.isfinite(t)).sum())


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

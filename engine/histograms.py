"""Histograms of a layer's weights, gradients and activations, counted on the device.

The CPU path (`fast_histogram`) bins an evenly strided sample between
extremes the host already knows; where the C kernel is built
(engine.native_stats) a step's extremes and all its histograms are two C
calls, the same counts bin for bin (the block model's activation step's
histograms, ~2.4 against ~0.9 ms in a slow hour: torch's four operators a histogram
cost ~100 us each right after backward). The exact path
(engine.exact_histograms) sets NaN and inf apart and needs no host read,
for GPUs and for tensors holding them.
"""

from __future__ import annotations

import math

import torch

from engine.exact_histograms import histogram_row, histogram_rows
from engine.native_stats import TensorSweep, strided_histograms
from engine.readout import ReadQueue, store
from engine.records import Histogram

HIST_BINS = 24
# Histograms of larger tensors are estimated from an evenly strided sample of
# about this many values (exact extremes, counts scaled to the tensor's size):
# 24 bars in a terminal cannot show the difference, the step can feel the cost.
HIST_SAMPLE = 1 << 14
_FLOAT_LIMIT = 3.0e38  # a span wider than this overflows float32 arithmetic

_strides: dict[tuple[int, int], int] = {}


def hist_sample(t: torch.Tensor) -> torch.Tensor:
    """`t` flattened, or an evenly strided sample of about HIST_SAMPLE of its values.

    The stride is coprime with the last dimension, so a matrix's sample visits
    every column rather than the same few.
    """
    flat = t.reshape(-1)
    stride = sample_stride(t)
    return flat if stride == 1 else flat[::stride]


def sample_stride(t: torch.Tensor) -> int:
    """The stride of `hist_sample`'s sample of `t`: 1 up to HIST_SAMPLE values."""
    n = t.numel()
    if n <= HIST_SAMPLE:
        return 1
    key = (n, t.shape[-1] if t.dim() else 1)
    stride = _strides.get(key)
    if stride is None:
        stride = -(-n // HIST_SAMPLE)
        while math.gcd(stride, key[1]) != 1:
            stride += 1
        _strides[key] = stride
    return stride


def bin_scale(low: float, high: float, bins: int) -> float:
    """Bins per unit between the extremes: torch's and the C kernel's counts share it."""
    return bins / max(high - low, 1e-30)


def fast_histogram(x: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """bins + 1 counts of `x` between finite host-side extremes; three passes.

    Values equal to the maximum land in the extra last bin, which the host
    folds into the one before. The caller checked that low and high are finite
    and that their difference fits the tensor's dtype; otherwise it uses
    `histogram_row`, which sets NaN and inf apart.
    """
    scale = bin_scale(low, high, bins)
    # x - low >= 0 exactly (rounding is monotonic), so no index is negative;
    # the largest, bins, is reached by the maximum alone.
    index = torch.sub(x, low).mul_(scale).int()
    return torch.bincount(index, minlength=bins + 1)[: bins + 1]


# -- reading them back ----------------------------------------------------------------
def queue_histograms(
    q: ReadQueue, found: dict, groups: tuple, names: list[str], eager: bool
) -> None:
    """found["hist"]: kind -> layer -> Histogram, for groups of (kind, tensors per layer)."""
    if not eager:
        tensors = [t for _, ts in groups for t in ts]
        if tensors:
            rows = histogram_rows(tensors, HIST_BINS, _device(groups))
            q.add_vectors([rows.reshape(-1)], _device_finish(groups, names, found))
        return
    # Extremes first, read at once (the gradients' are known on captured steps).
    q.flush()
    grad_rows = found.get("applied") or found.get("raw")
    unknown = [
        t
        for kind, tensors in groups
        for t in tensors
        if t is not None and (kind != "grad" or grad_rows is None)
    ]
    values, k = _extremes(q, unknown), 0
    plans, present = [], []
    for kind, tensors in groups:
        for j, t in enumerate(tensors):
            if t is None:
                continue
            if kind == "grad" and grad_rows is not None:
                lo, hi = grad_rows[j][4], grad_rows[j][5]
            else:
                lo, hi = values[k], values[k + 1]
                k += 2
            present.append(t)
            if math.isfinite(lo) and math.isfinite(hi) and hi - lo < _FLOAT_LIMIT:
                stride = sample_stride(t)
                plans.append((kind, names[j], lo, hi, t.numel() / -(-t.numel() // stride), stride))
            else:  # NaN or inf inside: the exact row sets them apart
                plans.append((kind, names[j], None, None, 1.0, 0))
    if _native_rows(present, plans, found):
        return
    rows = [
        histogram_row(t, HIST_BINS, t.device)
        if lo is None
        else fast_histogram(hist_sample(t), lo, hi, HIST_BINS)
        for t, (_, _, lo, hi, _, _) in zip(present, plans, strict=True)
    ]
    q.add_vectors(rows, _host_finish(plans, found))


def _extremes(q: ReadQueue, tensors: list[torch.Tensor]) -> list[float]:
    # (min, max) of each tensor, flattened; NaN where it holds a NaN. One C
    # sweep over them all where it suits (engine.native_stats), else torch's
    # aminmax each and one read.
    if not tensors:
        return []
    sweep = TensorSweep.build(tensors)
    if sweep is not None:
        _, _, lows, highs = sweep()
        return [v for pair in zip(lows, highs, strict=True) for v in pair]
    found: dict = {}
    q.add([m for t in tensors for m in torch.aminmax(t)], store(found, "extremes"))
    q.flush()
    return found.get("extremes", [])


def _native_rows(tensors: list[torch.Tensor], plans: list, found: dict) -> bool:
    # Every histogram in one C call (engine.native_stats), where all of them
    # are fast ones of CPU float32 tensors: the same counts as fast_histogram.
    if not tensors or any(lo is None for _, _, lo, _, _, _ in plans):
        return False
    bounds = [(lo, bin_scale(lo, hi, HIST_BINS)) for _, _, lo, hi, _, _ in plans]
    strides = [plan[5] for plan in plans]
    counts = strided_histograms(tensors, strides, bounds, HIST_BINS)
    if counts is None:
        return False
    width = HIST_BINS + 1
    _host_finish(plans, found)([counts[i * width : (i + 1) * width] for i in range(len(plans))])
    return True


def _host_finish(plans: list, found: dict):
    def finish(rows: list[list[float]]) -> None:
        out: dict[str, dict[str, Histogram]] = {"weight": {}, "grad": {}, "act": {}}
        for (kind, name, lo, hi, scale, _), row in zip(plans, rows, strict=True):
            if lo is None:  # the exact row: lo, hi, non-finite, counts
                out[kind][name] = Histogram(row[0], row[1], tuple(row[3:]), row[2])
                continue
            counts = row[:HIST_BINS]
            counts[-1] += row[HIST_BINS]  # the maximum belongs to the last bin
            if scale != 1.0:
                counts = [c * scale for c in counts]
            out[kind][name] = Histogram(lo, hi, tuple(counts), 0.0)
        found["hist"] = out

    return finish


def _device(groups: tuple) -> torch.device:
    for _, tensors in groups:
        for t in tensors:
            if t is not None:
                return t.device
    return torch.device("cpu")


def _device_finish(groups: tuple, names: list[str], found: dict):
    width = HIST_BINS + 3

    def finish(rows: list[list[float]]) -> None:
        flat, k = rows[0], 0
        out: dict[str, dict[str, Histogram]] = {}
        for kind, tensors in groups:
            out[kind] = {}
            for j, t in enumerate(tensors):
                r = flat[k * width : (k + 1) * width]
                k += 1
                if t is not None:
                    out[kind][names[j]] = Histogram(r[0], r[1], tuple(r[3:]), r[2])
        found["hist"] = out

    return finish

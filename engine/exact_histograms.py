"""Exact histograms: NaN and inf set apart, no host read, one tensor or a whole step at once.

`histogram_row` bins every value of a tensor between its finite extremes
and counts the non-finite ones apart: the rows of a GPU's step (which must
not read anything back before its one host copy), and of a CPU tensor that
holds NaN or inf. `histogram_rows` gives a whole step's rows in a few
operators. engine.histograms decides which path a tensor takes.
"""

from __future__ import annotations

import math

import torch


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


# Elements histogrammed together by `histogram_rows`: bounds the batch's
# temporaries (~30 bytes an element) and keeps float32 counts exact (< 2^24).
BATCH_ELEMENTS = 1 << 24
_repeats: dict[tuple, torch.Tensor] = {}  # (sizes, device) -> sizes as a device tensor


def histogram_rows(
    tensors: list[torch.Tensor | None], bins: int, device: torch.device
) -> torch.Tensor:
    """`histogram_row` of every tensor, one row each, in a few operators for them all.

    The device path's histograms: one tensor at a time they cost ~25 operators
    each (18 tensors on the block model: ~450), every one of them host time on
    a GPU whose steps are host-bound. Here the tensors are concatenated and
    binned together, segment by segment, to the same rows bit for bit. A
    missing or empty tensor, or one over BATCH_ELEMENTS, gets its own row.
    """
    blocks: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        n = 0 if t is None else t.numel()
        if batch and (n == 0 or n > BATCH_ELEMENTS or size + n > BATCH_ELEMENTS):
            blocks.append(_batched_rows(batch, bins))
            batch, size = [], 0
        if n == 0 or n > BATCH_ELEMENTS:
            blocks.append(histogram_row(t, bins, device).unsqueeze(0))
        else:
            batch.append(t)
            size += n
    if batch:
        blocks.append(_batched_rows(batch, bins))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _batched_rows(tensors: list[torch.Tensor], bins: int) -> torch.Tensor:
    # histogram_row's arithmetic, element for element, with each tensor's lo
    # and width gathered by its segment id and each segment's bins offset.
    # Extremes by segmented reductions, not scatter_reduce: on a GPU its float
    # amin/amax are compare-and-swap loops, thousands of threads contending
    # for a few addresses (an everything-step of an 8x1024 MLP read back 75
    # ms after its launches, on an H100). unsafe: the sizes are the tensors'
    # own, and checking them would read them back (a synchronization).
    flats = [t.detach().reshape(-1) for t in tensors]
    x = torch.cat(flats).float()
    k = len(flats)
    sizes = _sizes_on(flats, x.device)
    seg = torch.repeat_interleave(torch.arange(k, device=x.device), sizes, output_size=x.numel())
    finite = torch.isfinite(x)
    lo = torch.segment_reduce(torch.where(finite, x, math.inf), "min", lengths=sizes, unsafe=True)
    hi = torch.segment_reduce(torch.where(finite, x, -math.inf), "max", lengths=sizes, unsafe=True)
    width = torch.clamp(hi - lo, min=1e-30)
    lows, widths = lo.index_select(0, seg), width.index_select(0, seg)
    position = torch.nan_to_num((x - lows) / widths * bins, nan=0.0, posinf=0.0, neginf=0.0)
    index = torch.clamp(position.floor(), 0, bins - 1).long() + seg * bins
    counts = torch.zeros(k * bins, device=x.device).scatter_add_(0, index, finite.float())
    nonfinite = torch.zeros(k, device=x.device).scatter_add_(0, seg, (~finite).float())
    return torch.cat([torch.stack([lo, hi, nonfinite], dim=1), counts.view(k, bins)], dim=1)


def _sizes_on(flats: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    # The segments' sizes as a device tensor, kept: a model's tensors keep their
    # sizes from step to step, and a copy from pageable memory would be a sync.
    key = (tuple(f.numel() for f in flats), str(device))
    sizes = _repeats.get(key)
    if sizes is None:
        if len(_repeats) > 64:  # many models or batch sizes in one process
            _repeats.clear()
        sizes = torch.tensor(key[0], dtype=torch.long)
        if device.type == "cuda":
            sizes = sizes.pin_memory().to(device, non_blocking=True)
        else:
            sizes = sizes.to(device)
        _repeats[key] = sizes
    return sizes

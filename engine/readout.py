"""How a captured step's statistics get from tensors to Python floats.

A `ReadQueue` collects device values and reads them in one go; each batch
comes with a consumer that turns its floats into rows of statistics in the
step's `found` dict, which GradientProbe then makes a record of.

Every `queue_*` function has two paths. `eager` (the CPU): float32 partials
(sums, norms, extremes), read at once while the tensors are as measured, so a
statistic the partials cannot give exactly is recomputed from the tensor
itself (engine.stats). Otherwise (a GPU): torch's own reductions, queued for
the one device-to-host copy of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from engine.stats import (
    HostNorms,
    abs_max,
    cpu_norm,
    exact_moments,
    host_counts,
    mean_std,
    nonfinite_counts,
    queue_device_activations,
    queue_device_moments,
    queue_sum_range,
    queue_sums,
)


class ReadQueue:
    """Device values waiting for the host: scalars stacked, vectors appended, one read.

    Each batch comes with a consumer called with its host values, in order.
    """

    __slots__ = ("scalars", "vectors", "consumers")

    def __init__(self) -> None:
        self.scalars: list[torch.Tensor] = []
        self.vectors: list[torch.Tensor] = []
        self.consumers: list = []

    def add(self, tensors, consume: Callable[[list[float]], None]) -> None:
        """Queue 0-d tensors; `consume(list_of_floats)` gets their values."""
        self.consumers.append((False, len(self.scalars), len(tensors), consume))
        self.scalars.extend(tensors)

    def add_vectors(self, tensors: list[torch.Tensor], consume) -> None:
        """Queue 1-d tensors; `consume([list_of_floats, ...])` gets one list each."""
        self.consumers.append((True, len(self.vectors), len(tensors), consume))
        self.vectors.extend(tensors)

    def flush(self) -> None:
        """Read everything queued (one host copy) and run the consumers."""
        if not self.consumers:
            return
        scalars, vectors = self.scalars, self.vectors
        if len(vectors) == 1 and not scalars:  # no launch to join them (a GPU's graphed step)
            values, rows = [], [vectors[0].tolist()]
        elif vectors:
            head = [torch.stack(scalars)] if scalars else []
            flat = torch.cat(head + vectors).tolist()
            values = flat[: len(scalars)]
            rows, offset = [], len(scalars)
            for v in vectors:
                n = v.numel()
                rows.append(flat[offset : offset + n])
                offset += n
        elif len(scalars) == 1:
            values, rows = [scalars[0].item()], []
        else:
            values, rows = (torch.stack(scalars).tolist() if scalars else []), []
        consumers = self.consumers
        self.scalars, self.vectors, self.consumers = [], [], []
        for is_vector, start, count, consume in consumers:
            consume(rows[start : start + count] if is_vector else values[start : start + count])


def store(found: dict, key: str):
    """A consumer that keeps the values under `key`."""

    def consume(values: list) -> None:
        found[key] = values

    return consume


def queue_grads(
    q: ReadQueue,
    found: dict,
    key: str,
    grads: list,
    norms,
    eager: bool,
    partials=None,
    changing: bool = False,
) -> None:
    """Per layer (mean, std, abs max, non-finite count, min, max) into found[key].

    `norms()` gives the layers' L2 norms on the host once the queue is read;
    `partials`, when given, are the (sum, min, max) per layer already queued
    on the device (eager path only; values the host has read already go to
    `grad_rows` directly, engine.grad_partials.host_found). A layer whose norm is finite holds no
    NaN or inf; the others are counted after the read, in one more read, on
    the rare step that has them. `changing`: the tensors are rewritten in
    place before the queue is read (value clipping), so on the device path
    their counts are queued with the rest instead.
    """
    parts: list[torch.Tensor] = []
    if eager:
        if partials is not None:
            parts = partials
        else:
            queue_sum_range(grads, parts)

        def finish(v: list[float]) -> None:
            found[key] = grad_rows(grads, norms(), v)

    else:
        queue_device_moments(grads, parts, grads=True, counts=changing)
        width = 4 if changing else 3

        def finish(v: list[float]) -> None:
            cells = [v[width * j : width * j + width] for j in range(len(grads))]
            if not changing:
                for cell, bad in zip(cells, counts_where_broken(grads, norms()), strict=True):
                    cell.append(bad)
            found[key] = [(c[0], c[1], c[2], c[3], None, None) for c in cells]

    q.add(parts, finish)


def grad_rows(grads: list, layer_norms: list[float], partials: list[float]) -> list[tuple]:
    """Per tensor (mean, std, abs max, non-finite count, min, max) from its partials, read.

    `partials` holds each tensor's (sum, min, max) in turn, `layer_norms`
    its L2 norm; a tensor whose sums cannot give its moments to float
    tolerance is recomputed (engine.stats.exact_moments).
    """
    rows = []
    bad = counts_where_broken(grads, layer_norms)
    for j, (g, norm) in enumerate(zip(grads, layer_norms, strict=True)):
        s, lo, hi = partials[3 * j : 3 * j + 3]
        finite = math.isfinite(lo) and math.isfinite(hi)
        ms = mean_std(g.numel(), s, norm * norm, finite)
        mean, std = ms if ms is not None else exact_moments(g)
        rows.append((mean, std, abs_max(lo, hi), bad[j], lo, hi))
    return rows


def first_nonfinite(names: list[str], tensors: list) -> str | None:
    """The name of the first tensor holding NaN or inf (None ones skipped), in one read."""
    here = [(name, t) for name, t in zip(names, tensors, strict=True) if t is not None]
    if not here:
        return None
    counts = nonfinite_counts([t for _, t in here])
    return next((name for (name, _), c in zip(here, counts, strict=True) if c > 0), None)


def counts_where_broken(grads: list, layer_norms: list[float]) -> list[float]:
    """Each tensor's NaN and inf count: 0 where its norm is finite, the others in one read."""
    broken = [j for j, n in enumerate(layer_norms) if not math.isfinite(n)]
    counts = [0.0] * len(grads)
    for j, c in zip(broken, nonfinite_counts([grads[j] for j in broken]), strict=True):
        counts[j] = c
    return counts


def queue_weights(
    q: ReadQueue,
    found: dict,
    weights: list,
    eager: bool,
    interleave: bool = False,
    moments: bool = True,
    host: HostNorms | None = None,
    known: list[float] | None = None,
) -> None:
    """Per layer (mean, std, L2 norm) of the weights into found["weights"].

    Without `moments`, the norms alone (mean and std None): what the update
    ratio needs: `known` where already read, else one call for every layer,
    or on the CPU `host`'s. With `interleave`, each weight's norm and sum are
    taken back to back (the tensor still in cache); the queued layout is the same.
    """
    n = len(weights)
    if not moments:

        def norms_only(v: list[float]) -> None:
            found["weights"] = [(None, None, norm) for norm in v]

        host_norms = known
        if host_norms is None and eager and host is not None:
            host_norms = host.norms()
        if host_norms is not None:
            norms_only(host_norms)
        elif eager and interleave:  # large CPU weights: a dot product each
            q.add([cpu_norm(w) for w in weights], norms_only)
        else:
            q.add(list(torch._foreach_norm(weights)) if weights else [], norms_only)
        return
    if eager and interleave:
        norms, sums = [], []
        for w in weights:
            norms.append(cpu_norm(w))
            sums.append(w.sum())
        parts = norms + sums
    else:
        parts = list(torch._foreach_norm(weights))
        if eager:
            queue_sums(weights, parts)
    if eager:

        def finish(v: list[float]) -> None:
            rows = []
            for j, w in enumerate(weights):
                norm, s = v[j], v[n + j]
                ms = mean_std(w.numel(), s, norm * norm)
                mean, std = ms if ms is not None else exact_moments(w)
                rows.append((mean, std, norm))
            found["weights"] = rows
    else:
        queue_device_moments(weights, parts, grads=False)

        def finish(v: list[float]) -> None:
            found["weights"] = [(v[n + 2 * j], v[n + 2 * j + 1], v[j]) for j in range(n)]

    q.add(parts, finish)


def queue_activations(q: ReadQueue, found: dict, acts: list, saturating, eager: bool) -> None:
    """Per layer (mean, std, zero fraction, saturated fraction) into found["acts"]."""
    here = [a for a in acts if a is not None]
    parts: list[torch.Tensor] = []
    if eager:
        parts += torch._foreach_norm(here) if here else []
        parts += [a.sum() for a in here]
        counts = [host_counts(a, saturating) for a in here]
    else:
        queue_device_activations(here, saturating, parts)
    width = 4 if saturating is not None else 3
    m = len(here)

    def finish(v: list[float]) -> None:
        rows, k = [], 0
        for a in acts:
            if a is None:
                rows.append(None)
                continue
            n = a.numel()
            if eager:
                norm, total = v[k], v[m + k]
                ms = mean_std(n, total, norm * norm)
                mean, std = ms if ms is not None else exact_moments(a)
                zeros, saturated = counts[k]
            else:
                cell = v[k * width : (k + 1) * width]
                mean, std, zeros = cell[0], cell[1], cell[2]
                saturated = cell[3] if width == 4 else None
            rows.append((mean, std, zeros / n, None if saturated is None else saturated / n))
            k += 1
        found["acts"] = rows

    q.add(parts, finish)

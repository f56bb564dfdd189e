"""The sentinels: what every training step measures, at the least cost.

The loss and the total gradient norm (raw and, under clipping, applied) are
taken on every step, so a run that breaks is caught on the step it breaks.
On the CPU they are read at once; a step whose loss or norm is not finite
gets None back from here, and GradientProbe captures it in full instead.
`probe` is the GradientProbe whose step this is.
"""

from __future__ import annotations

import math
from functools import partial
from operator import attrgetter, is_

import torch

from engine.grad_partials import host_partials
from engine.host_copy import HostCopy, device_vector
from engine.readout import ReadQueue, store
from engine.recording import l2_total
from engine.stats import cpu_norm

_GRAD = attrgetter("grad")
_IS_NONE = partial(is_, None)  # tested in C: a generator's frame a parameter cost 2 us a step


def sentinel_pending(probe, loss: torch.Tensor, eager_devices: set[str]) -> tuple | None:
    """What a sentinel step's fast paths leave for end_step: (packed, None) or (None, found).

    None where none applies (or the step broke): the probe's general path
    takes the step. With a CPU flat buffer the loss's device is not asked
    (~4 us right after backward, on a step of ~250); a large CPU model
    without one is swept in C (`swept_sentinels`).
    """
    flat = probe.flat
    eager_flat = flat is not None and flat.device_type in eager_devices
    if not eager_flat and loss.device.type not in eager_devices:
        packed = packed_sentinels(probe, loss)
        if packed is not None:
            return packed, None
    found = flat_sentinels(probe, loss, eager_devices)
    if found is None and flat is None and probe.large_layers:
        found = swept_sentinels(probe, loss, eager_devices)
    return None if found is None else (None, found)


def swept_sentinels(probe, loss: torch.Tensor, eager_devices: set[str]) -> dict | None:
    """The sentinels of a large CPU model's step: every gradient's norm in one C sweep, or None.

    The gradients of a model of millions of weights are read once from
    memory, not cache, whatever reads them; one threaded C call
    (engine.native_stats) does it in ~1.4 ms over an 8x1024 MLP's 29 MB,
    where a dot product per gradient, their stack and its norm took ~1.8.
    None where the path does not apply (clipping, a hook that keeps the
    raw gradient aside, a missing gradient, no kernel) or where the loss or
    the norm is not finite: the general path then captures the step in full.
    """
    grads = list(map(_GRAD, probe.params))
    if any(map(_IS_NONE, grads)) or grads[0].device.type not in eager_devices:
        return None
    # The statistics step's own sweep (clipping and a kept raw gradient excluded).
    read = host_partials(probe, probe._all_present, grads)
    return None if read is None else _finite_found(loss, l2_total(read[1]))


def _finite_found(loss: torch.Tensor, raw_value: float) -> dict | None:
    # A CPU sentinel step's values, the loss read here; None where either is not finite.
    loss_value = loss.item()
    if not (math.isfinite(loss_value) and math.isfinite(raw_value)):
        return None
    return {"present": (), "loss": [loss_value], "raw_total": [raw_value]}


def flat_sentinels(probe, loss: torch.Tensor, eager_devices: set[str]) -> dict | None:
    """The sentinels of a fast CPU step through the flat buffer, or None.

    The cheapest path of all, taken on most steps of a fast run: one dot
    product over the buffer (engine.flat_grads), the loss read, no lists.
    None when the path does not apply, or when the loss or the norm is not
    finite (the general path then captures the step in full).
    """
    flat, clip = probe.flat, probe.clip
    if flat is None or not clip.raw_is_grad or flat.device_type not in eager_devices:
        return None
    if not flat.attached():
        return None
    if clip.changes_gradients:  # clipping takes the norm as a tensor
        raw_total = flat.norm()
        raw_value = float(raw_total)
    else:
        raw_value = flat.host_norm()
    found = _finite_found(loss, raw_value)
    if found is not None and clip.changes_gradients:
        clip.apply([raw_total])
        found["applied_total"] = [float(flat.norm())]
    return found


def packed_sentinels(probe, loss: torch.Tensor) -> torch.Tensor | None:
    """The loss and the gradient norms of a sentinel step off the CPU, in one tensor.

    On a GPU every torch call costs host time (on the H100 of the benchmarks
    a step of the block model was host-bound), so this path makes the fewest:
    one norm over the flat buffer (engine.flat_grads, on the CPU), or over one
    concatenation of the gradients, or for the largest models one
    `_foreach_norm` whose norms are added up on the host; and one stack with the loss, read
    by `read_packed` as the step's one device-to-host copy. On CUDA all of it
    is one graph replay where the step's tensors allow (engine.graphed_sentinels). None where it
    does not apply (clipping, hooks that keep the raw gradient aside, a
    parameter without a gradient): the general path takes those.
    """
    clip, flat = probe.clip, probe.flat
    if clip.changes_gradients or not clip.raw_is_grad:
        return None
    if flat is not None and flat.attached():
        return torch.stack([loss.detach().reshape(()), flat.norm()])
    return packed_from_grads(probe, loss)


def packed_from_grads(probe, loss: torch.Tensor) -> torch.Tensor | None:
    """`packed_sentinels`' vector over autograd's own gradients (no flat buffer, nothing clipping).

    A graph's replay where one reads where the step's tensors lie, else torch
    calls of its own; None where a parameter has no gradient.
    """
    grads = every_grad(probe)
    if grads is None:
        return None
    graphs = probe.sentinel_graphs
    if graphs is not None:  # a CUDA graph's replay, where the tensors are where it reads
        replayed = graphs.packed(grads, loss)
        if replayed is not None:
            return replayed
    loss = loss.detach().reshape(())
    if probe.concatenable:
        return loss_and_norm(grads, loss, probe._all_numel)
    return torch.stack([loss, *torch._foreach_norm(grads)])


def every_grad(probe) -> list[torch.Tensor] | None:
    """Every trainable parameter's `.grad`, or None where one has none (or there are none)."""
    grads = list(map(_GRAD, probe.params))
    if not grads or any(map(_IS_NONE, grads)):
        return None
    return grads


def loss_and_norm(grads: list[torch.Tensor], loss: torch.Tensor, numel: int) -> torch.Tensor:
    """[loss, L2 norm of all `grads`] as one device vector, in two kernel launches.

    On the H100 of the benchmarks a launch costs ~40 us of a host-bound
    step's ~2 ms, so the count is what matters: one concatenation of the
    gradients with the loss (twice: the second copy is the slot the norm is
    written into), and the norm (cheaper than `_foreach_norm`: 0.96x against
    1.10x of the block model's bare step). A stack of the loss and the norm
    would be a third. `numel` is the gradients' element count.
    """
    head = loss.reshape(1)
    flat = _flatten([*grads, head, head])
    torch.linalg.vector_norm(flat.narrow(0, 0, numel), out=flat.select(0, numel + 1))
    return flat.narrow(0, numel, 2)


def _concatenated(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


# torch.cat of the flattened tensors in one call from Python (what DDP's buckets
# use): the views are made in C++, not a Python call each (7 us a step on the
# block model's twelve tensors here; more on a GPU host).
_flatten = getattr(torch._C._nn, "flatten_dense_tensors", _concatenated)

# Gradients up to this many elements are concatenated for the sentinel's norm
# (a transient copy of at most 256 MB in float32); larger models take
# `_foreach_norm`, which copies nothing.
CAT_UP_TO = 1 << 26


def concatenable(params: list[torch.Tensor]) -> bool:
    """Whether these parameters' gradients are few enough, and alike, to concatenate."""
    if not params:
        return False
    first = params[0]
    return sum(p.numel() for p in params) <= CAT_UP_TO and all(
        p.device == first.device and p.dtype == first.dtype for p in params
    )


def read_values(vector: torch.Tensor) -> list[float]:
    """A sentinel vector's values on the host, in the one copy that is the step's sync.

    A GPU's [loss, total norm] pair is read as one complex number: `.item()`
    copies into a host scalar, where `.tolist()` first allocates a host
    tensor and copies into it, two more torch calls. On the H200 of session
    17's profile a host-bound block step read its pair in 60 us by `tolist`
    and the bare loop its loss in 37 us by `.item()`. A complex's two parts
    are the floats themselves (float32 widens to float64 exactly; NaN and
    infinity stay as they are). A replay's HostCopy (engine.host_copy) is
    read from its pinned host vector after one wait, with no torch operator.
    """
    if type(vector) is HostCopy:
        return vector.tolist()
    if vector.is_cuda:
        pair = as_pair(vector)
        if pair is not None:
            return pair
    return vector.tolist()


def as_pair(vector: torch.Tensor) -> list[float] | None:
    """A two-float vector's values, read by one `.item()` of it as a complex; else None."""
    if vector.numel() != 2 or vector.storage_offset() % 2 or not vector.is_contiguous():
        return None  # (a complex view needs both floats side by side, the first aligned)
    as_complex = _COMPLEX_OF.get(vector.dtype)
    if as_complex is None:
        return None
    pair = vector.view(as_complex).item()
    return [pair.real, pair.imag]


_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def read_packed(packed: torch.Tensor, extra: torch.Tensor | None = None) -> dict:
    """The found values (loss, raw total) of `packed_sentinels`, read in one copy.

    `extra` (an RNN's per-time-step norms) travels in the same copy.
    """
    n = packed.numel()
    if extra is None:
        values = read_values(packed)
    else:
        vector = device_vector(packed)
        values = torch.cat([vector, extra.detach().reshape(-1).to(vector.dtype)]).tolist()
    norms = values[1:n]
    total = norms[0] if len(norms) == 1 else l2_total(norms)
    found = {"present": (), "loss": values[:1], "raw_total": [total]}
    if extra is not None:
        found["extra"] = [values[n:]]
    return found


def step_sentinels(probe, loss: torch.Tensor | None, raw: list, eager: bool):
    """(read queue, found values) of a step that carries the sentinels only, or None.

    The general path: any loop, any device. With the Trainer's flat gradient buffer (engine.flat_grads) a norm is
    one kernel. On the CPU the loss and the raw norm are read at once, and
    None comes back, before anything is clipped, when either is not finite:
    that step is captured in full instead.
    """
    clip, flat = probe.clip, probe.flat
    whole = flat is not None and flat.attached()
    large = eager and probe.large_layers
    raw_total = flat.norm() if whole and clip.raw_is_grad else total_norm(raw, large)
    q, found = ReadQueue(), {"present": ()}
    if eager and loss is not None:
        values = torch.stack([loss.detach().reshape(()), raw_total]).tolist()
        if not (math.isfinite(values[0]) and math.isfinite(values[1])):
            return None
        found["loss"], found["raw_total"] = values[:1], values[1:]
    else:
        q.add([raw_total], store(found, "raw_total"))
    clip.apply([raw_total])
    if clip.changes_gradients:
        grads = [p.grad for p in probe.params]
        applied = flat.norm() if whole else total_norm([g for g in grads if g is not None], large)
        q.add([applied], store(found, "applied_total"))
    return q, found


def total_norm(grads: list[torch.Tensor], large: bool = False) -> torch.Tensor:
    """The L2 norm of all of them together (a device scalar).

    `large`: CPU tensors of which some are large enough for a dot product to pay.
    """
    if not grads:
        return torch.zeros(())
    norms = [cpu_norm(g) for g in grads] if large else torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))

"""A statistics step's raw gradient norms and partials, the cheapest way for the model.

On the CPU, every gradient's sum, norm and extremes come from one C sweep
(engine.native_stats), through the flat buffer of a small model
(engine.flat_grads.segment_partials); without the kernel, or under clipping,
large CPU layers are swept one by one while in cache; otherwise one
`_foreach_norm`. `probe` is the GradientProbe whose step this is.
"""

from __future__ import annotations

from operator import attrgetter

import torch

from engine.native_stats import torch_norms_where_infinite
from engine.readout import grad_rows
from engine.stats import cpu_norm

_GRAD = attrgetter("grad")


def host_partials(probe, present: tuple, grads: list | None = None) -> tuple | None:
    """Every gradient's (sums, norms, minima, maxima) as floats, and the weights' norms or None.

    From the flat buffer of a small model; for a large CPU model, from one C
    sweep over autograd's own gradients (engine.native_stats: one pass over
    each, against torch's three; 1.7 against 2.8 ms over an 8x1024 MLP's
    32 MB, out of cache), built once for the probe's parameters (FreshSweep).
    Only where nothing clips the gradients (they are read before any would)
    and every parameter has one. `grads`: the parameters' `.grad`s, where
    the caller has them already.
    """
    flat, clip = probe.flat, probe.clip
    if clip.changes_gradients or not clip.raw_is_grad or present is not probe._all_present:
        return None
    if flat is not None:
        return flat.partials_for(probe.params, probe.layer_params)
    if not probe.large_layers:
        return None
    sweep = probe.fresh_sweep
    if sweep is None:
        return None
    if grads is None:
        grads = list(map(_GRAD, probe.params))
    read = sweep(grads)
    if read is None:
        return None
    sums, norms, lows, highs = read
    return sums, torch_norms_where_infinite(norms, grads), lows, highs, None


def host_found(probe, read: tuple, loss: torch.Tensor | None, raw_all: list) -> dict:
    """What a CPU statistics step read whole by `host_partials` found, with no read queue.

    The values the general path's queue would give (the same `grad_rows`),
    built at once: its queue and closures cost ~10 us a step right after
    backward, a quarter of the regression model's statistics step. The
    weights' norms where `read` carries them; `loss` is read here where given.
    """
    sums, norms, lows, highs, weight_norms = read
    index = probe._layer_index
    partials = [v for i in index for v in (sums[i], lows[i], highs[i])]
    rows = grad_rows([raw_all[i] for i in index], [norms[i] for i in index], partials)
    found = {"present": probe._all_present, "raw_norms": norms, "raw": rows}
    if weight_norms is not None:
        found["weights"] = [(None, None, norm) for norm in weight_norms]
    if loss is not None:
        found["loss"] = [loss.item()]
    return found


def norms_and_partials(probe, raw_all: list, present: tuple, raw: list, interleaved: bool):
    """(each present parameter's raw norm, the large layers' (sum, min, max) or None).

    Device scalars. `interleaved`: a CPU statistics step, where large layers
    get their norm and partials in one sweep.
    """
    if interleaved and probe.large_layers:
        return _swept(probe, raw_all, present)
    return (list(torch._foreach_norm(raw)) if raw else []), None


def _swept(probe, raw_all: list, present: tuple) -> tuple[list, list]:
    # Large layers (CPU): each gradient's norm, sum and extremes back to back,
    # while it is still in cache; measured a fifth faster than three sweeps
    # over all of them. The other parameters' norms in one call.
    by_param, partials = {}, []
    for j, g in enumerate(probe._layer_grads(raw_all)):
        by_param[probe._layer_index[j]] = cpu_norm(g)
        partials.append(g.sum())
        partials.extend(torch.aminmax(g))
    rest = [i for i in present if i not in by_param]
    if rest:
        by_param.update(zip(rest, torch._foreach_norm([raw_all[i] for i in rest]), strict=True))
    return [by_param[i] for i in present], partials

"""A statistics step's raw gradient norms and partials, the cheapest way for the model.

A small CPU model's flat buffer gives every gradient's sum, norm and extremes
in four numpy calls (engine.flat_grads.segment_partials); large CPU layers
are swept one by one while in cache; otherwise one `_foreach_norm`. `probe`
is the GradientProbe whose step this is.
"""

from __future__ import annotations

import torch

from engine.stats import cpu_norm


def host_partials(probe, present: tuple) -> tuple | None:
    """Every gradient's (sums, norms, minima, maxima) as floats from the flat buffer, or None.

    Only where nothing clips the gradients (they are read before any would)
    and the buffer holds exactly the probe's gradients, all present.
    """
    flat, clip = probe.flat, probe.clip
    if flat is None or clip.changes_gradients or not clip.raw_is_grad:
        return None
    return flat.partials_for(probe.params) if present is probe._all_present else None


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

"""The probe's general path: a step measured in any loop, on any device, under any clipping.

GradientProbe.after_backward takes the fast paths where they apply (a small
CPU model's compact statistics step and plain sentinels, a GPU's packed
sentinels and graphed statistics); every other step comes here. The raw
gradients are measured, clipped, and measured again where clipping changed
them; then the weights, the activations and the histograms as the step
captures them. On the CPU (`eager_devices`) values are read as soon as
computed, while the tensors are as measured; elsewhere they are queued for
the step's one read (engine.readout).
"""

from __future__ import annotations

import torch

from engine.grad_partials import host_found, host_partials, norms_and_partials
from engine.graphed_stats import GraphedStep, graphed_step
from engine.histograms import queue_histograms
from engine.readout import ReadQueue, queue_activations, queue_grads, queue_weights, store
from engine.sentinels import step_sentinels


def measure(probe, loss: torch.Tensor | None, eager_devices: set[str]) -> tuple | GraphedStep:
    """What `probe`'s step measured, for end_step: (read queue, found values), or a GraphedStep.

    Call right after backward, with grad mode off. A step that was to carry
    the sentinels only and whose loss or norm is not finite (on the CPU) is
    captured in full.
    """
    clip, capture, flat = probe.clip, probe.capture, probe.flat
    if flat is not None and clip.raw_is_grad and flat.attached():
        # The Trainer's flat buffer: every gradient is its view (see
        # FlatGradients.attached), known without asking each parameter
        # (~30 us of Python right after backward).
        raw_all = raw = flat.views
        present, eager = probe._all_present, flat.device_type in eager_devices
    else:
        raw_all = clip.raw_grads()
        if any(g is None for g in raw_all):
            present = tuple(i for i, g in enumerate(raw_all) if g is not None)
            raw = [raw_all[i] for i in present]
        else:
            present, raw = probe._all_present, raw_all
        eager = not raw or raw[0].device.type in eager_devices
    if not capture and not probe.capture_acts:
        sentinels = step_sentinels(probe, loss, raw, eager)
        if sentinels is not None:
            return sentinels
        probe.capture = capture = True  # it broke here: take everything
    if probe._graphed is not None and not (eager or probe.capture_acts):
        measured = graphed_step(probe, raw, present, loss)
        if measured is not None:
            return measured
    read = host_partials(probe, present) if capture and eager else None
    q, weight_norms = ReadQueue(), None
    if read is not None:  # a CPU model's gradients, all read on the host (no clipping)
        found = host_found(probe, read, loss, raw_all)
        if "weights" in found and not probe.capture_acts:
            return None, found  # all read: nothing queued
        raw_norms, weight_norms = None, read[4]
    else:
        found = {"present": present}
        raw_norms, partials = norms_and_partials(probe, raw_all, present, raw, capture and eager)
        q.add(raw_norms, store(found, "raw_norms"))
        if eager and loss is not None:
            # Read with the statistics (the CPU reads them here), not on its own
            # after optimizer.step(): one read a captured step, as on a GPU.
            # Elsewhere end_step queues it.
            q.add([loss.detach().reshape(())], store(found, "loss"))
        if capture:
            norms = _norms_of(probe, found, "raw_norms")
            layers = probe._layer_grads(raw_all)
            changing = clip.changes_gradients and clip.raw_is_grad
            queue_grads(q, found, "raw", layers, norms, eager, partials, changing)
    if capture:
        count = clip.clipped_count(raw, raw_norms)
        if count is not None:
            q.add([count], store(found, "clipped"))
        if eager and clip.changes_gradients:
            q.flush()  # value clipping rewrites these tensors in place
    if raw_norms is not None:
        clip.apply(raw_norms)
    if clip.changes_gradients:
        grads = [p.grad for p in probe.params]
        applied = [grads[i] for i in present]
        q.add(torch._foreach_norm(applied) if applied else [], store(found, "applied_norms"))
        if capture:
            norms = _norms_of(probe, found, "applied_norms")
            queue_grads(q, found, "applied", probe._layer_grads(grads), norms, eager)
    moments = probe.capture_acts
    if moments or (capture and not (eager and probe.weights_sampled)):
        # The weights move slowly: their mean and std come with the activations
        # (beside their histograms); a statistics step takes their norms alone,
        # for the update ratio. A large CPU model's come with the activations
        # too: a pass over as many bytes as its gradients' (GradientProbe).
        queue_weights(
            q, found, probe.layer_params, eager, probe.large_layers, moments, probe._host_norms,
            weight_norms,
        )  # fmt: skip
    if probe.capture_acts:
        acts = [_as_float(a) for a in probe.taps.take()]
        queue_activations(q, found, acts, probe.saturating, eager)
        groups = (
            ("weight", list(probe.layer_params)),
            ("grad", [p.grad for p in probe.layer_params]),
            ("act", acts),
        )
        queue_histograms(q, found, groups, probe.layer_names, eager)
    if eager and (capture or probe.capture_acts):
        q.flush()  # read while every tensor is as measured (fallbacks need them)
    return q, found


def _norms_of(probe, found: dict, key: str):
    # The layers' norms, once the queue has read found[key].
    def norms() -> list[float]:
        values = found[key]
        return [values[k] if k is not None else 0.0 for k in probe._slots(found["present"])]

    return norms


def _as_float(a: torch.Tensor | None) -> torch.Tensor | None:
    # Half-precision sums would round; the statistics are taken in float32 at least.
    if a is None or a.dtype in (torch.float32, torch.float64):
        return a
    return a.float()

"""A GPU statistics step's reductions, captured once as a CUDA graph and replayed.

On a GPU whose steps are host-bound every torch call costs host time, and a
statistics step issues about fifteen of them (every gradient's norm, each
layer's mean, std and abs max, each weight's norm). Replayed as one graph
they cost one launch, plus one copy of the gradients into the buffer the
graph reads (autograd's gradients move from step to step; the weights stay
where they are). On the H100 of the benchmarks: statistics every step cost
1.24-1.27x a bare step op by op, 1.03-1.07x as a graph (benchmarks/RESULTS.md).
The loss is copied in beside the gradients and comes out first in the
graph's vector, so the step's read needs no launch of its own to join them.

The values are the device path's own (engine.stats.queue_device_moments),
computed by the same torch reductions, read in the step's one copy.
"""

from __future__ import annotations

import gc
import math

import torch

from engine.readout import ReadQueue, counts_where_broken

# The graph reads a copy of every gradient: up to this many elements (256 MB
# in float32); larger models keep their memory and go op by op.
GRAPH_UP_TO = 1 << 26


def graphable(params: list[torch.Tensor]) -> bool:
    """Whether these parameters suit a captured graph: on one CUDA device, one float dtype."""
    if not params or params[0].device.type != "cuda":
        return False
    first = params[0]
    return (
        first.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
        and sum(p.numel() for p in params) <= GRAPH_UP_TO
        and all(p.device == first.device and p.dtype == first.dtype and p.numel() for p in params)
    )


class GraphedStatistics:
    """Every gradient's norm, each layer's (mean, std, abs max), each weight's norm: one replay.

    `params` are all trainable parameters, `layer_index` the layers' places
    among them, `weights` the layers' parameters. Off CUDA (the tests) the
    reductions run directly on the buffer, so everything but the capture
    itself is exercised on the CPU.
    """

    def __init__(self, params: list, layer_index: list[int], weights: list) -> None:
        first = params[0]
        sizes = [p.numel() for p in params]
        self.layer_index = layer_index
        self.n_params, self.n_layers = len(params), len(layer_index)
        self.weights = weights
        self._weight_places = [w.data_ptr() for w in weights]
        # Detached, and captured without grad: an operator on a parameter that
        # requires grad has autograd create its gradient accumulator, here on
        # the capture's side stream, and every backward after warned of a
        # stream mismatch (on the H100: a UserWarning above gradtui's errors).
        weights = [w.detach() for w in weights]
        total = sum(sizes)
        # The gradients, then one slot for the loss.
        self.buffer = torch.zeros(total + 1, device=first.device, dtype=first.dtype)
        gradients = self.buffer.narrow(0, 0, total).split(sizes)
        views = [v.view_as(p) for v, p in zip(gradients, params, strict=True)]
        slot = self.buffer.select(0, total)
        self._views, self._slot = views, slot
        # No reference back to self: a cycle would leave an old probe's graph
        # to the cyclic collector, which may run while a new one is being
        # captured, and CUDA refuses to free a graph then (a warning on stderr).
        self._reductions = lambda: _reductions(
            slot, views, [views[i] for i in layer_index], weights
        )
        self.graph = None
        self.out: torch.Tensor | None = None
        if first.device.type == "cuda":
            self._capture(first.device)

    @torch.no_grad()
    def _capture(self, device: torch.device) -> None:
        # Warm-up on a side stream first, as torch.cuda.graphs asks; the
        # capture synchronizes, once, before the run's first step.
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._reductions()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a session training in another thread (compare mode) is
        # not refused its own CUDA calls meanwhile; should it break the
        # capture, this probe goes op by op (GradientProbe.__enter__).
        collecting = gc.isenabled()
        gc.disable()  # nor may an unrelated cycle's graph be freed mid-capture
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.out = self._reductions()
        finally:
            if collecting:
                gc.enable()
        self.graph = graph

    def valid(self) -> bool:
        """Whether the weights are still where the graph reads them (none was replaced)."""
        return all(
            w.data_ptr() == p for w, p in zip(self.weights, self._weight_places, strict=True)
        )

    def takes(self, loss: torch.Tensor | None) -> bool:
        """Whether `loss` fits the buffer's slot: one number, of its device and dtype."""
        slot = self._slot
        return (
            loss is not None
            and loss.numel() == 1
            and loss.dtype == slot.dtype
            and loss.device == slot.device
        )

    def measure(self, grads: list[torch.Tensor], loss: torch.Tensor | None = None) -> torch.Tensor:
        """[the loss's slot, then the reductions over these gradients] as one device vector.

        `grads` has one gradient per parameter; `loss`, where `takes` allows,
        is copied into the slot in the same call (else the slot is stale).
        """
        if loss is not None:
            _copy_all([*self._views, self._slot], [*grads, loss.detach().reshape(())])
        else:
            _copy_all(self._views, grads)
        if self.graph is None:
            return self._reductions()
        self.graph.replay()
        return self.out

    def consumer(self, found: dict, layer_grads: list[torch.Tensor], with_loss: bool = False):
        """What turns the read vector into found's raw_norms, raw rows and weight norms.

        `with_loss`: the slot held this step's loss (found's loss too).
        """
        n, m = self.n_params, self.n_layers
        if with_loss:
            found["loss"] = []  # read with the rest: end_step queues no read of its own

        def finish(rows: list[list[float]]) -> None:
            head, v = rows[0][:1], rows[0][1:]
            if with_loss:
                found["loss"] = head
            norms = v[:n]
            cells = [v[n + 3 * j : n + 3 * j + 3] for j in range(m)]
            bad = counts_where_broken(layer_grads, [norms[i] for i in self.layer_index])
            found["raw_norms"] = norms
            found["raw"] = [
                (c[0], c[1], c[2], b, None, None) for c, b in zip(cells, bad, strict=True)
            ]
            found["weights"] = [(None, None, norm) for norm in v[n + 3 * m :]]

        return finish


def graphed_step(probe, raw_all: list, raw: list, present: tuple, loss=None):
    """(read queue, found) of a statistics step through `probe`'s graph, or None.

    The step's `loss`, where given and it fits, is read in the same vector.

    None where the graph does not apply (a gradient missing) or no longer
    does (a weight was replaced: the probe goes op by op from then on).
    """
    graphed = probe._graphed
    if present is not probe._all_present:
        return None
    if not graphed.valid():
        probe._graphed = None
        return None
    with_loss = graphed.takes(loss)
    q, found = ReadQueue(), {"present": present}
    measured = graphed.measure(raw, loss if with_loss else None)
    q.add_vectors([measured], graphed.consumer(found, probe._layer_grads(raw_all), with_loss))
    return q, found


def _copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    # One multi-tensor launch on a GPU (a concatenation would need a reshaped
    # view of every gradient first, one Python call each).
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(targets, sources)
    else:  # torch before 2.1
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)


def _reductions(head: torch.Tensor, grads: list, layer_grads: list, weights: list) -> torch.Tensor:
    # The loss's slot, then the device path's reductions
    # (engine.stats.queue_device_moments), stacked.
    parts = [head]
    parts += torch._foreach_norm(grads)
    absmax = torch._foreach_norm(layer_grads, math.inf)
    for j, g in enumerate(layer_grads):
        std, mean = torch.std_mean(g)
        parts += [mean, std, absmax[j]]
    parts += torch._foreach_norm(weights)
    return torch.stack(parts)

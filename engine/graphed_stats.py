"""A GPU statistics step's reductions, captured once as a CUDA graph and replayed.

On a GPU whose steps are host-bound every torch call costs host time, and a
statistics step issues about fifteen of them (every gradient's norm, each
layer's mean, std and abs max, each weight's norm). Replayed as one graph
they cost one launch, plus one copy of the gradients into the buffer the
graph reads (autograd's gradients move from step to step; the weights stay
where they are). On the H100 of the benchmarks: statistics every step cost
1.24-1.27x a bare step op by op, 1.03-1.07x as a graph (benchmarks/RESULTS.md).

The values are the device path's own (engine.stats.queue_device_moments),
computed by the same torch reductions, read in the step's one copy.
"""

from __future__ import annotations

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
        self.buffer = torch.zeros(sum(sizes), device=first.device, dtype=first.dtype)
        views = [v.view_as(p) for v, p in zip(self.buffer.split(sizes), params, strict=True)]
        self._reductions = lambda: _reductions(views, [views[i] for i in layer_index], weights)
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
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.out = self._reductions()
        self.graph = graph

    def valid(self) -> bool:
        """Whether the weights are still where the graph reads them (none was replaced)."""
        return all(
            w.data_ptr() == p for w, p in zip(self.weights, self._weight_places, strict=True)
        )

    def measure(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """The reductions over these gradients (one per parameter), as one device vector."""
        torch.cat([g.reshape(-1) for g in grads], out=self.buffer)
        if self.graph is None:
            return self._reductions()
        self.graph.replay()
        return self.out

    def consumer(self, found: dict, layer_grads: list[torch.Tensor]):
        """What turns the read vector into found's raw_norms, raw rows and weight norms."""
        n, m = self.n_params, self.n_layers

        def finish(rows: list[list[float]]) -> None:
            v = rows[0]
            norms = v[:n]
            cells = [v[n + 3 * j : n + 3 * j + 3] for j in range(m)]
            bad = counts_where_broken(layer_grads, [norms[i] for i in self.layer_index])
            found["raw_norms"] = norms
            found["raw"] = [
                (c[0], c[1], c[2], b, None, None) for c, b in zip(cells, bad, strict=True)
            ]
            found["weights"] = [(None, None, norm) for norm in v[n + 3 * m :]]

        return finish


def graphed_step(probe, raw_all: list, raw: list, present: tuple):
    """(read queue, found) of a statistics step through `probe`'s graph, or None.

    None where the graph does not apply (a gradient missing) or no longer
    does (a weight was replaced: the probe goes op by op from then on).
    """
    graphed = probe._graphed
    if present is not probe._all_present:
        return None
    if not graphed.valid():
        probe._graphed = None
        return None
    q, found = ReadQueue(), {"present": present}
    q.add_vectors([graphed.measure(raw)], graphed.consumer(found, probe._layer_grads(raw_all)))
    return q, found


def _reductions(grads: list, layer_grads: list, weights: list) -> torch.Tensor:
    # The device path's reductions (engine.stats.queue_device_moments), stacked.
    parts = list(torch._foreach_norm(grads))
    absmax = torch._foreach_norm(layer_grads, math.inf)
    for j, g in enumerate(layer_grads):
        std, mean = torch.std_mean(g)
        parts += [mean, std, absmax[j]]
    parts += torch._foreach_norm(weights)
    return torch.stack(parts)

"""A GPU sentinel step's loss and total gradient norm, replayed as a CUDA graph.

A GPU step of the slides' models is host-bound: the bare step's fifty-odd
kernel launches take ~2 ms of host time on the H100 of the benchmarks, and
each torch call the sentinel adds costs 10-40 us more (benchmarks/RESULTS.md,
section 6). Taken op by op the sentinel is about eight calls (views of the
loss, the gradients flattened, the norm, its slot), ~10% of a bare step.

A graph reads its inputs where they were when it was captured. The caching
allocator hands a steady training loop the same blocks step after step, so
autograd's fresh gradients and the loss usually land where they were: a
step whose tensors are all where a graph reads them replays it (one call),
and any other step goes op by op. Where they are is checked on every step
(a pointer each, no device work), so a replay never reads a stale tensor.
A graph is captured once a placement has been seen twice, up to
MAX_GRAPHS placements; a loop whose tensors never settle stops looking
after GIVE_UP_AFTER steps without a replay.

The capture runs on a side stream without synchronizing (it records kernels,
it runs none), so a capture step makes no more device syncs than any other.
"""

from __future__ import annotations

import torch

from engine.collector import collector_paused

MAX_GRAPHS = 4  # placements kept (each graph's memory is a few small vectors)
GIVE_UP_AFTER = 64  # sentinel steps with no replay before the graphs are dropped


class GraphedSentinels:
    """[loss, total gradient norm] of a sentinel step, by graph replay where the tensors allow.

    `packed(grads, loss)` gives the device vector that engine.sentinels.read_packed
    reads, or None where this step must go op by op (no graph for where its
    tensors are, or the graphs were given up). `capture` makes a replayable
    graph of `_loss_and_total` for these tensors; tests stand in for it off CUDA.
    """

    def __init__(self, capture=None) -> None:
        self._capture = capture or capture_graph
        self._graphs: dict[tuple, tuple] = {}  # placement -> (graph, its output vector)
        self._seen: set[tuple] = set()  # placements seen once, not yet captured
        self._since_replay = 0
        self.active = True
        self.replays = 0

    def packed(self, grads: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor | None:
        """This step's [loss, norm] vector from a replay, or None (go op by op)."""
        if not self.active:
            return None
        placement = (loss.data_ptr(), *[g.data_ptr() for g in grads])
        hit = self._graphs.get(placement)
        if hit is None and placement in self._seen and len(self._graphs) < MAX_GRAPHS:
            self._seen.discard(placement)
            try:
                hit = self._capture(grads, loss)
            except Exception:  # a graph is a speed-up: without one, op by op
                self.close()
                return None
            self._graphs[placement] = hit
        if hit is None:
            if len(self._seen) < 2 * MAX_GRAPHS:
                self._seen.add(placement)
            self._since_replay += 1
            if self._since_replay > GIVE_UP_AFTER:
                self.close()
            return None
        graph, out = hit
        graph.replay()
        self._since_replay = 0
        self.replays += 1
        return out

    def close(self) -> None:
        """Drop every graph (their memory goes back) and look no more."""
        self.active = False
        self._graphs.clear()
        self._seen.clear()


def _loss_and_total(grads: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    # Inside a graph launches cost nothing on the host, so no flattened copy:
    # each gradient's norm, then theirs.
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.stack([loss.detach().reshape(()), total])


@torch.no_grad()
def capture_graph(grads: list[torch.Tensor], loss: torch.Tensor) -> tuple:
    """(graph, output) of `_loss_and_total` over these very tensors, captured on a side stream.

    No synchronization: the side stream waits on the current one by an event,
    runs the reductions once (the warm-up torch.cuda.graphs asks for), and
    capturing runs nothing. The cyclic collector is off meanwhile (an
    unrelated graph freed mid-capture is refused, engine.graphed_stats).
    `thread_local`: a session training in another thread may go on.
    """
    device = loss.device
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device=device)
    side.wait_stream(current)
    graph = torch.cuda.CUDAGraph()
    with collector_paused(), torch.cuda.stream(side):
        _loss_and_total(grads, loss)  # warm-up off the capture, as torch.cuda.graphs asks
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            out = _loss_and_total(grads, loss)
        finally:
            graph.capture_end()
    current.wait_stream(side)
    return graph, out

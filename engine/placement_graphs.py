"""CUDA graphs of a step's reductions, one per placement of the tensors they read.

A GPU step of the slides' models is host-bound: the bare step's fifty-odd
kernel launches take ~2 ms of host time on the H100 of the benchmarks, and
each torch call the probe adds costs 10-40 us more (benchmarks/RESULTS.md,
section 6). Replayed as a graph, any number of reductions cost one call.

A graph reads its inputs where they were when it was captured. The caching
allocator hands a steady training loop the same blocks step after step, so
autograd's fresh gradients and the loss usually land where they were: a
step whose tensors are all where a graph reads them replays it, and any
other step computes the same reductions op by op. Where they are is checked
on every step (a pointer each, no device work), so a replay never reads a
stale tensor. A graph is captured once a placement has been seen twice
among the last few placements seen; MAX_GRAPHS are kept, the least recently
replayed making room for a new one. Captures are paid from a credit of
MAX_CAPTURES (a capture costs a few op-by-op steps of host time), and every
REPLAYS_PER_CAPTURE replays of graphs captured on earlier steps earn one
back. A loop cycling through more placements than graphs replays each graph
only on the step that captured it, so it soon stops capturing; a loop whose
tensors move now and then, between settled stretches, keeps its graphs all
run (at worst a capture every 65 steps). A loop whose tensors never settle
stops looking after GIVE_UP_AFTER steps without a replay.

Why credit and not a cap on the captures ever made: in session 19's GPU
benchmark, five probes training in turn in one process moved each other's
tensors every hundred steps or so. Probes made 10-16 captures in ~1,100
steps; two reached the cap of 16 and then went op by op for good (a
statistics step 1.27x the bare one's there, against 1.03-1.06x replayed).

Why a window and eviction: a loop's first steps, or a process whose
allocator cache is fragmented by earlier work (a test suite's worker, a
dashboard's second run), can put the tensors somewhere new for a dozen
steps before they settle. A set of first sightings that filled up and
stayed full then never saw the settled placement twice, and graphs of the
drifting placements held every slot: no replay ever (seen on an H200).

The capture runs on a side stream without synchronizing (it records kernels,
it runs none), so a capture step makes no more device syncs than any other.
engine.graphed_sentinels (every step's loss and total norm) and
engine.graphed_stats (a statistics step's reductions) are its two users.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import methodcaller

import torch

from engine.collector import collector_paused
from engine.host_copy import HostCopy, keep_stream

MAX_GRAPHS = 4  # placements kept (each graph's memory is a few small vectors)
MAX_CAPTURES = 4 * MAX_GRAPHS  # captures in hand: a loop cycling through more replays none
REPLAYS_PER_CAPTURE = 64  # replays of graphs captured earlier that earn one capture back
SEEN = 2 * MAX_GRAPHS  # the recent first sightings remembered
GIVE_UP_AFTER = 64  # steps with no replay before the graphs are dropped
_DATA_PTR = methodcaller("data_ptr")  # any tensor (tests hand over stand-ins)

# What a graph computes: (gradients, loss) -> one device vector.
Reductions = Callable[[list, torch.Tensor], torch.Tensor]


class PlacementGraphs:
    """`compute(grads, loss)` by graph replay where the step's tensors allow.

    `replayed(grads, loss)` gives the replayed graph's output (a HostCopy of
    its vector, engine.host_copy, or the vector), or None where this step
    must go op by op (no graph for where its tensors are, or the graphs were
    given up). `capture(grads, loss)` makes a replayable (graph, output) of
    `compute` for these tensors; tests stand in for it off CUDA.
    """

    def __init__(self, compute: Reductions, capture=None) -> None:
        self.compute = compute
        self._capture = capture or (lambda grads, loss: capture_graph(compute, grads, loss))
        # placement -> (graph, its output vector), the most recently replayed last
        self._graphs: dict[tuple, tuple] = {}
        self._seen: dict[tuple, None] = {}  # placements seen once lately, oldest first
        self._since_replay = 0
        self._credit = MAX_CAPTURES  # captures that may be made now
        self._earned = 0  # replays of a graph captured earlier, toward the next capture
        self.captures = 0
        self.active = True
        self.replays = 0

    def replayed(self, grads: list[torch.Tensor], loss: torch.Tensor):
        """This step's output from a replay (a HostCopy or a vector), or None (go op by op)."""
        if not self.active:
            return None
        placement = (loss.data_ptr(), *map(_DATA_PTR, grads))
        graphs = self._graphs
        hit = graphs.pop(placement, None)
        if hit is None:
            hit = self._second_sighting(placement, grads, loss)
            if hit is None:
                if self.active:
                    self._since_replay += 1
                    if self._since_replay > GIVE_UP_AFTER:
                        self.close()
                return None
        elif self._credit < MAX_CAPTURES:  # a graph replayed again earns captures back
            self._earned += 1
            if self._earned >= REPLAYS_PER_CAPTURE:
                self._earned = 0
                self._credit += 1
        graphs[placement] = hit  # (re)inserted last: the most recently replayed
        graph, out = hit
        graph.replay()
        self._since_replay = 0
        self.replays += 1
        return out

    def _second_sighting(self, placement: tuple, grads, loss) -> tuple | None:
        # A placement's first sighting is remembered; its second captures a
        # graph for it, making room if need be; None where this step goes op by op.
        seen = self._seen
        if placement not in seen:
            if self._credit > 0:
                seen[placement] = None
                if len(seen) > SEEN:
                    del seen[next(iter(seen))]
            return None
        del seen[placement]
        if self._credit <= 0:
            return None
        try:
            hit = self._capture(grads, loss)
        except Exception:  # a graph is a speed-up: without one, op by op
            self.close()
            return None
        self.captures += 1
        self._credit -= 1
        if len(self._graphs) >= MAX_GRAPHS:
            del self._graphs[next(iter(self._graphs))]  # the least recently replayed
        return hit

    def close(self) -> None:
        """Drop every graph (their memory goes back) and look no more."""
        self.active = False
        self._graphs.clear()
        self._seen.clear()


@torch.no_grad()
def capture_graph(compute: Reductions, grads: list[torch.Tensor], loss: torch.Tensor) -> tuple:
    """(graph, output) of `compute` over these very tensors, captured on a side stream.

    The output is a HostCopy (engine.host_copy) where a pinned host vector can
    be had: the graph ends by copying its vector there, and the step's read
    is a wait and a numpy read, no torch operator. Where a capture with that
    copy fails, the graph is captured again without it, and the output is
    the device vector, read as a tensor is.

    No synchronization: the side stream waits on the current one by an event,
    runs the reductions once (the warm-up torch.cuda.graphs asks for), and
    capturing runs nothing. The cyclic collector is off meanwhile: CUDA
    refuses to free an unrelated graph mid-capture (a warning on stderr).
    `thread_local`: a session training in another thread may go on.
    """
    device = loss.device
    current = torch.cuda.current_stream(device)
    keep_stream(current)  # a read's wait then finds its Stream object made
    side = torch.cuda.Stream(device=device)
    side.wait_stream(current)
    with collector_paused(), torch.cuda.stream(side):
        warm = compute(grads, loss)  # the warm-up, off the capture, as torch.cuda.graphs asks
        host = HostCopy.pinned_for(warm) if _PINNED_COPIES["work"] else None
        graph, out = None, None
        if host is not None:
            try:
                graph, out = _captured(compute, grads, loss, host)
            except RuntimeError:  # this torch cannot capture the copy: read as a tensor
                _PINNED_COPIES["work"] = False
        if graph is None:
            graph, out = _captured(compute, grads, loss, None)
    current.wait_stream(side)
    return graph, out


# Whether captures with a pinned copy succeed here; the first failure says no for the process.
_PINNED_COPIES = {"work": True}


def _captured(compute: Reductions, grads: list, loss: torch.Tensor, host) -> tuple:
    # One capture of `compute`, ending with the copy into `host` where given.
    graph = torch.cuda.CUDAGraph()
    graph.capture_begin(capture_error_mode="thread_local")
    try:
        out = compute(grads, loss)
        if host is not None:
            host.copy_(out, non_blocking=True)
    finally:
        graph.capture_end()
    return graph, (out if host is None else HostCopy(out, host))

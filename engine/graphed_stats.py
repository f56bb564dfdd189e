"""A GPU statistics step's reductions as one vector, replayed as a CUDA graph, kept compact.

On a GPU whose steps are host-bound every torch call costs host time, and a
statistics step issues about fifteen (every gradient's norm, each layer's
mean, std and abs max, each weight's norm). Replayed as a graph they cost
one call, on every step whose gradients and loss lie where a graph reads
them (engine.placement_graphs); other steps compute the same vector op by
op. The loss comes first in the vector, so the step's one read takes it too.

The host's share of the step is the rest: turning the read vector into
per-layer rows, objects and a History row took ~130 us of Python a step
(measured on the CPU's emulation of this path), as much as the launches the
graph saves. So a finite step's record keeps the vector as read, and its
layers are a CompactLayers (engine.compact_stats) that builds each layer's
LayerStats when first read, and gives History its row without objects. A
step with NaN or infinity anywhere goes the long way, which counts the
non-finite elements of each broken layer (one more read, on that step only).

The values are the device path's own (engine.stats.queue_device_moments),
computed by the same torch reductions.
"""

from __future__ import annotations

import math

import torch

from engine.compact_stats import CompactLayers, CompactLayout
from engine.host_copy import device_vector
from engine.placement_graphs import PlacementGraphs
from engine.readout import counts_where_broken
from engine.recording import make_record, new_step_record, safe_ratio
from engine.records import StepRecord
from engine.sentinels import every_grad

# Models up to this many trainable elements are graphed (256 MB in float32);
# past it a step's own kernels dwarf the launches a graph saves the host.
GRAPH_UP_TO = 1 << 26
_DATA_PTR = torch.Tensor.data_ptr


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
    """[loss, every gradient's norm, each layer's (mean, std, abs max), each weight's norm].

    `params` are all trainable parameters, `layer_index` the layers' places
    among them, `weights` the layers' parameters (read where they are: the
    optimizer updates them in place; `valid` says whether one was replaced),
    `names` the layers' names. `capture` stands in for the CUDA capture in
    tests; off CUDA without one the vector is computed op by op, so all but
    the capture runs on the CPU.
    """

    def __init__(
        self, params: list, layer_index: list[int], weights: list, names: list[str], capture=None
    ) -> None:
        first = params[0]
        numel = [params[i].numel() for i in layer_index]
        self.layout = GraphedLayout(names, layer_index, numel, len(params))
        self.weights = weights
        self._weight_places = tuple(map(_DATA_PTR, weights))
        # Detached: an operator on a parameter that requires grad has autograd
        # create its gradient accumulator, here on the capture's side stream,
        # and every backward after warned of a stream mismatch (on the H100: a
        # UserWarning above gradtui's errors).
        detached = [w.detach() for w in weights]
        self.dtype, self.device = first.dtype, first.device
        # Where the loss does not fit the vector (see `takes`), a fixed zero
        # stands in for it and end_step reads the loss beside the vector.
        self._no_loss = torch.zeros((), device=first.device, dtype=first.dtype)

        # No reference back to self: a cycle would leave an old probe's graphs
        # to the cyclic collector, which may run while a new one is being
        # captured, and CUDA refuses to free a graph then (a warning on stderr).
        def compute(grads: list, loss: torch.Tensor) -> torch.Tensor:
            return _reductions(loss, grads, [grads[i] for i in layer_index], detached)

        self.compute = compute
        on_cuda = first.device.type == "cuda"
        self.graphs = PlacementGraphs(compute, capture) if on_cuda or capture else None

    def valid(self) -> bool:
        """Whether the weights are still where the graphs read them (none was replaced)."""
        return tuple(map(_DATA_PTR, self.weights)) == self._weight_places

    def takes(self, loss: torch.Tensor | None) -> bool:
        """Whether `loss` fits the vector's first slot: one number, of its device and dtype."""
        return (
            loss is not None
            and loss.numel() == 1
            and loss.dtype == self.dtype
            and loss.device == self.device
        )

    def measure(self, grads: list[torch.Tensor], loss: torch.Tensor | None = None) -> torch.Tensor:
        """The step's vector over `grads` (one per parameter), by replay where one applies.

        `loss`, where `takes` allows, comes first in it; otherwise a zero does.
        """
        head = loss if loss is not None else self._no_loss
        graphs = self.graphs
        if graphs is not None:
            replayed = graphs.replayed(grads, head)
            if replayed is not None:
                return replayed
        with torch.no_grad():  # gradients of a create_graph backward require grad
            return self.compute(grads, head)

    def close(self) -> None:
        """Drop the graphs (their memory goes back)."""
        if self.graphs is not None:
            self.graphs.close()


class GraphedLayout(CompactLayout):
    """Where each layer's numbers lie in a GraphedStatistics vector, for CompactLayers.

    The vector: the loss, every gradient's norm (`gradients` of them), each
    layer's (mean, std, abs max), each layer's weight norm.
    """

    __slots__ = ()

    def _stats(self, values: list[float], j: int, lr: float | None) -> tuple:
        # Layer j's LAYER_STATS, as make_record gives them for this step.
        n, m = self.gradients, len(self.names)
        norm = values[1 + self.index[j]]
        at = 1 + n + 3 * j
        mean, std, abs_max = values[at], values[at + 1], values[at + 2]
        ratio = None if lr is None else safe_ratio(lr * norm, values[1 + n + 3 * m + j])
        # Nothing clips on this path: the raw gradient is the applied one. The
        # weights' moments and the activations come only with activation steps.
        grad = (mean, std, norm, abs_max)
        return (*grad, *grad, 0.0, None, None, None, None, None, ratio, None)

    def total_norm(self, values: list[float]) -> float:
        """The L2 norm of every gradient together (finite numbers: one C call)."""
        return math.hypot(*values[1 : 1 + self.gradients])


class GraphedStep:
    """What a graphed statistics step left for end_step: its device vector, unread."""

    __slots__ = ("vector", "with_loss", "grads", "layout")

    def __init__(
        self, vector: torch.Tensor, with_loss: bool, grads: list, layout: GraphedLayout
    ) -> None:
        self.vector = vector
        self.with_loss = with_loss  # the vector's first slot is the loss
        self.grads = grads  # every parameter's gradient: counted where one broke
        self.layout = layout  # where each layer's numbers lie in the vector

    def record(
        self, probe, loss: torch.Tensor, epoch: int, extra: torch.Tensor | None = None
    ) -> StepRecord:
        """`probe`'s record of this step, from one read of the vector (and loss, and extra)."""
        vector = self.vector  # the device vector, or a replay's HostCopy of it
        if self.with_loss and extra is None:
            values = vector.tolist()
        else:
            parts = [device_vector(vector)]
            if not self.with_loss:
                parts.append(loss.detach().reshape(1))
            if extra is not None:
                parts.append(extra.detach().reshape(-1))
            values = torch.cat(parts).tolist()
        n = vector.numel()
        v, tail = values[:n], values[n:]
        loss_value = v[0] if self.with_loss else tail.pop(0)
        timesteps = tuple(tail) if extra is not None else None
        layout = self.layout
        # One C-level sum: NaN or inf anywhere (or a sum that overflows) shows in it.
        if not math.isfinite(sum(v)):
            return make_record(probe, self._found(probe, v, loss_value, timesteps), epoch)
        total = layout.total_norm(v)
        return new_step_record(
            probe.step, epoch, loss_value, total, total, 0.0,
            CompactLayers(layout, v, probe.lr), None, timesteps, True, False,
        )  # fmt: skip

    def _found(self, probe, v: list[float], loss: float, timesteps) -> dict:
        # The long way, for a step that broke: rows with each layer's count of
        # NaN and inf elements (one more read), as the op-by-op path has them.
        n, m = self.layout.gradients, len(self.layout.names)
        norms = v[1 : 1 + n]
        layer_grads = [self.grads[i] for i in probe._layer_index]
        bad = counts_where_broken(layer_grads, [norms[i] for i in probe._layer_index])
        cells = [v[1 + n + 3 * j : 4 + n + 3 * j] for j in range(m)]
        found = {
            "present": probe._all_present,
            "loss": [loss],
            "raw_norms": norms,
            "raw": [(c[0], c[1], c[2], b, None, None) for c, b in zip(cells, bad, strict=True)],
            "weights": [(None, None, norm) for norm in v[1 + n + 3 * m :]],
        }
        if timesteps is not None:
            found["extra"] = [list(timesteps)]
        return found


def graphed_found(probe, loss: torch.Tensor) -> GraphedStep | None:
    """A statistics step straight to `probe`'s graphs, past the general path; or None.

    Taken right after backward, where each line of Python costs a host-bound
    step (~5 us a step of the general path's dispatch, emulated). None where
    a gradient is missing or the graphs no longer apply: the general path.
    """
    grads = every_grad(probe)  # the raw gradients: nothing clips here
    if grads is None:
        return None
    return graphed_step(probe, grads, probe._all_present, loss)


def graphed_step(probe, raw: list, present: tuple, loss=None) -> GraphedStep | None:
    """A statistics step through `probe`'s graphs, its vector unread; or None.

    None where they do not apply (a gradient missing) or no longer do (a
    weight was replaced: the probe goes op by op from then on).
    """
    graphed = probe._graphed
    if present is not probe._all_present:
        return None
    if not graphed.valid():
        probe._graphed = None
        graphed.close()
        return None
    with_loss = graphed.takes(loss)
    vector = graphed.measure(raw, loss if with_loss else None)
    return GraphedStep(vector, with_loss, raw, graphed.layout)


def _reductions(head: torch.Tensor, grads: list, layer_grads: list, weights: list) -> torch.Tensor:
    # The loss's slot, then the device path's reductions
    # (engine.stats.queue_device_moments), stacked.
    parts = [head.detach().reshape(())]
    parts += torch._foreach_norm(grads)
    absmax = torch._foreach_norm(layer_grads, math.inf)
    for j, g in enumerate(layer_grads):
        std, mean = torch.std_mean(g)
        parts += [mean, std, absmax[j]]
    parts += torch._foreach_norm(weights)
    return torch.stack(parts)

"""A GPU sentinel step's loss and total gradient norm, replayed as a CUDA graph.

Taken op by op, the sentinel is about eight torch calls (views of the loss,
the gradients flattened, the norm, its slot): ~10% of a host-bound GPU step
of the block model. Replayed (engine.placement_graphs) it is one call, on
every step whose gradients and loss lie where a graph reads them; any other
step goes op by op (engine.sentinels).
"""

from __future__ import annotations

import torch

from engine.placement_graphs import (
    GIVE_UP_AFTER,
    MAX_CAPTURES,
    MAX_GRAPHS,
    REPLAYS_PER_CAPTURE,
    SEEN,
    PlacementGraphs,
)

__all__ = [
    "GIVE_UP_AFTER",
    "MAX_CAPTURES",
    "MAX_GRAPHS",
    "REPLAYS_PER_CAPTURE",
    "SEEN",
    "GraphedSentinels",
]


class GraphedSentinels(PlacementGraphs):
    """[loss, total gradient norm] of a sentinel step, by graph replay where the tensors allow.

    `packed(grads, loss)` gives the replay's output that engine.sentinels.read_packed
    reads (a HostCopy of the vector, engine.host_copy, or the vector itself),
    or None where this step must go op by op. `capture` stands in
    for the CUDA capture in tests (see PlacementGraphs).
    """

    def __init__(self, capture=None) -> None:
        super().__init__(_loss_and_total, capture)

    def packed(self, grads: list[torch.Tensor], loss: torch.Tensor):
        """This step's [loss, norm] from a replay (a HostCopy or a vector), or None (op by op)."""
        return self.replayed(grads, loss)


def _loss_and_total(grads: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    # Inside a graph launches cost nothing on the host, so no flattened copy:
    # each gradient's norm, then theirs.
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.stack([loss.detach().reshape(()), total])

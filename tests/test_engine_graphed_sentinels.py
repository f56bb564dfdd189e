"""A GPU sentinel step replayed as a CUDA graph (engine.graphed_sentinels).

Off CUDA a stand-in for the capture replays `_loss_and_total` over the
tensors the probe hands over, so the placement rules and the probe's wiring
run on the CPU; the graph itself is checked where a GPU exists.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from probed_loop import probed_steps
from torch import nn

import engine.graphed_sentinels as graphed_module
import engine.probe as probe_module
from engine.graphed_sentinels import GraphedSentinels, _loss_and_total
from engine.probe import GradientProbe

NEVER = 1 << 62


class Placed:
    """A stand-in tensor: only where it lies."""

    def __init__(self, address: int) -> None:
        self.address = address

    def data_ptr(self) -> int:
        return self.address


class FakeGraph:
    """Counts replays; its output is a marker of which placement it was captured for."""

    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


def _fake_capture(captured: list):
    def capture(grads, loss):
        captured.append((loss.data_ptr(), *[g.data_ptr() for g in grads]))
        return FakeGraph(), f"out {len(captured)}"

    return capture


def test_a_placement_seen_twice_is_captured_then_replayed():
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    grads, loss = [Placed(10), Placed(20)], Placed(1)
    assert graphs.packed(grads, loss) is None  # first seen: op by op
    assert graphs.packed(grads, loss) == "out 1"  # seen again: captured and replayed
    assert graphs.packed(grads, loss) == "out 1"
    assert captured == [(1, 10, 20)] and graphs.replays == 2


def test_a_tensor_elsewhere_is_never_read_by_another_placement_s_graph():
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    here, there = [Placed(10), Placed(20)], [Placed(10), Placed(30)]
    for _ in range(2):
        graphs.packed(here, Placed(1))
    assert graphs.packed(there, Placed(1)) is None  # one gradient moved
    assert graphs.packed(here, Placed(2)) is None  # the loss moved
    assert graphs.packed(there, Placed(1)) == "out 2"  # its own graph, on its second sight
    assert graphs.packed(here, Placed(1)) == "out 1"


def test_at_most_max_graphs_are_kept_the_least_recently_replayed_making_room():
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    extra = 2
    for k in range(graphed_module.MAX_GRAPHS + extra):
        for _ in range(2):
            graphs.packed([Placed(100 + k)], Placed(1))
    assert len(captured) == graphed_module.MAX_GRAPHS + extra and graphs.active
    assert len(graphs._graphs) == graphed_module.MAX_GRAPHS
    newest = graphed_module.MAX_GRAPHS + extra - 1
    assert graphs.packed([Placed(100 + newest)], Placed(1)) is not None  # kept
    assert graphs.packed([Placed(100)], Placed(1)) is None  # the oldest made room


def test_a_placement_that_settles_after_a_drift_is_still_captured():
    # A fragmented allocator can move the tensors for more steps than the
    # first sightings remembered; the settled placement must still get a graph.
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    for k in range(3 * graphed_module.SEEN):
        assert graphs.packed([Placed(1000 + k)], Placed(1)) is None
    settled = [Placed(7)]
    assert graphs.packed(settled, Placed(1)) is None
    assert graphs.packed(settled, Placed(1)) is not None
    assert graphs.replays == 1 and captured == [(1, 7)]


def test_a_loop_cycling_through_more_placements_than_graphs_captures_no_faster_than_it_earns():
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    cycle = graphed_module.MAX_GRAPHS + 1  # one graph is evicted before it comes round again
    steps = 100 * graphed_module.MAX_CAPTURES
    for k in range(steps):
        graphs.packed([Placed(100 + k % cycle)], Placed(1))
    settled = graphs.replays - len(captured)  # replays of graphs captured on earlier steps
    earned = settled // graphed_module.REPLAYS_PER_CAPTURE
    assert len(captured) <= graphed_module.MAX_CAPTURES + earned
    # A capture costs a few steps: past the credit in hand, rare.
    assert len(captured) - graphed_module.MAX_CAPTURES <= steps // (
        graphed_module.REPLAYS_PER_CAPTURE + 1
    )


def test_a_loop_whose_tensors_never_settle_stops_looking():
    graphs = GraphedSentinels(_fake_capture([]))
    for k in range(graphed_module.GIVE_UP_AFTER + 1):
        assert graphs.packed([Placed(1000 + k)], Placed(1)) is None
    assert not graphs.active
    assert graphs.packed([Placed(5)], Placed(1)) is None


def test_a_capture_that_fails_leaves_the_step_op_by_op_for_good():
    def broken(grads, loss):
        raise RuntimeError("operation not permitted when stream is capturing")

    graphs = GraphedSentinels(broken)
    for _ in range(3):
        assert graphs.packed([Placed(10)], Placed(1)) is None
    assert not graphs.active


def test_the_graph_s_reductions_are_the_loss_then_the_total_norm():
    torch.manual_seed(0)
    grads = [torch.randn(30, 7), torch.randn(7), torch.randn(1, 30)]
    loss = torch.tensor(0.75, requires_grad=True) * 1.0
    ours = _loss_and_total(grads, loss).tolist()
    # Plain torch: the norm of every gradient's elements together.
    reference = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    assert ours[0] == pytest.approx(0.75)
    assert ours[1] == pytest.approx(float(reference), rel=1e-6)
    grads[1][3] = math.inf
    assert _loss_and_total(grads, loss).tolist()[1] == math.inf
    grads[0][0, 0] = math.nan
    assert math.isnan(_loss_and_total(grads, loss).tolist()[1])


def _model(device: str = "cpu") -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).to(device)


def _sentinel_run(model, device: str, graphs=None, steps: int = 12, poison: int | None = None):
    from probed_loop import random_batches

    params = list(model.parameters())

    def poisoned(step: int) -> None:
        if step == poison:
            params[0].grad[0, 0] = math.nan

    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER, lr=0.05) as probe:
        if graphs is not None:
            probe.sentinel_graphs = graphs
        records = probed_steps(
            probe, model, random_batches(steps, 5, 32, device), after_backward=poisoned
        )
        return records, probe.sentinel_graphs


def test_the_probe_s_replayed_sentinels_are_its_op_by_op_ones(monkeypatch):
    # The device path on the CPU, with a stand-in graph that computes at replay
    # what the graph computes over the step's tensors. The CPU's allocator
    # seldom puts a tensor back where it was: here every step's tensors are
    # said to be where the last step's were, so every step from the second replays.
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    step_tensors = {}

    class Remembering(GraphedSentinels):
        def packed(self, grads, loss):
            step_tensors["now"] = (grads, loss)
            return super().packed([Placed(k) for k in range(len(grads))], Placed(-1))

    graphs = Remembering(lambda grads, loss: _replayed(step_tensors))
    twin = copy.deepcopy(_model())
    plain, _ = _sentinel_run(_model(), "cpu", poison=7)
    replayed, kept = _sentinel_run(twin, "cpu", graphs, poison=7)
    assert kept.replays == len(replayed) - 2  # all but step 0 (the probe's) and the first sight
    assert math.isnan(replayed[7].grad_norm)
    for a, b in zip(plain, replayed, strict=True):
        _assert_same(a, b)


def _assert_same(a, b) -> None:
    # NaN is data: the poisoned step's norm, and every loss after it.
    for x, y, rel in ((a.loss, b.loss, 1e-6), (a.grad_norm, b.grad_norm, 1e-5)):
        assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, rel=rel)


class _Output:
    """A replay's output vector, filled when the stand-in graph replays."""

    is_cuda = False  # read by `.tolist()`, as a CPU tensor is

    def __init__(self) -> None:
        self.values = None

    def tolist(self) -> list:
        return self.values.tolist()

    def numel(self) -> int:
        return 2


def _replayed(step_tensors):
    out = _Output()

    class Graph:
        def replay(self) -> None:
            out.values = _loss_and_total(*step_tensors["now"])

    return Graph(), out


def test_closing_the_probe_drops_its_sentinel_graphs(monkeypatch):
    monkeypatch.setattr(probe_module, "graphable", lambda params: True)
    monkeypatch.setattr(probe_module, "GraphedStatistics", lambda *a: None)
    probe = GradientProbe(_model()).__enter__()
    graphs = probe.sentinel_graphs
    assert graphs is not None and graphs.active
    probe.close()
    assert not graphs.active


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_replayed_sentinels_match_op_by_op():
    model = _model("cuda")
    twin = copy.deepcopy(model)
    disabled = GraphedSentinels()
    disabled.close()
    op_by_op, _ = _sentinel_run(model, "cuda", graphs=disabled, steps=40, poison=30)
    replayed, kept = _sentinel_run(twin, "cuda", steps=40, poison=30)  # the probe's own
    assert kept is not None and kept.replays > 0
    assert math.isnan(replayed[30].grad_norm)
    for a, b in zip(op_by_op, replayed, strict=True):
        _assert_same(a, b)


def test_a_loop_whose_tensors_move_now_and_then_keeps_replaying_all_run():
    # Another run in the process moves this one's tensors every hundred steps.
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    moves, stretch = 3 * graphed_module.MAX_CAPTURES, 100
    for k in range(moves * stretch):
        graphs.packed([Placed(1000 + k // stretch)], Placed(1))
    assert graphs.active and len(captured) == moves
    assert graphs.replays == moves * (stretch - 1)  # every step but a placement's first


def test_captures_are_earned_back_by_replays_of_graphs_captured_earlier():
    captured = []
    graphs = GraphedSentinels(_fake_capture(captured))
    for k in range(graphed_module.MAX_CAPTURES):  # each placement seen twice: every capture spent
        for _ in range(2):
            assert graphs.packed([Placed(100 + k)], Placed(1)) is not None or _ == 0
    settled, newcomer = [Placed(100 + graphed_module.MAX_CAPTURES - 1)], [Placed(7)]
    for _ in range(2):
        assert graphs.packed(newcomer, Placed(1)) is None  # no capture left for it
    for _ in range(graphed_module.REPLAYS_PER_CAPTURE):  # replays of a graph captured earlier
        assert graphs.packed(settled, Placed(1)) is not None
    graphs.packed(newcomer, Placed(1))
    assert graphs.packed(newcomer, Placed(1)) is not None  # a capture earned back
    assert len(captured) == graphed_module.MAX_CAPTURES + 1

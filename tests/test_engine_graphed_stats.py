"""A GPU's statistics step as one CUDA graph (engine.graphed_stats) against the op-by-op device path.

On the CPU the graph's vector is computed op by op, or "replayed" by a stand-in
that computes it over the step's tensors, so everything but the capture is
checked here; the capture itself where CUDA exists.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.probe as probe_module
from engine.compact_stats import CompactLayers
from engine.graphed_stats import GraphedStatistics, GraphedStep, graphable
from engine.history import History
from engine.placement_graphs import PlacementGraphs
from engine.probe import GradientProbe
from engine.recording import make_record
from engine.records import LAYER_STATS

NEVER = 1 << 62
FIELDS = ("raw_grad_norm", "grad_norm", "raw_grad_mean", "raw_grad_std", "raw_grad_abs_max")


def _model(device: str = "cpu") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    ).to(device)


def _graphed(probe) -> GraphedStatistics:
    return GraphedStatistics(
        probe.params, probe._layer_index, list(probe.layer_params), probe.layer_names
    )


def _records(model, graphed: bool, steps: int = 4, device: str = "cpu", poison: int = -1):
    def poisoned(step: int) -> None:
        if step == poison:
            model[2].weight.grad[0, 0] = float("nan")

    with GradientProbe(model, capture_every=1, activation_every=NEVER, lr=0.05) as probe:
        if graphed and probe._graphed is None:  # the CPU: the graph's reductions, uncaptured
            probe._graphed = _graphed(probe)
        elif not graphed:
            probe._graphed = None
        batches = random_batches(steps, 5, 64, device)
        return probed_steps(probe, model, batches, after_backward=poisoned), probe._graphed


def _assert_same(a_records, b_records) -> None:
    for a, b in zip(a_records, b_records, strict=True):
        assert a.captured and b.captured
        assert a.loss == pytest.approx(b.loss, rel=1e-6, nan_ok=True)
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-5, nan_ok=True)
        for name in b.layers:
            la, lb = a.layers[name], b.layers[name]
            for field in FIELDS:
                assert getattr(la, field) == pytest.approx(
                    getattr(lb, field), rel=1e-5, nan_ok=True
                ), (name, field)
            assert la.grad_nonfinite == lb.grad_nonfinite
            assert la.update_ratio == pytest.approx(lb.update_ratio, rel=1e-5, nan_ok=True)


def test_the_graph_s_values_are_the_device_path_s(monkeypatch):
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    model = _model()
    twin = copy.deepcopy(model)
    used, measure = [], GraphedStatistics.measure
    monkeypatch.setattr(GraphedStatistics, "measure", lambda *a: used.append(a[2]) or measure(*a))
    graphed, kept = _records(model, graphed=True, poison=2)
    plain, _ = _records(twin, graphed=False, poison=2)
    assert kept is not None and len(used) == 3  # every step after step 0's, NaN included
    assert all(loss is not None for loss in used)  # the loss read in the graph's vector
    _assert_same(graphed, plain)
    assert graphed[2].layers["2"].grad_nonfinite == 1.0  # counted after the read, as op by op


def test_a_replaced_weight_drops_the_graph(monkeypatch):
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    model = _model()
    probe = GradientProbe(model, capture_every=1, activation_every=NEVER).__enter__()
    try:
        probe._graphed = _graphed(probe)
        assert probe._graphed.valid()
        model[0].weight.data = model[0].weight.data.clone()  # what a graph would read stale
        assert not probe._graphed.valid()
        probe.begin_step(1)  # (step 0 takes the activations too: not a graph's step)
        loss = model(torch.randn(8, 5)).pow(2).mean()
        loss.backward()
        probe.after_backward(loss)
        record = probe.end_step(loss, 0)
        assert probe._graphed is None and record.captured
    finally:
        probe.close()


def test_only_cuda_float_parameters_are_graphed():
    assert not graphable([])
    assert not graphable(list(_model().parameters()))  # the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_replayed_graphs_give_the_op_by_op_values():
    model = _model("cuda")
    twin = copy.deepcopy(model)
    graphed, kept = _records(model, graphed=True, steps=40, device="cuda", poison=30)
    plain, _ = _records(twin, graphed=False, steps=40, device="cuda", poison=30)
    graphs = kept.graphs
    assert graphs.replays > 0, (graphs.captures, graphs.active)
    assert sum(type(r.layers) is CompactLayers for r in graphed) > 20
    _assert_same(graphed, plain)
    assert graphed[30].layers["2"].grad_nonfinite == 1.0


def test_the_reductions_make_no_autograd_nodes_for_the_weights():
    # Else the capture's side stream would own the weights' gradient
    # accumulators, and every backward after would warn of a stream mismatch.
    model = _model()
    probe = GradientProbe(model)
    graphed = _graphed(probe)
    grads = [torch.randn_like(p) for p in probe.params]
    with torch.enable_grad():
        assert not graphed.compute(grads, torch.tensor(1.0)).requires_grad
        assert not graphed.measure(grads).requires_grad


def _backward(model, probe):
    loss = model(torch.randn(8, 5)).pow(2).mean()
    loss.backward()
    return loss, [p.grad for p in probe.params]


def test_the_loss_comes_first_in_the_graph_s_vector():
    model = _model()
    probe = GradientProbe(model)
    graphed = _graphed(probe)
    loss, grads = _backward(model, probe)
    assert graphed.takes(loss)
    assert not graphed.takes(loss.double()) and not graphed.takes(None)
    assert not graphed.takes(torch.ones(2))
    vector = graphed.measure(grads, loss)
    assert vector[0].item() == loss.item()
    norms = vector[1 : 1 + len(grads)]
    assert torch.allclose(norms, torch.stack([g.norm() for g in grads]))
    assert graphed.measure(grads)[0].item() == 0.0  # no loss: a zero holds its slot


def test_a_finite_step_s_compact_record_is_the_long_way_s():
    # GraphedStep keeps the vector as read (CompactLayers); a step that broke
    # is built the long way (make_record). Both from one vector, field by field.
    model = _model()
    with GradientProbe(model, capture_every=1, activation_every=NEVER, lr=0.05) as probe:
        probe.begin_step(1)
        graphed = _graphed(probe)
        loss, grads = _backward(model, probe)
        step = GraphedStep(graphed.measure(grads, loss), True, grads, graphed.layout)
        compact = step.record(probe, loss, 3)
        values = step.vector.tolist()
        long_way = make_record(probe, step._found(probe, values, values[0], None), 3)
    assert type(compact.layers) is CompactLayers and type(long_way.layers) is dict
    assert compact.captured and not compact.activations_captured and compact.epoch == 3
    for field in ("step", "loss", "grad_norm", "grad_norm_clipped", "clipped_frac"):
        assert getattr(compact, field) == pytest.approx(getattr(long_way, field), rel=1e-12)
    for name in probe.layer_names:
        assert compact.layers[name] == long_way.layers[name]
    # and the History row built from the compact layers, without their objects
    assert compact.layers.columns() == [
        getattr(long_way.layers[n], f) for n in probe.layer_names for f in LAYER_STATS
    ]


class Placed:
    """A stand-in tensor: only where it lies."""

    def __init__(self, address: int) -> None:
        self.address = address

    def data_ptr(self) -> int:
        return self.address


def _replaying(graphed: GraphedStatistics) -> list:
    # The CPU's allocator seldom puts a tensor back where it was: here every
    # step's tensors are said to lie where the last step's did, and a
    # stand-in graph computes at replay what the graph would over them.
    now, captures = {}, []
    graphs = graphed.graphs = PlacementGraphs(graphed.compute, None)
    replayed = graphs.replayed

    def capture(grads, loss):
        out = graphed.compute(*now["tensors"]).clone()

        class Graph:
            def replay(self) -> None:
                out.copy_(graphed.compute(*now["tensors"]))

        captures.append(out)
        return Graph(), out

    def placed(grads, loss):
        now["tensors"] = (grads, loss)
        return replayed([Placed(k) for k in range(len(grads))], Placed(-1))

    graphs._capture, graphs.replayed = capture, placed
    return captures


def test_replayed_steps_give_the_op_by_op_records_nan_included(monkeypatch):
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    model = _model()
    twin = copy.deepcopy(model)
    kept = {}
    original = GraphedStatistics.__init__

    def with_stand_in(self, *args) -> None:
        original(self, *args)
        kept["captures"] = _replaying(self)
        kept["graphed"] = self

    monkeypatch.setattr(GraphedStatistics, "__init__", with_stand_in)
    graphed, _ = _records(model, graphed=True, steps=6, poison=4)
    plain, _ = _records(twin, graphed=False, steps=6, poison=4)
    # step 1 first seen, step 2 captured and replayed, steps 3 to 5 replayed
    assert len(kept["captures"]) == 1 and kept["graphed"].graphs.replays == 4
    _assert_same(graphed, plain)
    kinds = [type(r.layers) is CompactLayers for r in graphed]
    # step 0 takes the activations; 4 broke, and its NaN went into the weights
    assert kinds == [False, True, True, True, False, False]
    assert graphed[4].layers["2"].grad_nonfinite == 1.0
    assert math.isnan(graphed[4].grad_norm) and math.isnan(graphed[4].layers["2"].grad_mean)
    # History takes the compact rows as it takes the others
    rows, reference = History(), History()
    for a, b in zip(graphed, plain, strict=True):
        rows.append(a)
        reference.append(b)
    for column in ("0.grad_norm", "2.grad_std", "4.update_ratio", "2.grad_nonfinite", "loss"):
        ours, theirs = rows.series(column), reference.series(column)
        assert ours.steps.tolist() == theirs.steps.tolist()
        assert ours.nonfinite.tolist() == theirs.nonfinite.tolist()
        np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-5)


def test_the_rnn_s_time_step_norms_and_a_loss_beside_the_vector_come_in_one_read():
    model = _model()
    with GradientProbe(model, capture_every=1, activation_every=NEVER) as probe:
        probe.begin_step(1)
        graphed = _graphed(probe)
        loss, grads = _backward(model, probe)
        loss = loss.double()  # does not fit the vector: read beside it
        extra = torch.tensor([0.5, 2.0, 4.0])
        step = GraphedStep(graphed.measure(grads), False, grads, graphed.layout)
        record = step.record(probe, loss, 0, extra)
    assert record.loss == loss.item()
    assert record.timestep_grad_norms == (0.5, 2.0, 4.0)
    assert type(record.layers) is CompactLayers


def test_a_dropped_graph_is_freed_at_once_not_by_the_cyclic_collector():
    # A graph left to the collector may be freed while another is being
    # captured, which CUDA refuses (a warning on stderr, over the dashboard).
    import gc
    import weakref

    model = _model()
    probe = GradientProbe(model)
    graphed = _graphed(probe)
    gone = weakref.ref(graphed)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del graphed
        assert gone() is None
    finally:
        if collecting:
            gc.enable()


def test_closing_the_probe_drops_its_graphs():
    model = _model()
    probe = GradientProbe(model).__enter__()
    graphed = _graphed(probe)
    _replaying(graphed)
    probe._graphed = graphed
    probe.close()
    assert probe._graphed is None and not graphed.graphs.active

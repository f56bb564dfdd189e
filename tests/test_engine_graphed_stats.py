"""A GPU's statistics step as one CUDA graph (engine.graphed_stats) against the op-by-op device path.

On the CPU the graph's reductions run directly on its buffer, so everything
but the capture is checked here; the capture itself where CUDA exists.
"""

from __future__ import annotations

import copy

import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.probe as probe_module
from engine.graphed_stats import GraphedStatistics, graphable
from engine.probe import GradientProbe

NEVER = 1 << 62
FIELDS = ("raw_grad_norm", "grad_norm", "raw_grad_mean", "raw_grad_std", "raw_grad_abs_max")


def _model(device: str = "cpu") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    ).to(device)


def _records(model, graphed: bool, steps: int = 4, device: str = "cpu", poison: int = -1):
    def poisoned(step: int) -> None:
        if step == poison:
            model[2].weight.grad[0, 0] = float("nan")

    with GradientProbe(model, capture_every=1, activation_every=NEVER, lr=0.05) as probe:
        if graphed and probe._graphed is None:  # the CPU: the graph's reductions, uncaptured
            probe._graphed = GraphedStatistics(
                probe.params, probe._layer_index, list(probe.layer_params)
            )
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
        probe._graphed = GraphedStatistics(
            probe.params, probe._layer_index, list(probe.layer_params)
        )
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
def test_on_cuda_the_captured_graph_gives_the_op_by_op_values():
    model = _model("cuda")
    twin = copy.deepcopy(model)
    graphed, kept = _records(model, graphed=True, device="cuda", poison=2)
    plain, _ = _records(twin, graphed=False, device="cuda", poison=2)
    assert kept is not None and kept.graph is not None
    _assert_same(graphed, plain)


def test_the_reductions_make_no_autograd_nodes_for_the_weights():
    # Else the capture's side stream would own the weights' gradient
    # accumulators, and every backward after would warn of a stream mismatch.
    model = _model()
    probe = GradientProbe(model)
    graphed = GraphedStatistics(probe.params, probe._layer_index, list(probe.layer_params))
    with torch.enable_grad():
        assert not graphed._reductions().requires_grad


def test_the_loss_comes_first_in_the_graph_s_vector():
    model = _model()
    probe = GradientProbe(model)
    graphed = GraphedStatistics(probe.params, probe._layer_index, list(probe.layer_params))
    loss = model(torch.randn(8, 5)).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in probe.params]
    assert graphed.takes(loss)
    assert not graphed.takes(loss.double()) and not graphed.takes(None)
    assert not graphed.takes(torch.ones(2))
    vector = graphed.measure(grads, loss)
    assert vector[0].item() == loss.item()
    norms = vector[1 : 1 + len(grads)]
    assert torch.allclose(norms, torch.stack([g.norm() for g in grads]))
    found = {"present": probe._all_present}
    finish = graphed.consumer(found, [grads[i] for i in probe._layer_index], with_loss=True)
    assert found["loss"] == []  # marked before the read: end_step queues no loss of its own
    finish([vector.tolist()])
    assert found["loss"] == [loss.item()]
    assert found["raw_norms"] == pytest.approx(norms.tolist())


def test_a_loss_that_does_not_fit_the_slot_is_read_as_before(monkeypatch):
    # A float64 loss over float32 weights: end_step reads it on its own.
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    model = _model()
    with GradientProbe(model, capture_every=1, activation_every=NEVER) as probe:
        probe._graphed = GraphedStatistics(
            probe.params, probe._layer_index, list(probe.layer_params)
        )
        records = []
        for step in range(3):
            probe.begin_step(step)
            loss = model(torch.randn(8, 5)).pow(2).mean().double()
            loss.backward()
            probe.after_backward(loss)
            records.append((probe.end_step(loss, 0), loss.item()))
    for record, expected in records:
        assert record.captured and record.loss == expected


def test_a_dropped_graph_is_freed_at_once_not_by_the_cyclic_collector():
    # A graph left to the collector may be freed while another is being
    # captured, which CUDA refuses (a warning on stderr, over the dashboard).
    import gc
    import weakref

    model = _model()
    probe = GradientProbe(model)
    graphed = GraphedStatistics(probe.params, probe._layer_index, list(probe.layer_params))
    gone = weakref.ref(graphed)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del graphed
        assert gone() is None
    finally:
        if collecting:
            gc.enable()


def test_closing_the_probe_drops_its_graph():
    model = _model()
    probe = GradientProbe(model).__enter__()
    probe._graphed = GraphedStatistics(probe.params, probe._layer_index, list(probe.layer_params))
    probe.close()
    assert probe._graphed is None

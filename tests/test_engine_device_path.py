"""The probe's device path (what a GPU runs), exercised on the CPU.

On a GPU every host read is a synchronization, so the probe takes other
paths there: sentinel steps are packed into one tensor and read once
(engine.sentinels.packed_sentinels). Emptying `EAGER_DEVICES` sends a CPU
run down those paths; its records must match the CPU path's, step by step.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from probed_loop import probed_steps
from torch import nn

import engine.probe as probe_module
import engine.sentinels as sentinels_module
from engine.config import RunConfig
from engine.flat_grads import FlatGradients
from engine.presets import PRESETS
from engine.probe import GradientProbe
from engine.trainer import Trainer

NEVER = 1 << 62


def _probed_run(model, x, y, steps: int, flat: bool, concatenate: bool = True) -> list:
    params = [p for p in model.parameters() if p.requires_grad]
    buffer = FlatGradients(params) if flat else None
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER, lr=0.05) as probe:
        probe.flat = buffer
        probe.concatenable = concatenate
        return probed_steps(probe, model, [(x, y)] * steps, flat=buffer)


WAYS = {"flat buffer": (True, True), "concatenation": (False, True), "foreach": (False, False)}


@pytest.mark.parametrize("way", list(WAYS))
def test_packed_sentinels_match_the_cpu_path(monkeypatch, way):
    flat, concatenate = WAYS[way]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    )
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    twin = copy.deepcopy(model)
    cpu = _probed_run(model, x, y, 8, flat)
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    packed, original = [], sentinels_module.packed_sentinels

    def counted(probe, loss):
        packed.append(original(probe, loss))
        return packed[-1]

    monkeypatch.setattr(sentinels_module, "packed_sentinels", counted)
    device = _probed_run(twin, x, y, 8, flat, concatenate)
    assert len(packed) == 7 and all(t is not None for t in packed)  # every step but step 0
    # the loss and one total norm, or the loss and each parameter's norm
    assert {t.numel() for t in packed} == {2 if flat or concatenate else 7}
    for a, b in zip(cpu, device, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-6)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)
        assert b.grad_norm_clipped == b.grad_norm
        assert b.captured == a.captured
    assert not device[1].captured and device[1].layers["0"].grad_mean is None
    # and against plain torch: the total norm of the last step's gradients
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in twin.parameters()]))
    assert device[-1].grad_norm == pytest.approx(float(expected), rel=1e-5)


def _trainer_records(config: RunConfig, steps: int) -> tuple[list, Trainer]:
    trainer = Trainer(config)
    try:
        return [trainer.step() for _ in range(steps)], trainer
    finally:
        trainer.close()


def test_the_rnn_per_time_step_norms_travel_in_the_same_read(monkeypatch):
    config = PRESETS["rnn-exploding"].config.replace(
        device="cpu", sampling="exact", capture_every=NEVER, activation_every=NEVER
    )
    cpu, _ = _trainer_records(config, 4)
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    device, _ = _trainer_records(config, 4)
    for a, b in zip(cpu[1:], device[1:], strict=True):
        assert not b.captured
        assert b.timestep_grad_norms == pytest.approx(a.timestep_grad_norms, rel=1e-5)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)


def test_a_run_that_breaks_is_caught_on_the_same_step(monkeypatch):
    config = PRESETS["exploding"].config.replace(device="cpu", sampling="exact")
    cpu, cpu_trainer = _trainer_records(config, 13)
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    device, device_trainer = _trainer_records(config, 13)
    assert cpu_trainer.first_nonfinite is not None
    assert device_trainer.first_nonfinite == cpu_trainer.first_nonfinite
    broken = device[cpu_trainer.first_nonfinite.step]
    assert not math.isfinite(broken.loss) or not math.isfinite(broken.grad_norm)


@pytest.mark.parametrize("clip", ["none", "value", "norm", "hook"])
def test_nonfinite_counts_match_the_cpu_path(monkeypatch, clip):
    # Counted after the read where a layer's norm is not finite; before the
    # clip where value or norm clipping rewrites the raw gradients in place.
    from engine.clipping import make_clip

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    x[3, 1] = math.inf  # the first layer's gradient goes non-finite

    def captured(net):
        with GradientProbe(net, clip=make_clip(clip, 1.0, 1.0, "2"), lr=0.1) as probe:
            probe.begin_step(0)
            loss = nn.functional.mse_loss(net(x), y)
            loss.backward()
            direct = {n: float((~torch.isfinite(p.grad)).sum()) for n, p in net.named_parameters()}
            probe.after_backward(loss)
            return probe.end_step(loss, 0), direct

    twin = copy.deepcopy(model)
    cpu, direct = captured(model)
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    device, _ = captured(twin)
    for name in ("0", "2"):
        assert device.layers[name].grad_nonfinite == cpu.layers[name].grad_nonfinite
    if clip != "hook":  # the hook clamps during backward: .grad is already clipped
        assert cpu.layers["0"].grad_nonfinite == direct["0.weight"] > 0
    assert device.layers["2"].grad_mean == pytest.approx(cpu.layers["2"].grad_mean, nan_ok=True)


def _mixed_tensors() -> list:
    torch.manual_seed(2)
    broken = torch.randn(40)
    broken[[3, 7]] = math.nan
    broken[11] = math.inf
    broken[12] = -math.inf
    return [
        torch.randn(100, 30),
        None,
        broken,
        torch.full((5,), math.inf),  # nothing finite: lo inf, hi -inf, no counts
        torch.full((9,), 0.25),  # one value: zero width
        torch.empty(0),
        torch.randn(7, dtype=torch.float64) * 1e3,
        torch.randn(64, dtype=torch.float16),
        torch.randn(3000).exp(),
        torch.tensor(2.0),
    ]


@pytest.mark.parametrize("batch", [1 << 24, 300, 50], ids=["one batch", "split", "alone"])
def test_batched_histograms_are_histogram_row_bit_for_bit(monkeypatch, batch):
    from engine import exact_histograms as exact
    from engine.histograms import HIST_BINS

    monkeypatch.setattr(exact, "BATCH_ELEMENTS", batch)
    tensors = _mixed_tensors()
    rows = exact.histogram_rows(tensors, HIST_BINS, torch.device("cpu"))
    one_by_one = [exact.histogram_row(t, HIST_BINS, torch.device("cpu")) for t in tensors]
    assert rows.shape == (len(tensors), HIST_BINS + 3)
    torch.testing.assert_close(rows, torch.stack(one_by_one), rtol=0, atol=0, equal_nan=True)
    assert rows[2, 2] == 4 and rows[3, 2] == 5  # the non-finite counts


def test_loss_and_norm_is_the_loss_then_torch_s_total_norm():
    torch.manual_seed(1)
    grads = [torch.randn(7, 3), torch.randn(3), torch.randn(2, 2, 2)]
    loss = torch.tensor(0.75)
    numel = sum(g.numel() for g in grads)
    packed = sentinels_module.loss_and_norm(grads, loss, numel)
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    assert packed.shape == (2,)
    assert packed[0].item() == 0.75
    assert packed[1].item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_and_norm_carries_nan_and_inf():
    grads = [torch.ones(4), torch.tensor([1.0, float("inf")])]
    packed = sentinels_module.loss_and_norm(grads, torch.tensor(float("nan")), 6).tolist()
    assert math.isnan(packed[0]) and packed[1] == math.inf
    grads[0][1] = float("nan")
    assert math.isnan(sentinels_module.loss_and_norm(grads, torch.tensor(1.0), 6)[1].item())


def test_a_read_queue_reads_scalars_and_vectors_in_order():
    from engine.readout import ReadQueue, store

    found: dict = {}
    q = ReadQueue()
    q.add([torch.tensor(1.0), torch.tensor(2.0)], store(found, "a"))
    q.add_vectors([torch.tensor([3.0, 4.0]), torch.tensor([5.0])], store(found, "b"))
    q.flush()
    assert found == {"a": [1.0, 2.0], "b": [[3.0, 4.0], [5.0]]}
    q.add_vectors([torch.tensor([6.0, float("nan")])], store(found, "c"))  # one vector alone
    q.flush()
    assert found["c"][0][0] == 6.0 and math.isnan(found["c"][0][1])
    q.add([torch.tensor(7.0)], store(found, "d"))  # one scalar alone
    q.flush()
    assert found["d"] == [7.0] and not q.consumers

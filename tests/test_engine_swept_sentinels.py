"""A large CPU model's sentinel step, every gradient's norm in one C sweep (engine.sentinels).

The reference is plain PyTorch: the loss as `.item()` reads it and the L2
norm of every gradient together.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import engine.sentinels as sentinels
from engine.clipping import make_clip
from engine.probe import GradientProbe

NEVER = 1 << 62


def _model() -> nn.Module:
    torch.manual_seed(3)
    # 300 x 300 = 90,000 weights: a layer large enough for the large-model path.
    return nn.Sequential(nn.Linear(20, 300), nn.Tanh(), nn.Linear(300, 300), nn.Tanh(),
                         nn.Linear(300, 1))  # fmt: skip


def _sentinel_step(model, probe, x, y, step=1):
    probe.begin_step(step)
    loss = nn.functional.mse_loss(model(x), y)
    model.zero_grad()
    loss.backward()
    probe.after_backward(loss)
    reference = (
        loss.item(),
        # In float64: torch's own float32 norm is ~6e-7 off it here, the sweep ~1e-12.
        float(
            torch.linalg.vector_norm(
                torch.cat([p.grad.double().reshape(-1) for p in model.parameters()])
            )
        ),
    )
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    return probe.end_step(loss, 0), reference


@pytest.fixture
def swept(monkeypatch):
    """The calls swept_sentinels answered with a sentinel's values, in order."""
    answered = []
    real = sentinels.swept_sentinels

    def spy(*args):
        found = real(*args)
        answered.append(found is not None)
        return found

    monkeypatch.setattr(sentinels, "swept_sentinels", spy)
    return answered


def test_a_sentinel_step_reads_the_loss_and_the_total_norm_as_torch_gives_them(swept, stats_kernel):
    model = _model()
    x, y = torch.randn(64, 20), torch.randn(64, 1)
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as probe:
        assert probe.large_layers
        for step in range(1, 4):
            record, (loss, norm) = _sentinel_step(model, probe, x, y, step)
            assert not record.captured and record.loss == loss
            assert record.grad_norm == pytest.approx(norm, rel=5e-6)
            assert record.grad_norm_clipped == record.grad_norm
    # The sweep answered where the C kernel is built; numpy's way leaves it to torch.
    assert swept == [stats_kernel != "numpy"] * 3


def test_a_non_finite_gradient_sends_the_step_to_be_captured_in_full(swept, stats_kernel):
    model = _model()
    x, y = torch.randn(64, 20), torch.randn(64, 1)
    bad = model[2].weight.register_hook(lambda g: g.index_fill(0, torch.tensor([5]), math.inf))
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as probe:
        record, (loss, _) = _sentinel_step(model, probe, x, y)
    bad.remove()
    assert math.isfinite(loss) and record.loss == loss
    assert record.captured and record.grad_norm == math.inf
    assert record.layers["2"].grad_nonfinite > 0
    assert True not in swept  # the sweep found the inf and answered None


def test_clipping_and_missing_gradients_go_the_general_way(swept):
    model = _model()
    x, y = torch.randn(64, 20), torch.randn(64, 1)
    with GradientProbe(model, clip=make_clip("norm", max_norm=1e-3), capture_every=NEVER,
                       activation_every=NEVER) as probe:  # fmt: skip
        record, (_, clipped) = _sentinel_step(model, probe, x, y)  # read after the clip
    assert record.grad_norm_clipped == pytest.approx(clipped, rel=5e-6)
    assert clipped == pytest.approx(1e-3, rel=1e-4) and record.grad_norm > 1e-2
    frozen = _model()  # its first layer's bias takes no part in this forward: no gradient
    frozen[0].weight.requires_grad_(False)
    with GradientProbe(frozen, capture_every=NEVER, activation_every=NEVER) as probe:
        probe.begin_step(1)
        loss = nn.functional.mse_loss(frozen[2:](torch.randn(8, 300)), torch.randn(8, 1))
        loss.backward()
        probe.after_backward(loss)
        record = probe.end_step(loss, 0)
    assert math.isfinite(record.grad_norm)
    assert swept == [False, False]

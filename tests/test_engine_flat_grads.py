"""The flat gradient buffer (engine.flat_grads) against autograd's own gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.flat_grads import FLAT_BELOW, FlatGradients
from engine.sentinels import CAT_UP_TO, concatenable


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 15), nn.ReLU(), nn.Linear(15, 1))


def _train(flat: bool, steps: int = 5) -> tuple[list[torch.Tensor], list[float]]:
    model = _model()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    buffer = FlatGradients(params) if flat else None
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 10, generator=generator)
        y = torch.randn(32, 1, generator=generator)
        loss = nn.functional.mse_loss(model(x), y)
        if buffer is not None:
            buffer.zero()
        else:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return [p.detach().clone() for p in params], losses


def test_training_through_the_buffer_is_bit_identical():
    weights, losses = _train(flat=True)
    reference_weights, reference_losses = _train(flat=False)
    assert losses == reference_losses
    for w, ref in zip(weights, reference_weights, strict=True):
        assert torch.equal(w, ref)


def test_gradients_are_views_of_the_buffer_and_its_norm_is_the_total():
    model = _model()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model(torch.randn(8, 10)).sum().backward()
    assert flat.intact()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert torch.allclose(flat.norm(), expected)
    assert all(p.grad.data_ptr() == v.data_ptr() for p, v in zip(params, flat.views, strict=True))


def test_zero_reattaches_a_gradient_someone_set_to_none():
    model = _model()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model.zero_grad(set_to_none=True)
    assert not flat.intact()
    flat.zero()
    assert flat.intact() and float(flat.norm()) == 0.0


def test_only_small_uniform_models_get_a_buffer():
    assert FlatGradients.suits(list(_model().parameters()))
    assert not FlatGradients.suits([])
    big = nn.Linear(1024, FLAT_BELOW // 1024 + 1, bias=False)
    assert not FlatGradients.suits(list(big.parameters()))
    mixed = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    assert not FlatGradients.suits(mixed)
    # off the CPU autograd's own gradients are cheaper (one launch fewer per parameter)
    assert not FlatGradients.suits(list(nn.Linear(3, 3, device="meta").parameters()))


def test_a_gpu_sentinel_concatenates_only_alike_gradients_of_bounded_size():
    assert concatenable(list(_model().parameters()))
    assert not concatenable([])
    mixed = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    assert not concatenable(mixed)
    huge = nn.Linear(1024, CAT_UP_TO // 1024 + 1, bias=False, device="meta")
    assert not concatenable(list(huge.parameters()))


@pytest.mark.parametrize("width", [8, 60, 200, 400])  # 2-layer models: 144 to 321k values
def test_zero_and_host_norm_at_every_size(width):
    # Below and above the dot-product limit and the piecewise-zeroing limit.
    torch.manual_seed(width)
    model = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
    params = list(model.parameters())
    flat = FlatGradients(params)
    for _ in range(2):
        flat.zero()
        assert float(flat.buffer.abs().max()) == 0.0
        model(torch.randn(16, width)).square().mean().backward()
        want = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in params]).double())
        assert flat.host_norm() == pytest.approx(float(want), rel=1e-5)
        assert flat.host_norm() == pytest.approx(float(flat.norm()), rel=1e-5)


def test_host_norm_carries_nan_and_inf():
    model = nn.Linear(4, 4)
    flat = FlatGradients(list(model.parameters()))
    flat.zero()
    flat.buffer[3] = math.inf
    assert flat.host_norm() == math.inf
    flat.buffer[5] = math.nan
    assert math.isnan(flat.host_norm())

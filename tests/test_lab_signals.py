"""Update-to-weight ratio and activation saturation, checked against plain PyTorch."""

import math

import pytest
import torch
from torch import nn

from engine.clipping import make_clip
from engine.model import block_model
from engine.presets import get_preset
from engine.probe import GradientProbe
from engine.trainer import Trainer

LR = 0.1


def _model(activation: str) -> nn.Sequential:
    torch.manual_seed(3)
    model = block_model(6, 3, 16, activation, batch_norm=False)
    with torch.no_grad():  # large weights, so some units saturate
        for module in model:
            if isinstance(module, nn.Linear):
                module.weight.normal_(0, 1.5)
    return model


def _reference(model, x, y, clip_value=None):
    """lr * |grad| / |w| before the update, and each activation's saturated fraction."""
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, out, n=name: outputs.__setitem__(n, out.detach()))
        for name, m in model.named_children()
        if not list(m.parameters())
    ]
    loss = nn.functional.mse_loss(model(x), y)
    grads = torch.autograd.grad(loss, [m.weight for m in model if isinstance(m, nn.Linear)])
    for h in hooks:
        h.remove()
    linears = [(n, m) for n, m in model.named_children() if isinstance(m, nn.Linear)]
    ratio = {}
    for (name, m), g in zip(linears, grads, strict=True):
        if clip_value is not None:
            g = g.clamp(-clip_value, clip_value)
        ratio[name] = (LR * g.norm() / m.weight.norm()).item()
    return ratio, outputs


@pytest.mark.parametrize(("activation", "bounds"), [("sigmoid", (0.0, 1.0)), ("tanh", (-1.0, 1.0))])
@pytest.mark.parametrize("clip", ["none", "value"])
def test_update_ratio_and_saturation_match_torch(activation, bounds, clip):
    model = _model(activation)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g) * 2, torch.randn(64, 1, generator=g)
    expected_ratio, outputs = _reference(model, x, y, 0.01 if clip == "value" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    strategy = make_clip(clip, clip_value=0.01)
    with GradientProbe(model, clip=strategy, lr=LR, saturating=bounds) as probe:
        probe.begin_step(0)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        probe.after_backward()
        optimizer.step()
        record = probe.end_step(loss)

    low, high = bounds
    margin = 0.02 * (high - low)  # "near a bound": within 2% of the output range
    for i, name in enumerate(["h1", "h2", "h3"], start=1):
        stats = record.layers[name]
        assert stats.update_ratio == pytest.approx(expected_ratio[name], rel=1e-5)
        a = outputs[f"a{i}"]
        saturated = ((a <= low + margin) | (a >= high - margin)).float().mean().item()
        assert stats.act_saturation == pytest.approx(saturated, abs=1e-6)
    assert record.layers["o"].update_ratio == pytest.approx(expected_ratio["o"], rel=1e-5)
    # Large weights and inputs: saturation is really measured, not trivially 0 or 1.
    assert 0.05 < record.layers["h2"].act_saturation < 0.95


def test_relu_has_no_saturation_and_trainer_reports_both_signals():
    trainer = Trainer(get_preset("sigmoid-normal").config)
    try:
        record = trainer.step()
    finally:
        trainer.close()
    for name in ("h1", "h5"):
        assert record.layers[name].act_saturation is not None
        assert math.isfinite(record.layers[name].update_ratio)
    # sigmoid + N(0, 0.1): activations near 0.5, so none saturate; h1 barely moves.
    assert record.layers["h1"].act_saturation == 0.0
    assert record.layers["h1"].update_ratio < 1e-6 < record.layers["h5"].update_ratio

    trainer = Trainer(get_preset("relu-kaiming").config)
    try:
        record = trainer.step()
    finally:
        trainer.close()
    assert record.layers["h1"].act_saturation is None  # ReLU has no upper bound

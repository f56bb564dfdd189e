"""The six vanishing-gradient presets against a plain PyTorch script of the source.

The reference side below is written from DESIGN.md section 1 alone and imports
nothing from `engine`: the ball generator in numpy, the source's block model,
its `weights_init` applied with `model.apply`, the seeds, BCEWithLogitsLoss and
one full-batch step. The engine side is `Trainer(preset.config).step()`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

VANISHING = (
    "block-default",
    "sigmoid-normal",
    "tanh-xavier",
    "relu-kaiming",
    "relu-normal",
    "relu-normal-bn",
)
HIDDEN = ("h1", "h2", "h3", "h4", "h5")
LAYERS = HIDDEN + ("o",)


# -- the reference: the source's code, transcribed --------------------------------
def reference_ball(n_points: int = 1000, n_dims: int = 10):
    """The source's ball generator (numpy only, seed 13, reshuffled)."""
    np.random.seed(13)
    radius = np.sqrt(n_dims)
    points = np.random.normal(size=(n_points, n_dims))
    sphere = radius * points / np.linalg.norm(points, axis=1).reshape(-1, 1)
    X = sphere * np.random.uniform(size=(n_points, 1)) ** (1 / n_dims)
    adjustment = 1 / np.std(X)
    radius *= adjustment
    X *= adjustment
    y = (np.abs(np.sum(X, axis=1)) > (radius * 0.5)).astype(int)
    np.random.seed(13)
    shuffled = np.random.permutation(n_points)
    return X[shuffled], y[shuffled]


def reference_block(n_features, n_layers, hidden_units, activation_fn, use_bn):
    """The source's build_model: h_i -> a_i (-> bn_i), then o."""
    model = nn.Sequential()
    model.add_module("h1", nn.Linear(n_features, hidden_units, bias=not use_bn))
    model.add_module("a1", activation_fn())
    if use_bn:
        model.add_module("bn1", nn.BatchNorm1d(hidden_units, affine=False))
    for i in range(2, n_layers + 1):
        model.add_module(f"h{i}", nn.Linear(hidden_units, hidden_units, bias=not use_bn))
        model.add_module(f"a{i}", activation_fn())
        if use_bn:
            model.add_module(f"bn{i}", nn.BatchNorm1d(hidden_units, affine=False))
    model.add_module("o", nn.Linear(hidden_units, 1))
    return model


def _normal(m):
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, mean=0.0, std=0.1)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _xavier(m):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _kaiming(m):
    if isinstance(m, nn.Linear):
        nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# preset -> (activation, weights_init or None for PyTorch's default, batch norm, seed)
SOURCE = {
    "block-default": (nn.ReLU, None, False, 11),
    "sigmoid-normal": (nn.Sigmoid, _normal, False, 13),
    "tanh-xavier": (nn.Tanh, _xavier, False, 13),
    "relu-kaiming": (nn.ReLU, _kaiming, False, 13),
    "relu-normal": (nn.ReLU, _normal, False, 13),
    "relu-normal-bn": (nn.ReLU, _normal, True, 13),
}


def reference_step0(name: str) -> dict:
    """Loss, per-layer weight-gradient std and activation mean of the source's first step."""
    activation_fn, weights_init, use_bn, seed = SOURCE[name]
    X_np, y_np = reference_ball()
    X = torch.as_tensor(X_np).float()
    y = torch.as_tensor(y_np).float().view(-1, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = reference_block(X.shape[1], 5, 100, activation_fn, use_bn)
        if weights_init is not None:
            torch.manual_seed(seed)
            with torch.no_grad():
                model.apply(weights_init)
    acts = {}
    hooks = [
        getattr(model, f"a{i}").register_forward_hook(
            lambda m, inp, out, key=f"h{i}": acts.__setitem__(key, out.detach())
        )
        for i in range(1, 6)
    ]
    hooks.append(model.o.register_forward_hook(lambda m, i, out: acts.__setitem__("o", out)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    loss = nn.BCEWithLogitsLoss()(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    for hook in hooks:
        hook.remove()
    return {
        "positives": int(y_np.sum()),
        "loss": loss.item(),
        "grad_std": {n: getattr(model, n).weight.grad.std().item() for n in LAYERS},
        "act_mean": {n: acts[n].mean().item() for n in LAYERS},
    }


# -- the engine's side ----------------------------------------------------------------
@pytest.fixture(scope="module")
def engine_step0():
    """The step-0 record of every vanishing preset, trained by the engine on the CPU."""
    from engine.presets import get_preset
    from engine.trainer import Trainer

    records = {}
    for name in VANISHING:
        trainer = Trainer(get_preset(name).config.replace(device="cpu"))
        try:
            records[name] = trainer.step()
        finally:
            trainer.close()
    return records


def _close(value: float, expected: float) -> bool:
    # 1e-5 relative; the absolute floor only matters for means that are zero
    # up to float32 rounding (the logits after batch norm).
    return value == pytest.approx(expected, rel=1e-5, abs=1e-8)


def test_reference_ball_has_612_positives():
    assert reference_step0("block-default")["positives"] == 612


@pytest.mark.parametrize("name", VANISHING)
def test_step0_matches_plain_pytorch(name, engine_step0):
    record = engine_step0[name]
    expected = reference_step0(name)
    assert list(record.layers) == list(LAYERS)
    assert record.step == 0 and record.captured and record.activations_captured
    assert _close(record.loss, expected["loss"])
    for layer in LAYERS:
        stats = record.layers[layer]
        assert _close(stats.grad_std, expected["grad_std"][layer]), (layer, "grad_std")
        assert _close(stats.raw_grad_std, expected["grad_std"][layer]), (layer, "raw_grad_std")
        assert _close(stats.act_mean, expected["act_mean"][layer]), (layer, "act_mean")


def _grad_std(record, layers=HIDDEN):
    return [record.layers[n].grad_std for n in layers]


def test_sigmoid_normal_gradients_vanish(engine_step0):
    record = engine_step0["sigmoid-normal"]
    stds = _grad_std(record)
    assert stds[-1] / stds[0] > 100  # h5 over h1: about three orders of magnitude
    for layer in HIDDEN:  # and the activations sit near 0.5
        assert record.layers[layer].act_mean == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("name", ["tanh-xavier", "relu-kaiming"])
def test_good_init_keeps_gradients_level(name, engine_step0):
    stds = _grad_std(engine_step0[name])
    assert max(stds) / min(stds) < 10


def test_relu_normal_activations_shrink_and_batch_norm_restores_them(engine_step0):
    plain = [engine_step0["relu-normal"].layers[n].act_mean for n in HIDDEN]
    with_bn = [engine_step0["relu-normal-bn"].layers[n].act_mean for n in HIDDEN]
    assert plain == sorted(plain, reverse=True)  # shrinking layer by layer
    assert plain[-1] < plain[0] / 2
    # With batch norm, a_i (measured before bn_i) does not shrink from h1 to h5.
    assert with_bn[-1] >= with_bn[0]
    assert min(with_bn[1:]) > plain[0]

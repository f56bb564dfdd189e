"""Clipping and the exploding-gradient presets, with torch.nn.utils as the reference.

The reference scripts below import nothing from `engine`: they are the
source's regression experiment (make_regression, DataLoader(shuffle=True),
manual_seed, fc1/act/fc2, SGD, MSELoss) transcribed from DESIGN.md section 1.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.clipping import HookClip, NormClip, ValueClip, make_clip
from engine.presets import get_preset
from engine.trainer import Trainer

TOY_GRAD = [[2.5], [0.8]]


# -- the toy example of the slides ------------------------------------------------
def toy_param() -> nn.Parameter:
    torch.manual_seed(42)
    param = nn.Parameter(torch.randn(2, 1))
    param.grad = torch.tensor(TOY_GRAD)
    return param


def test_toy_value_clipping_matches_clip_grad_value():
    param, expected = toy_param(), toy_param()
    strategy = ValueClip(1.0)
    strategy.attach([param])
    strategy.apply([param.grad.norm()])
    torch.nn.utils.clip_grad_value_(expected, clip_value=1.0)
    assert param.grad.view(-1).tolist() == pytest.approx([1.0, 0.8])
    assert torch.equal(param.grad, expected.grad)


def test_toy_norm_clipping_matches_clip_grad_norm():
    param, expected = toy_param(), toy_param()
    norm_before = param.grad.norm()
    assert norm_before.item() == pytest.approx(2.6249, abs=1e-4)
    strategy = NormClip(1.0, 2.0)
    strategy.attach([param])
    assert strategy.clipped_count([param.grad]).item() == 2  # both elements change
    strategy.apply([norm_before])
    returned = torch.nn.utils.clip_grad_norm_(expected, max_norm=1.0, norm_type=2)
    assert returned.item() == pytest.approx(norm_before.item())
    assert param.grad.view(-1).tolist() == pytest.approx([0.9524, 0.3048], abs=1e-4)
    assert param.grad.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(param.grad, expected.grad, rtol=1e-6, atol=0)


def test_toy_inf_norm_clipping_matches_clip_grad_norm():
    param, expected = toy_param(), toy_param()
    strategy = make_clip("norm", max_norm=1.0, norm_type="inf")
    strategy.attach([param])
    strategy.apply([param.grad.norm()])
    torch.nn.utils.clip_grad_norm_(expected, max_norm=1.0, norm_type=math.inf)
    assert torch.allclose(param.grad, expected.grad, rtol=1e-6, atol=0)
    assert param.grad.view(-1).tolist() == pytest.approx([1.0, 0.32], abs=1e-5)


def test_norm_clip_counts_nothing_below_max_norm():
    param = toy_param()
    strategy = NormClip(10.0, 2.0)
    strategy.attach([param])
    assert strategy.clipped_count([param.grad]).item() == 0
    strategy.apply([param.grad.norm()])
    assert param.grad.view(-1).tolist() == pytest.approx([2.5, 0.8])


def test_toy_hook_clamps_during_backward_and_keeps_the_raw_gradient():
    torch.manual_seed(42)
    param = nn.Parameter(torch.randn(2, 1))
    with HookClip(1.0) as strategy:
        strategy.attach([param])
        (param * torch.tensor(TOY_GRAD)).sum().backward()
        assert param.grad.view(-1).tolist() == pytest.approx([1.0, 0.8])
        assert strategy.raw_grads()[0].view(-1).tolist() == pytest.approx([2.5, 0.8])
    param.grad = None
    (param * torch.tensor(TOY_GRAD)).sum().backward()  # the hook is gone
    assert param.grad.view(-1).tolist() == pytest.approx([2.5, 0.8])


# -- reference scripts of the regression experiment ---------------------------------
def reference_losses(steps: int, clip: str | None = None) -> list[float]:
    """Per-step losses of the source's regression training, plain PyTorch."""
    from sklearn.datasets import make_regression

    X_reg, y_reg = make_regression(n_samples=1000, n_features=10, noise=0.1, random_state=42)
    X_reg = torch.as_tensor(X_reg).float()
    y_reg = torch.as_tensor(y_reg).float().view(-1, 1)
    train_loader = DataLoader(TensorDataset(X_reg, y_reg), batch_size=32, shuffle=True)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        model = nn.Sequential()
        model.add_module("fc1", nn.Linear(10, 15))
        model.add_module("act", nn.ReLU())
        model.add_module("fc2", nn.Linear(15, 1))
        lr = 0.01
        if clip is not None:

            def weights_init(m):
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

            torch.manual_seed(42)
            with torch.no_grad():
                model.apply(weights_init)
            lr = 0.1
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        loss_fn = nn.MSELoss()
        while len(losses) < steps:
            for x, y in train_loader:
                model.train()
                loss = loss_fn(model(x), y)
                loss.backward()
                if clip == "value":
                    nn.utils.clip_grad_value_(model.parameters(), clip_value=1.0)
                elif clip == "norm":
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0, 2)
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                if len(losses) == steps:
                    break
    return losses


def engine_records(name: str, steps: int | None = None, until_nonfinite: bool = False):
    trainer = Trainer(get_preset(name).config.replace(device="cpu", sampling="exact"))
    records = []
    try:
        while not trainer.finished and (steps is None or len(records) < steps):
            records.append(trainer.step())
            if until_nonfinite and trainer.first_nonfinite is not None:
                break
    finally:
        trainer.close()
    return trainer, records


def test_shuffle_order_equals_dataloader():
    _, records = engine_records("exploding", steps=5)
    assert [r.loss for r in records] == reference_losses(5)


@pytest.mark.parametrize("clip", ["value", "norm"])
def test_clipped_training_equals_torch_nn_utils_across_epochs(clip):
    # 40 steps cross the first epoch boundary (32 batches): the reshuffle too.
    _, records = engine_records(f"clip-{clip}", steps=40)
    expected = reference_losses(40, clip=clip)
    assert [r.loss for r in records] == pytest.approx(expected, rel=1e-5)


# -- the exploding preset ------------------------------------------------------------
@pytest.fixture(scope="module")
def exploding():
    return engine_records("exploding", until_nonfinite=True)


def test_exploding_gradient_grows_and_loss_turns_nonfinite(exploding):
    trainer, records = exploding
    assert trainer.total_steps == 10 * 32
    nf = trainer.first_nonfinite
    assert nf is not None, "no non-finite loss in 10 epochs"
    assert any(not math.isfinite(r.loss) for r in records)
    means = [abs(r.layers["fc1"].grad_mean) for r in records]
    assert max(m for m in means if math.isfinite(m)) > 1e6
    assert means[0] < 1e3  # it grew by orders of magnitude from a modest start


def test_exploding_reports_first_nonfinite_step_and_layer(exploding):
    trainer, records = exploding
    nf = trainer.first_nonfinite
    first_bad = next(
        r for r in records if not (math.isfinite(r.loss) and math.isfinite(r.grad_norm))
    )
    assert nf.step == first_bad.step == records[-1].step
    assert all(math.isfinite(r.loss) and math.isfinite(r.grad_norm) for r in records[:-1])
    bad_layers = [n for n, s in first_bad.layers.items() if s.grad_nonfinite]
    assert nf.layer == (bad_layers[0] if bad_layers else "loss")
    assert nf.layer in ("fc1", "fc2", "loss")
    if not math.isfinite(first_bad.loss):
        assert nf.what == "loss"
    assert str(nf.step) in nf.describe() and nf.layer in nf.describe()
    for record in records[:-1]:
        assert all(s.grad_nonfinite == 0 for s in record.layers.values())


# -- the clipping presets over their ten epochs ----------------------------------------
@pytest.fixture(scope="module")
def clipped_runs():
    return {clip: engine_records(f"clip-{clip}")[1] for clip in ("value", "norm", "hook")}


@pytest.mark.parametrize("clip", ["value", "norm", "hook"])
def test_clipping_keeps_ten_epochs_finite(clip, clipped_runs):
    records = clipped_runs[clip]
    assert len(records) == 320
    assert all(math.isfinite(r.loss) and math.isfinite(r.grad_norm) for r in records)


def test_value_clipping_and_hooks_give_identical_losses(clipped_runs):
    assert [r.loss for r in clipped_runs["value"]] == [r.loss for r in clipped_runs["hook"]]


@pytest.mark.parametrize("clip", ["value", "hook"])
def test_applied_gradient_within_one_while_raw_exceeds_it(clip, clipped_runs):
    records = clipped_runs[clip]
    assert all(r.captured for r in records)
    for r in records:
        for stats in r.layers.values():
            assert stats.grad_abs_max <= 1.0
    assert any(s.raw_grad_abs_max > 1.0 for r in records for s in r.layers.values())
    assert max(r.layers["fc1"].raw_grad_abs_max for r in records) > 10  # up to hundreds
    assert any(r.clipped_frac > 0 for r in records)


def test_value_clipping_loss_falls_from_1e4_below_100(clipped_runs):
    losses = [r.loss for r in clipped_runs["value"]]
    assert losses[0] > 5e3
    first_epoch, last_epoch = statistics.mean(losses[:32]), statistics.mean(losses[-32:])
    assert first_epoch > 1e3  # the source's first epoch: about 1e4
    assert last_epoch < 100


def test_norm_clipping_caps_the_total_norm(clipped_runs):
    records = clipped_runs["norm"]
    assert any(r.grad_norm > 1.0 for r in records)
    for r in records:
        assert r.grad_norm_clipped <= 1.0 + 1e-5
        if r.grad_norm > 1.0 + 1e-5:
            assert r.grad_norm_clipped == pytest.approx(1.0, rel=1e-4)
            assert r.clipped_frac == 1.0
        else:
            assert r.grad_norm_clipped == pytest.approx(r.grad_norm, rel=1e-5)
            assert r.clipped_frac == 0.0

"""The probe on models it did not build, checked against PyTorch computed directly.

Each test trains one step twice from the same weights: once under the probe,
once as a plain PyTorch step on a deep copy, where every statistic is taken
with the obvious tensor call (`g.std()`, `torch.nn.utils.clip_grad_norm_`, ...).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.clipping import make_clip
from engine.probe import GradientProbe

CLIP_VALUE = 0.05  # small enough to bite on these models' gradients
CLIP_VALUE_F32 = torch.tensor(CLIP_VALUE).item()  # what a float32 gradient is clamped to
MAX_NORM = 0.1


class TiedNet(nn.Module):
    """An output projection tied to the embedding, and a block applied twice."""

    def __init__(self, vocab: int = 12, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.block = nn.Linear(dim, dim)
        self.act = nn.Tanh()
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx)
        h = self.act(self.block(h))
        h = self.act(self.block(h))  # the same weight a second time
        return self.out(h)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def cnn_case(device):
    torch.manual_seed(0)
    model = small_cnn().to(device)
    x = torch.randn(16, 1, 8, 8, device=device)
    y = torch.randint(0, 3, (16,), device=device)
    # layer name -> (weight, the module whose output is that layer's activation)
    layers = {"0": (model[0].weight, model[1]), "3": (model[3].weight, model[3])}
    return model, x, y, layers


def tied_case(device):
    torch.manual_seed(1)
    model = TiedNet().to(device)
    x = torch.randint(0, 12, (32,), device=device)
    y = torch.randint(0, 12, (32,), device=device)
    # The tied weight is reported once, under its first name; the shared
    # block's activation is every call of `act`.
    layers = {"emb": (model.emb.weight, model.emb), "block": (model.block.weight, model.act)}
    return model, x, y, layers


CASES = {"cnn": cnn_case, "tied": tied_case}


def direct_step(model, x, y, clip: str, layers: dict) -> dict:
    """One plain PyTorch step on `model`, measured by hand."""
    params = [p for p in model.parameters() if p.requires_grad]
    acts: dict = {}
    modules = {id(m): m for _, m in layers.values()}
    handles = [
        m.register_forward_hook(
            lambda mod, inp, out: acts.setdefault(id(mod), []).append(out.detach().reshape(-1))
        )
        for m in modules.values()
    ]
    loss = F.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    model.zero_grad()
    loss.backward()
    raw = {n: w.grad.detach().clone() for n, (w, _) in layers.items()}
    raw_all = [p.grad.detach().clone() for p in params]
    weights = {n: w.detach().clone() for n, (w, _) in layers.items()}
    total_before = torch.cat([g.reshape(-1) for g in raw_all]).norm()
    numel = sum(g.numel() for g in raw_all)
    if clip in ("value", "hook"):
        torch.nn.utils.clip_grad_value_(params, CLIP_VALUE)
        changed = sum((g.abs() > CLIP_VALUE).sum().item() for g in raw_all)
    elif clip == "norm":
        returned = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        assert returned.item() == pytest.approx(total_before.item(), rel=1e-5)
        changed = numel if total_before.item() > MAX_NORM else 0
    else:
        changed = 0
    total_after = torch.cat([p.grad.reshape(-1) for p in params]).norm()
    return {
        "loss": loss.item(),
        "raw": raw,
        "applied": {n: w.grad.detach().clone() for n, (w, _) in layers.items()},
        "weights": weights,
        "acts": {n: torch.cat(acts[id(m)]) for n, (_, m) in layers.items()},
        "grad_norm": total_before.item(),
        "grad_norm_clipped": total_after.item(),
        "clipped_frac": changed / numel,
    }


def probed_step(model, x, y, clip: str):
    """The same step under the probe; returns the record and the probe."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy = make_clip(clip, clip_value=CLIP_VALUE, max_norm=MAX_NORM)
    with GradientProbe(model, clip=strategy, capture_every=1, activation_every=1) as probe:
        probe.begin_step(0)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        probe.after_backward()
        optimizer.step()
        record = probe.end_step(loss, epoch=0)
    return record, probe


def approx(value, rel=1e-4, abs=1e-6):
    return pytest.approx(value, rel=rel, abs=abs)


def _devices():
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("clip", ["none", "value", "norm", "hook"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_probe_matches_direct_pytorch(case, clip, device):
    model, x, y, layers = CASES[case](device)
    reference = copy.deepcopy(model)
    ref_layers = {
        n: (_same_param(reference, model, w), _same_module(reference, model, m))
        for n, (w, m) in layers.items()
    }
    expected = direct_step(reference, x, y, clip, ref_layers)
    record, _ = probed_step(model, x, y, clip)

    assert sorted(record.layers) == sorted(layers)
    assert record.loss == approx(expected["loss"], rel=1e-6)
    assert record.grad_norm == approx(expected["grad_norm"])
    assert record.grad_norm_clipped == approx(expected["grad_norm_clipped"])
    assert record.clipped_frac == approx(expected["clipped_frac"], abs=1e-9)
    if clip != "none":
        assert expected["clipped_frac"] > 0  # the clip really changed something
    for name in layers:
        stats = record.layers[name]
        for prefix, grads in (("raw_", expected["raw"]), ("", expected["applied"])):
            g = grads[name]
            assert getattr(stats, f"{prefix}grad_mean") == approx(g.mean().item()), name
            assert getattr(stats, f"{prefix}grad_std") == approx(g.std().item()), name
            assert getattr(stats, f"{prefix}grad_norm") == approx(g.norm().item()), name
            assert getattr(stats, f"{prefix}grad_abs_max") == approx(g.abs().max().item()), name
        assert stats.grad_nonfinite == 0
        w = expected["weights"][name]  # the weight this step's forward used
        assert stats.weight_mean == approx(w.mean().item())
        assert stats.weight_std == approx(w.std().item())
        a = expected["acts"][name]
        assert stats.act_mean == approx(a.mean().item())
        assert stats.act_std == approx(a.std().item())
        assert stats.act_zero_frac == approx((a == 0).float().mean().item())
    if clip in ("value", "hook"):
        assert all(s.grad_abs_max <= CLIP_VALUE_F32 for s in record.layers.values())
        assert any(s.raw_grad_abs_max > CLIP_VALUE_F32 for s in record.layers.values())


def _same_param(copy_model, model, param):
    names = {id(p): n for n, p in model.named_parameters()}
    return dict(copy_model.named_parameters())[names[id(param)]]


def _same_module(copy_model, model, module):
    names = {id(m): n for n, m in model.named_modules()}
    return dict(copy_model.named_modules())[names[id(module)]]


def test_tied_weight_reported_once_with_summed_gradient():
    model, x, y, _ = tied_case("cpu")
    assert model.out.weight is model.emb.weight
    record, _ = probed_step(model, x, y, "none")
    assert list(record.layers) == ["emb", "block"]


def test_cnn_relu_activation_has_zeros():
    model, x, y, _ = cnn_case("cpu")
    record, _ = probed_step(model, x, y, "none")
    assert 0.2 < record.layers["0"].act_zero_frac < 0.8  # measured after the ReLU
    assert record.layers["3"].act_zero_frac == 0  # the logits


def _hooks_left(model: nn.Module) -> list[str]:
    left = [f"forward hook on {n or 'model'}" for n, m in model.named_modules() if m._forward_hooks]
    left += [
        f"backward hook on {n}"
        for n, p in model.named_parameters()
        if getattr(p, "_backward_hooks", None)
    ]
    return left


@pytest.mark.parametrize("clip", ["none", "value", "norm", "hook"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hooks_removed_after_with_block(case, clip):
    model, x, y, _ = CASES[case]("cpu")
    assert _hooks_left(model) == []
    _, probe = probed_step(model, x, y, clip)
    assert _hooks_left(model) == []
    # And functionally: a later backward is neither clamped nor recorded.
    model.zero_grad()
    (F.cross_entropy(model(x), y) * 1e6).backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) > CLIP_VALUE
    assert probe.taps._kept == {}


def test_hooks_removed_when_the_loop_raises():
    model, x, y, _ = cnn_case("cpu")
    with pytest.raises(RuntimeError, match="inside the loop"):
        with GradientProbe(model, clip=make_clip("hook", clip_value=CLIP_VALUE)) as probe:
            probe.begin_step(0)
            F.cross_entropy(model(x), y).backward()
            raise RuntimeError("inside the loop")
    assert _hooks_left(model) == []


def test_sentinels_every_step_full_statistics_on_capture_steps():
    model, x, y, _ = cnn_case("cpu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    records, totals = [], []
    with GradientProbe(model, capture_every=3, activation_every=4) as probe:
        for step in range(6):
            probe.begin_step(step)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            norms = [p.grad.double().norm() for p in model.parameters()]
            totals.append(torch.stack(norms).norm().item())
            probe.after_backward(loss if step % 2 else None)  # both ways of reading the loss
            optimizer.step()
            records.append(probe.end_step(loss, epoch=0))
    for record, total in zip(records, totals, strict=True):
        # The sentinels: the loss and the total gradient norm, every step.
        assert math.isfinite(record.loss)
        assert record.grad_norm == pytest.approx(total, rel=1e-5)
        assert record.grad_norm_clipped == record.grad_norm
        # Each layer's norm comes with the statistics or the activations.
        measured = record.captured or record.activations_captured
        assert all(
            (s.grad_norm is not None and s.raw_grad_norm is not None) == measured
            for s in record.layers.values()
        )
    assert [r.captured for r in records] == [True, False, False, True, False, False]
    assert [r.activations_captured for r in records] == [True, False, False, False, True, False]
    assert records[1].layers["0"].grad_std is None and records[1].layers["0"].act_mean is None
    assert records[3].layers["0"].grad_std is not None and records[3].layers["0"].act_mean is None
    assert records[4].layers["0"].act_mean is not None and records[4].histograms is not None

"""The unrolled RNN: per-time-step gradient norms and clipping inside the recurrence.

PyTorch is the reference: retain_grad on hand-made hidden states, and a
backpropagation through time written out step by step with autograd.grad.
The clip-mode comparison on the rnn-exploding preset pins what the lab shows.
"""

import math

import pytest
import torch

from engine.config import RunConfig
from engine.diagnosis import diagnose_records
from engine.history import History
from engine.presets import get_preset
from engine.recurrent import UnrolledRNN, recurrent_model
from engine.session import TrainingSession
from engine.trainer import Trainer

STEPS = 40  # training steps per clip mode in the comparison


def _model(clip_value=None, gain=2.5, seed=0):
    torch.manual_seed(seed)
    model = UnrolledRNN(3, 8, clip_value)
    with torch.no_grad():
        model.cell.weight_hh.normal_(0, gain / math.sqrt(8))
    return model


def _batch(seed=1, time=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, time, 3, generator=g), torch.randn(4, 1, generator=g)


def test_timestep_norms_are_the_norms_of_dL_dh_t():
    model = _model()
    x, y = _batch()
    torch.nn.functional.mse_loss(model(x), y).backward()
    norms = model.timestep_grad_norms()

    # Reference: the same recurrence with retain_grad on every hidden state.
    h, states = torch.zeros(4, 8), []
    for t in range(x.shape[1]):
        h = model.cell(x[:, t], h)
        h.retain_grad()
        states.append(h)
    torch.nn.functional.mse_loss(model.o(h), y).backward()
    expected = torch.stack([s.grad.norm() for s in states])
    assert norms.shape == (12,)
    torch.testing.assert_close(norms, expected)
    assert norms[0] > norms[-1]  # gain 2.5: the gradient grows back in time


def _manual_bptt(model, x, y, clip):
    """Backpropagation through time by hand: clamp dL/dh_t, then send it back one step."""
    params = list(model.cell.parameters())
    inputs, outputs, h = [], [], torch.zeros(4, 8)
    for t in range(x.shape[1]):
        h_in = h.detach().requires_grad_(True)
        inputs.append(h_in)
        outputs.append(model.cell(x[:, t], h_in))
        h = outputs[-1]
    last = outputs[-1].detach().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(model.o(last), y)
    delta, *o_grads = torch.autograd.grad(loss, [last, *model.o.parameters()])
    grads = [torch.zeros_like(p) for p in params]
    norms = []
    for t in reversed(range(x.shape[1])):
        norms.append(delta.norm())
        delta = delta.clamp(-clip, clip)
        local = torch.autograd.grad(outputs[t], [inputs[t], *params], delta)
        delta = local[0]
        grads = [g + d for g, d in zip(grads, local[1:], strict=True)]
    return grads + o_grads, torch.stack(norms[::-1])


def test_timestep_clipping_is_clamped_backpropagation_through_time():
    clip = 0.02  # small enough to bite at most time steps
    model = _model(clip_value=clip)
    x, y = _batch()
    torch.nn.functional.mse_loss(model(x), y).backward()
    got = [p.grad for p in [*model.cell.parameters(), *model.o.parameters()]]
    expected, norms = _manual_bptt(model, x, y, clip)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    # The recorded norm is the one *before* the clamp at that step.
    torch.testing.assert_close(model.timestep_grad_norms(), norms)
    assert norms.max() > clip  # the clamp really changed something


def test_no_hooks_without_grad_and_recurrent_model_reads_the_config():
    config = get_preset("rnn-exploding").config
    model = recurrent_model(config)
    assert model.clip_value is None
    assert recurrent_model(config.replace(clip="timestep", clip_value=0.5)).clip_value == 0.5
    with torch.no_grad():
        out = model(torch.randn(2, 5, 1))
    assert out.shape == (2, 1)
    assert torch.isnan(model.timestep_grad_norms()).all()  # no backward, no norms


def _small_rnn(**changes) -> RunConfig:
    return get_preset("rnn-exploding").config.replace(
        n_samples=64, seq_len=15, batch_size=16, **changes
    )


def test_trainer_and_history_carry_the_timestep_norms():
    trainer = Trainer(_small_rnn(clip="timestep"))
    history = History()
    try:
        for _ in range(3):
            record = trainer.step()
            history.append(record)
    finally:
        trainer.close()
    assert len(record.timestep_grad_norms) == 15
    assert all(math.isfinite(v) and v > 0 for v in record.timestep_grad_norms)
    steps, rows = history.timestep_matrix()
    assert list(steps) == [0, 1, 2] and rows.shape == (3, 15)
    assert trainer.layer_names == ["cell.weight_ih", "cell.weight_hh", "o"]


def test_session_streams_the_timestep_norms():
    session = TrainingSession(_small_rnn())
    try:
        for _ in range(2):
            session.step(wait=True)
    finally:
        session.stop()
    assert session.status().error is None
    steps, rows = session.history.timestep_matrix()
    assert rows.shape == (2, 15)


@pytest.fixture(scope="module")
def clip_runs():
    """STEPS steps of rnn-exploding under every clip mode: losses, norms, |dL/dh_t| rows."""
    runs = {}
    for clip in ("none", "value", "norm", "hook", "timestep"):
        trainer = Trainer(get_preset("rnn-exploding").config.replace(clip=clip))
        try:
            runs[clip] = [trainer.step() for _ in range(STEPS)]
        finally:
            trainer.close()
    return runs


def _losses(records):
    return torch.tensor([r.loss for r in records])


def test_without_clipping_the_gradient_explodes_back_in_time(clip_runs):
    records = clip_runs["none"]
    first = records[0].timestep_grad_norms
    assert first[0] / first[-1] > 1e5  # |dL/dh_1| vs |dL/dh_60| on the first step
    assert max(r.grad_norm for r in records) > 1e6


def test_timestep_clipping_keeps_the_gradient_bounded_in_time(clip_runs):
    for clip in ("value", "norm", "hook"):
        # A parameter clip cannot touch dL/dh_t: the first backward is the unclipped one.
        assert clip_runs[clip][0].timestep_grad_norms == clip_runs["none"][0].timestep_grad_norms
    rows = [r.timestep_grad_norms for r in clip_runs["timestep"]]
    assert max(max(row) for row in rows) < 1e3
    assert max(r.grad_norm for r in clip_runs["timestep"]) < 1e4


def test_clip_modes_give_visibly_different_runs(clip_runs):
    losses = {clip: _losses(records) for clip, records in clip_runs.items()}
    late = {clip: float(v[-10:].mean()) for clip, v in losses.items()}
    # value, norm and timestep: pairwise different loss curves and different gradients.
    for a, b in (("value", "norm"), ("value", "timestep"), ("norm", "timestep"), ("hook", "value")):
        assert not torch.allclose(losses[a], losses[b], rtol=0.05), (a, b)
    assert max(r.grad_norm_clipped for r in clip_runs["norm"]) <= 1.0 + 1e-4
    assert max(r.grad_norm_clipped for r in clip_runs["value"]) > 2.0
    # Norm clipping keeps the exploded direction: tiny steps, the network stays chaotic.
    assert late["norm"] > 2 * late["timestep"] and late["norm"] > 2 * late["value"]
    assert min(r.grad_norm for r in clip_runs["norm"][-10:]) > 1e4
    # Clipping inside the recurrence learns fastest here.
    assert late["timestep"] < min(late["value"], late["norm"], late["none"])


def test_hooks_clip_every_time_step_of_the_weights_unlike_value_clipping(clip_runs):
    # A clamp hook on the parameter itself would fire once, on the gradient summed
    # over all time steps (exactly value clipping, as clip-value/clip-hook show on
    # the MLP); on the RNN clip=hook clamps each time step's part during backward.
    hook, value = clip_runs["hook"], clip_runs["value"]
    assert not torch.allclose(_losses(hook), _losses(value), rtol=0.05)
    assert not torch.allclose(_losses(hook), _losses(clip_runs["timestep"]), rtol=0.05)
    assert not torch.allclose(_losses(hook), _losses(clip_runs["norm"]), rtol=0.05)
    # The raw gradient is the unclamped sum; the applied one adds up clamped parts.
    first = hook[0].layers["cell.weight_hh"]
    assert first.raw_grad_abs_max > 1.0
    assert first.grad_abs_max <= 60 * 1.0 + 1e-4
    assert first.grad_abs_max != value[0].layers["cell.weight_hh"].grad_abs_max
    assert hook[0].clipped_frac > 0


def test_diagnosis_reads_each_clip_mode(clip_runs):
    config = get_preset("rnn-exploding").config
    verdicts = {
        clip: diagnose_records(records, config.replace(clip=clip)).verdict
        for clip, records in clip_runs.items()
    }
    assert verdicts["none"] == "exploding"
    assert verdicts["value"] == verdicts["norm"] == verdicts["hook"] == "clipping"
    assert verdicts["timestep"] not in ("exploding", "clipping")

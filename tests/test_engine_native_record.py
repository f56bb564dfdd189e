"""A compact step's record made in C (engine.native_record) is the one Python makes, and leaves
the lane where the Python lane does."""

from __future__ import annotations

import math

import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn

from engine.compact_stats import CompactLayers, compact_record, record_spec
from engine.flat_grads import FlatGradients
from engine.native_stats import sweep_kernel
from engine.probe import GradientProbe
from engine.recording import plain_step_record
from engine.records import StepRecord

needs_module = pytest.mark.skipif(
    getattr(sweep_kernel(), "kind", None) != "module",
    reason="the kernel is not an extension module here (no compiler or no Python headers)",
)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 15), nn.ReLU(), nn.Linear(15, 1))


class _Step:
    """One model after its backward, its flat buffer, and both ways to its record."""

    def __init__(self, lr: float | None = 0.05) -> None:
        self.model = _model()
        self.params = list(self.model.parameters())
        self.weights = [self.model[0].weight, self.model[2].weight]
        self.flat = FlatGradients(self.params)
        self.flat.zero()
        x, y = random_batches(1, 10, 32)[0]
        self.loss = nn.functional.mse_loss(self.model(x), y)
        self.loss.backward()
        self.probe = GradientProbe(self.model, lr=lr)
        self.layout, self.lr = self.probe.compact_layout, lr

    def in_c(self, step: int = 7, eager: set[str] | None = None, loss=None):
        """The recorder's record (or None) for this step."""
        spec = record_spec(self.layout, self.lr)
        record = self.flat.compact_recorder(self.params, self.weights, spec)
        assert record is not None
        return record(
            self.loss if loss is None else loss, {"cpu"} if eager is None else eager, step
        )

    def in_python(self, step: int = 7):
        """compact_record's record for this step, from the same sweep."""
        values = self.flat.compact_values(self.params, self.weights)
        return compact_record(self.layout, self.lr, step, self.loss.item(), values)


@needs_module
@pytest.mark.parametrize("lr", [0.05, None])
def test_the_record_made_in_c_is_the_record_made_in_python(lr):
    step = _Step(lr)
    made, want = step.in_c(), step.in_python()
    assert type(made) is type(want)
    assert list(vars(made)) == list(vars(want))  # the fields, in the dataclass's order
    for field, value in vars(want).items():
        assert type(getattr(made, field)) is type(value), field
        if field in ("grad_norm", "grad_norm_clipped"):  # Neumaier's sum against math.hypot
            assert getattr(made, field) == pytest.approx(value, rel=1e-15, abs=0.0), field
        elif field != "layers":
            assert getattr(made, field) == value, field
    assert type(made.layers) is CompactLayers
    assert dict(made.layers) == dict(want.layers)
    assert made.step == 7 and made.epoch == 0 and made.captured and not made.activations_captured


@needs_module
def test_each_record_made_in_c_is_its_own():
    step = _Step()
    spec = record_spec(step.layout, step.lr)
    record = step.flat.compact_recorder(step.params, step.weights, spec)
    first, second = record(step.loss, {"cpu"}, 1), record(step.loss, {"cpu"}, 2)
    assert (first.step, second.step) == (1, 2)
    assert vars(first) is not vars(second) and vars(first) is not spec[1]
    assert first.layers is not second.layers
    assert first.layers._built is not second.layers._built
    assert first.layers._values is not second.layers._values
    assert first.layers._values == second.layers._values
    assert spec[1]["step"] == 0 and spec[1]["layers"] is None  # the template as it was


@needs_module
def test_a_model_of_many_tensors_is_recorded_past_the_stack_s_room():
    # 24 layers: 48 gradients and 24 weights swept, 361 numbers (the stack holds 321).
    torch.manual_seed(0)
    layers = [nn.Linear(4, 4) for _ in range(24)]
    model = nn.Sequential(*layers)
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    loss = model(torch.randn(8, 4)).square().mean()
    loss.backward()
    probe = GradientProbe(model, lr=0.1)
    weights = [layer.weight for layer in layers]
    spec = record_spec(probe.compact_layout, 0.1)
    made = flat.compact_recorder(params, weights, spec)(loss, {"cpu"}, 0)
    values = flat.compact_values(params, weights)
    assert len(values) == 361
    want = compact_record(probe.compact_layout, 0.1, 0, loss.item(), values)
    assert made.grad_norm == pytest.approx(want.grad_norm, rel=1e-15)
    assert dict(made.layers) == dict(want.layers)


@needs_module
def test_the_record_made_in_c_gives_none_where_a_step_must_take_the_general_path():
    step = _Step()
    assert step.in_c(eager=set()) is None  # a device read once, as a GPU's
    assert step.in_c(loss=torch.tensor(math.nan)) is None
    assert step.in_c(loss=torch.tensor(math.inf)) is None
    step.model[2].weight.grad[0, 0] = math.inf  # a view of the buffer: the sweep sees it
    assert step.in_c() is None

    moved = _Step()
    spec = record_spec(moved.layout, moved.lr)
    record = moved.flat.compact_recorder(moved.params, moved.weights, spec)
    moved.weights[1].data = moved.weights[1].data * 3  # new storage, after the lane was built
    assert record(moved.loss, {"cpu"}, 0) is None

    replaced = _Step()
    spec = record_spec(replaced.layout, replaced.lr)
    record = replaced.flat.compact_recorder(replaced.params, replaced.weights, spec)
    replaced.params[0].grad = replaced.params[0].grad.clone()  # no longer the buffer's view
    assert record(replaced.loss, {"cpu"}, 0) is None


@needs_module
def test_a_wrong_call_is_an_error_not_a_crash():
    step = _Step()
    spec = record_spec(step.layout, step.lr)
    record = step.flat.compact_recorder(step.params, step.weights, spec)
    state, where, _ = record.args
    compact = record.func
    with pytest.raises(TypeError):
        compact(state, where, spec[:5], step.loss, {"cpu"}, 0)
    with pytest.raises(TypeError):
        compact(b"not a state", where, spec, step.loss, {"cpu"}, 0)
    with pytest.raises(TypeError):
        compact(state, where, (1, *spec[1:]), step.loss, {"cpu"}, 0)
    with pytest.raises(ValueError):
        compact(state, where, (*spec[:5], 99), step.loss, {"cpu"}, 0)
    with pytest.raises(TypeError):  # a class whose objects cannot be made
        compact(state, where, (type(iter([])), *spec[1:]), step.loss, {"cpu"}, 0)
    with pytest.raises(RuntimeError):  # a loss of two elements has no .item(): torch says so
        compact(state, where, spec, torch.ones(2), {"cpu"}, 0)


def _probed(
    lr_change=None, epoch=lambda step: 0, extra=lambda step: None, capture_every: int = 1
) -> list:
    # A probe through a flat buffer, capturing statistics every step (compact
    # from step 1 on) or every `capture_every`-th, with end_step given
    # epoch(step) and extra(step), an rnn's per-time-step norms or None.
    model = _model()
    params = list(model.parameters())
    buffer = FlatGradients(params)
    optimizer = torch.optim.SGD(params, lr=0.05)
    records = []
    with GradientProbe(
        model, capture_every=capture_every, activation_every=1 << 30, lr=0.05
    ) as probe:
        probe.flat = buffer
        for step, (x, y) in enumerate(random_batches(5, 10, 32)):
            if lr_change is not None and step == 3:
                probe.lr = lr_change
            probe.begin_step(step)
            loss = nn.functional.mse_loss(model(x), y)
            buffer.zero()
            loss.backward()
            probe.after_backward(loss)
            optimizer.step()
            records.append(probe.end_step(loss, epoch(step), extra(step)))
    return records


@needs_module
def test_the_probe_s_compact_steps_are_recorded_in_c(monkeypatch):
    calls = []

    class Counted:
        def __init__(self, recorder):
            self.recorder = recorder

        def __call__(self, loss, eager_devices, step):
            made = self.recorder(loss, eager_devices, step)
            calls.append(made is not None)
            return made

    real = FlatGradients.compact_recorder
    monkeypatch.setattr(
        FlatGradients, "compact_recorder", lambda self, *args: Counted(real(self, *args))
    )
    records = _probed()
    assert calls == [True] * 3  # steps 2-4: step 0 took activations, step 1 built the lane
    assert all(type(r.layers) is CompactLayers for r in records[1:])


@pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")
def test_end_step_gives_a_compact_record_its_epoch_and_time_step_norms():
    records = _probed(epoch=lambda step: 3, extra=lambda step: torch.tensor([1.0, 2.0]))
    assert [type(r.layers) is CompactLayers for r in records] == [False] + [True] * 4
    assert all(r.epoch == 3 and r.timestep_grad_norms == (1.0, 2.0) for r in records)
    plain = _probed()
    assert all(r.epoch == 0 and r.timestep_grad_norms is None for r in plain)


@pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")
def test_a_new_lr_reaches_the_update_ratio_of_the_next_compact_step():
    before, after = _probed(), _probed(lr_change=0.5)
    assert type(after[4].layers) is CompactLayers
    for name in before[4].layers:
        assert after[2].layers[name].update_ratio == before[2].layers[name].update_ratio
        assert after[4].layers[name].update_ratio == pytest.approx(
            10 * before[4].layers[name].update_ratio, rel=1e-12
        )


def test_a_probe_through_a_flat_buffer_records_what_a_plain_loop_computes():
    # The loop's own loss and total norm, step by step, whichever path took them.
    model = _model()
    buffer = FlatGradients(list(model.parameters()))
    with GradientProbe(model, capture_every=1, activation_every=1 << 30) as probe:
        probe.flat = buffer
        records = probed_steps(probe, model, random_batches(4, 10, 32), flat=buffer)
    reference = _model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    for record, (x, y) in zip(records, random_batches(4, 10, 32), strict=True):
        loss = nn.functional.mse_loss(reference(x), y)
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad.reshape(-1) for p in reference.parameters()]
        norm = torch.linalg.vector_norm(torch.cat(grads))
        assert record.loss == pytest.approx(loss.item(), rel=1e-6)
        assert record.grad_norm == pytest.approx(float(norm), rel=1e-5)
        optimizer.step()


def _plain_lane_step():
    # A Trainer of the regression model, its lane, and a loss after backward.
    from engine.presets import PRESETS
    from engine.trainer import Trainer

    trainer = Trainer(PRESETS["standardized"].config.replace(device="cpu"))
    x, y = trainer.batches.X[:32], trainer.batches.y[:32]
    loss = trainer.loss_fn(trainer.model(x), y)
    trainer.flat.zero()
    loss.backward()
    return trainer, trainer._lane, loss


@pytest.mark.parametrize("kind", ["module", "ctypes"])
def test_a_plain_step_s_record_is_plain_step_record_s_either_way(kind, monkeypatch):
    import engine.native_stats as native

    if kind == "ctypes":
        monkeypatch.setenv("GRADTUI_NATIVE", "ctypes")
        monkeypatch.setattr(native, "_kernel", None)
    if getattr(sweep_kernel(), "kind", None) != kind:
        pytest.skip(f"no {kind} kernel here")
    from engine import plain_lane

    trainer, lane, loss = _plain_lane_step()
    assert lane.recorded is (kind == "module")
    read = lane.read(loss, 7, 3)
    made = read if lane.recorded else lane.record(7, 3, read)
    flat = trainer.flat
    blank = trainer.probe.blank_layers
    want = plain_step_record(blank, 7, 3, plain_lane._read(flat, flat._square_sum, loss))
    assert list(vars(made)) == list(vars(want))
    for field, value in vars(want).items():
        assert getattr(made, field) == value, field  # the norm too, bit for bit
        assert type(getattr(made, field)) is type(value), field
    assert made.layers is blank
    norm = math.sqrt(sum(float(p.grad.double().square().sum()) for p in flat.params))
    assert made.grad_norm == pytest.approx(norm, rel=1e-12)


@needs_module
def test_a_plain_step_made_in_c_leaves_the_lane_where_it_must():
    trainer, lane, loss = _plain_lane_step()
    assert lane.read(torch.tensor(math.nan), 0, 0) is None
    assert lane.read(torch.tensor(-math.inf), 0, 0) is None
    trainer.flat.params[1].grad[0] = 1e30  # a view of the buffer: squares past float32's range
    assert lane.read(loss, 0, 0) is None
    trainer.flat.params[1].grad[0] = math.nan
    assert lane.read(loss, 0, 0) is None
    trainer.flat.params[1].grad[0] = 0.0
    assert lane.read(loss, 0, 0) is not None
    trainer.flat.params[0].grad = trainer.flat.params[0].grad.clone()  # let go of the buffer
    assert lane.read(loss, 0, 0) is None
    state, where, spec = lane.read.args
    with pytest.raises(TypeError):
        lane.read.func(state, where[:2], spec, loss, 0, 0)
    with pytest.raises(TypeError):  # a class whose objects cannot be made
        lane.read.func(state, where, (type(iter([])), spec[1]), loss, 0, 0)


@needs_module
def test_the_trainer_s_plain_steps_are_recorded_in_c():
    from engine.presets import PRESETS
    from engine.trainer import Trainer

    config = PRESETS["standardized"].config.replace(
        device="cpu", sampling="exact", capture_every=4, activation_every=9
    )
    trainer = Trainer(config)
    made = []
    real = trainer._lane.read

    def counted(loss, step, epoch):
        record = real(loss, step, epoch)
        made.append(type(record) is StepRecord)
        return record

    trainer._lane.read = counted
    records = [trainer.step() for _ in range(60)]  # 32 steps an epoch: two epochs
    plain = [r for r in records if not (r.captured or r.activations_captured)]
    assert len(made) == len(plain) >= 40 and all(made)
    assert [r.step for r in records] == list(range(60))
    assert {r.epoch for r in plain} == {0, 1}
    assert all(r.epoch == r.step // 32 for r in records)
    assert all(r.layers is trainer.probe.blank_layers for r in plain)


@pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")
def test_a_probe_s_plain_step_gets_the_epoch_end_step_is_given():
    def norms(step):
        return torch.tensor([3.0]) if step == 3 else None

    records = _probed(epoch=lambda step: step + 2, extra=norms, capture_every=1 << 30)
    assert [(r.step, r.epoch, r.captured) for r in records[1:]] == [
        (1, 3, False),
        (2, 4, False),
        (3, 5, False),
        (4, 6, False),
    ]
    assert records[3].timestep_grad_norms == (3.0,) and records[2].timestep_grad_norms is None

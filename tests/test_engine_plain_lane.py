"""The Trainer's lane for plain steps (engine.plain_lane) against the probe's general path."""

from __future__ import annotations

import dataclasses
import math

import pytest

from engine.native_stats import sweep_kernel
from engine.plain_lane import PlainLane
from engine.presets import PRESETS
from engine.trainer import Trainer

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _records(config, lane: bool, steps: int, before_step=None) -> tuple[Trainer, list]:
    trainer = Trainer(config)
    if not lane:  # the Trainer's lane and the probe's own use of it (GradientProbe._plain)
        trainer._lane = None
        trainer.probe._plain = None
    records = []
    for _ in range(steps):
        if before_step is not None:
            before_step(trainer)
        records.append(trainer.step())
    return trainer, records


def _config(preset: str, **changes):
    # Captures on fixed periods, so both trainers capture the same steps.
    return PRESETS[preset].config.replace(
        device="cpu", sampling="exact", capture_every=4, activation_every=9, **changes
    )


@needs_kernel
@pytest.mark.parametrize("preset", ["standardized", "sigmoid-normal"])
def test_a_plain_step_s_record_is_the_general_path_s(preset):
    config = _config(preset)
    lane_trainer, with_lane = _records(config, lane=True, steps=20)
    assert lane_trainer._lane is not None
    _, without = _records(config, lane=False, steps=20)
    plain = [r for r in with_lane if not (r.captured or r.activations_captured)]
    assert len(plain) >= 10
    for a, b in zip(with_lane, without, strict=True):
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            assert _same(x, y), (a.step, field.name, x, y)


@needs_kernel
def test_a_non_finite_step_leaves_the_lane_and_is_captured_in_full():
    trainer, records = _records(
        PRESETS["exploding"].config.replace(device="cpu", sampling="exact", capture_every=1000),
        lane=True,
        steps=12,
    )
    assert trainer._lane is not None
    broken = [r for r in records if not (math.isfinite(r.loss) and math.isfinite(r.grad_norm))]
    assert broken, "the exploding preset went non-finite within 12 steps"
    first = broken[0]
    assert first.captured  # its statistics, whatever the policy said
    assert any(s.grad_mean is not None for s in first.layers.values())
    assert trainer.first_nonfinite is not None and trainer.first_nonfinite.step == first.step


@needs_kernel
def test_gradients_let_go_of_the_buffer_send_the_step_the_general_way():
    # A caller zeroing with set_to_none between steps: the lane sees the first
    # gradient is no longer the buffer's view and leaves; records stay right.
    def let_go(trainer):
        trainer.optimizer.zero_grad(set_to_none=True)

    config = _config("standardized")
    _, odd = _records(config, lane=True, steps=6, before_step=let_go)
    _, plain = _records(config, lane=False, steps=6)
    assert [r.loss for r in odd] == [r.loss for r in plain]
    assert [r.grad_norm for r in odd] == [r.grad_norm for r in plain]


@pytest.mark.parametrize(
    "preset",
    [
        "clip-norm",  # clipping changes the gradients
        "clip-hook",  # the raw gradient is kept aside by a hook
        "rnn-exploding",  # per-time-step norms ride on every record
    ],
)
def test_the_lane_is_not_taken_where_the_general_path_must_run(preset):
    trainer = Trainer(_config(preset))
    assert trainer._lane is None
    records = [trainer.step() for _ in range(3)]  # and the steps still train
    assert all(math.isfinite(r.loss) for r in records)


@needs_kernel
def test_no_lane_where_the_buffer_s_device_is_not_read_eagerly():
    # A GPU's buffer: its sentinels are packed and read once (engine.sentinels).
    trainer = Trainer(_config("standardized"))
    assert PlainLane.for_probe(trainer.probe, set(), None) is None
    assert PlainLane.for_probe(trainer.probe, {"cpu"}, None) is not None


def test_without_the_kernel_there_is_no_lane(monkeypatch):
    import engine.native_stats as native

    monkeypatch.setattr(native, "_kernel", False)
    trainer = Trainer(_config("standardized"))
    assert trainer._lane is None
    for _ in range(3):
        record = trainer.step()
    assert math.isfinite(record.loss) and math.isfinite(record.grad_norm)


def test_a_plain_record_in_one_frame_is_new_step_record_s_to_its_key_order():
    # plain_step_record spells out new_step_record's fields for a plain step:
    # the same record, instance dict included (exports and copies read it).
    from engine.recording import blank_layers, new_step_record, plain_step_record

    layers = blank_layers(["fc1", "fc2"])
    for timesteps in (None, (0.5, 0.25)):
        one = plain_step_record(layers, 7, 2, (0.5, 1.25), timesteps)
        other = new_step_record(7, 2, 0.5, 1.25, 1.25, None, layers, None, timesteps, False, False)
        assert one == other
        assert list(vars(one).items()) == list(vars(other).items())

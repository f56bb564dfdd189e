"""The Trainer's lane for a GPU's plain steps (engine.plain_lane.ReplayLane), emulated on the CPU.

The device path runs on the CPU with `EAGER_DEVICES` emptied and no flat
buffer, as on a GPU; a stand-in for the CUDA capture "replays" the sentinel
reductions over each step's tensors (the CPU's allocator seldom puts a
tensor back where it was, so every step's tensors are said to lie where the
last step's did). Its records must be the probe's general path's.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

import engine.flat_grads as flat_module
import engine.probe as probe_module
from engine.graphed_sentinels import GraphedSentinels, _loss_and_total
from engine.plain_lane import ReplayLane
from engine.presets import PRESETS
from engine.trainer import Trainer


class Placed:
    """A stand-in tensor: only where it lies."""

    def __init__(self, address: int) -> None:
        self.address = address

    def data_ptr(self) -> int:
        return self.address


class StandInSentinels(GraphedSentinels):
    """GraphedSentinels whose "graph" computes, at replay, the step's own [loss, norm]."""

    def __init__(self) -> None:
        self.now = None
        super().__init__(self._capture_stand_in)

    def _capture_stand_in(self, grads, loss):
        graphs = self

        class Graph:
            def replay(self) -> None:
                out.copy_(_loss_and_total(*graphs.now))

        out = _loss_and_total(*self.now).clone()
        return Graph(), out

    def packed(self, grads, loss):
        self.now = (grads, loss)
        return super().packed([Placed(k) for k in range(len(grads))], Placed(-1))


@pytest.fixture
def gpu_shaped(monkeypatch):
    """The Trainer as on a GPU: the device path, no flat buffer, graphed sentinels."""
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    monkeypatch.setattr(probe_module, "graphable", lambda params: True)
    monkeypatch.setattr(probe_module, "GraphedSentinels", StandInSentinels)
    monkeypatch.setattr(flat_module.FlatGradients, "suits", staticmethod(lambda params: False))


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _records(config, lane: bool, steps: int) -> tuple[Trainer, list]:
    trainer = Trainer(config)
    if not lane:
        trainer._lane = None
    try:
        return trainer, [trainer.step() for _ in range(steps)]
    finally:
        trainer.close()


def _config(preset: str, **changes):
    # Captures on fixed periods, so both trainers capture the same steps.
    return PRESETS[preset].config.replace(
        device="cpu", sampling="exact", capture_every=4, activation_every=9, **changes
    )


@pytest.mark.parametrize("preset", ["sigmoid-normal", "standardized"])
def test_a_plain_step_s_record_is_the_general_path_s(gpu_shaped, preset):
    config = _config(preset)
    lane_trainer, with_lane = _records(config, lane=True, steps=20)
    assert type(lane_trainer._lane) is ReplayLane
    assert lane_trainer.probe.sentinel_graphs.replays >= 10  # the lane's plain steps replayed
    _, without = _records(config, lane=False, steps=20)
    assert sum(not (r.captured or r.activations_captured) for r in with_lane) >= 10
    for a, b in zip(with_lane, without, strict=True):
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(x, float) and field.name in ("loss", "grad_norm", "grad_norm_clipped"):
                assert y == pytest.approx(x, rel=1e-5, nan_ok=True), (a.step, field.name)
            elif field.name != "layers" or not a.captured:
                assert _same(x, y), (a.step, field.name, x, y)


def test_a_step_that_breaks_is_recorded_as_is_and_found(gpu_shaped):
    config = PRESETS["exploding"].config.replace(
        device="cpu", sampling="exact", capture_every=1000, activation_every=1000
    )
    lane_trainer, with_lane = _records(config, lane=True, steps=13)
    general, without = _records(config, lane=False, steps=13)
    assert type(lane_trainer._lane) is ReplayLane
    found = lane_trainer.first_nonfinite
    assert found is not None and found == general.first_nonfinite
    broken = with_lane[found.step]
    assert not (math.isfinite(broken.loss) and math.isfinite(broken.grad_norm))
    assert not broken.captured  # as the general GPU path records it
    for a, b in zip(with_lane, without, strict=True):
        assert _same(a.loss, b.loss) or a.loss == pytest.approx(b.loss, rel=1e-5)


def test_the_lane_is_not_taken_where_the_general_path_must_be(gpu_shaped):
    for preset in ("clip-norm", "rnn-exploding"):  # the norm as a tensor; time-step norms
        trainer = Trainer(PRESETS[preset].config.replace(device="cpu"))
        try:
            assert trainer._lane is None, preset
        finally:
            trainer.close()


def test_a_missing_gradient_leaves_the_lane(gpu_shaped):
    trainer = Trainer(_config("sigmoid-normal"))
    try:
        trainer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        assert trainer._lane.read(None) is None
    finally:
        trainer.close()


def test_the_gpu_shaped_trainer_records_and_exports_what_the_cpu_path_does(tmp_path, monkeypatch):
    # End to end: every statistic the CPU path captures is in the GPU path's
    # records (compact or not), to float32 tolerance, and the JSONL has them.
    import json

    from engine.export import RecordWriter

    config = _config("sigmoid-normal")
    _, cpu = _records(config, lane=True, steps=30)
    with monkeypatch.context() as patch:  # the gpu_shaped fixture's, after the CPU's run
        patch.setattr(probe_module, "EAGER_DEVICES", set())
        patch.setattr(probe_module, "graphable", lambda params: True)
        patch.setattr(probe_module, "GraphedSentinels", StandInSentinels)
        patch.setattr(flat_module.FlatGradients, "suits", staticmethod(lambda params: False))
        _, gpu = _records(config, lane=True, steps=30)
    writer = RecordWriter(str(tmp_path / "run.jsonl"))
    for record in gpu:
        writer.write(record)
    writer.commit()
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(lines) == 30
    for a, b, line in zip(cpu, gpu, lines, strict=True):
        assert (a.captured, a.activations_captured) == (b.captured, b.activations_captured)
        for name, stats in a.layers.items():
            for field, value in stats.as_dict().items():
                assert getattr(b.layers[name], field) == pytest.approx(value, rel=1e-4, abs=1e-9)
                assert field in line["layers"][name], (a.step, name, field)

"""A GradientProbe's plain steps in a user's loop, through the flat buffer's lane (engine.plain_lane).

The reference is the probe's general sentinel path (engine.sentinels), taken
with the lane turned off: every field of every record must be the same.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.plain_lane as plain_lane
import engine.probe as probe_module
from engine.clipping import make_clip
from engine.flat_grads import FlatGradients
from engine.native_stats import sweep_kernel
from engine.probe import GradientProbe

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")
NEVER = 1 << 62


def _model() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(10, 15), nn.ReLU(), nn.Linear(15, 1))


def _run(lane: bool, steps: int = 12, capture_every: int = 5, after_backward=None, **probe):
    model = _model()
    flat = FlatGradients([p for p in model.parameters() if p.requires_grad])
    with GradientProbe(model, capture_every=capture_every, activation_every=NEVER,
                       **probe) as watcher:  # fmt: skip
        watcher.flat = flat
        if not lane:
            watcher._plain = None  # the general sentinel path
        records = probed_steps(watcher, model, random_batches(steps, 10, 32), flat,
                               after_backward)  # fmt: skip
    return watcher, records


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.fixture
def reads(monkeypatch):
    """How many of the steps the lane read (a non-None PlainLane.read)."""
    taken = []
    real_init = plain_lane.PlainLane.__init__

    def init(lane, probe, flat):  # each lane's `read` (a callable it keeps) watched
        real_init(lane, probe, flat)
        real = lane.read

        def spy(loss, step, epoch):
            read = real(loss, step, epoch)
            taken.append(read is not None)
            return read

        lane.read = spy

    monkeypatch.setattr(plain_lane.PlainLane, "__init__", init)
    return taken


@needs_kernel
def test_a_plain_step_s_record_is_the_general_path_s(reads):
    _, with_lane = _run(lane=True)
    assert reads.count(True) == 9  # 12 steps, statistics on steps 0, 5 and 10
    _, without = _run(lane=False)
    assert len(reads) == 9  # the general path asked no lane
    for a, b in zip(with_lane, without, strict=True):
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            assert _same(x, y), (a.step, field.name, x, y)
    assert not with_lane[1].captured and with_lane[1].grad_norm > 0


@needs_kernel
def test_a_non_finite_gradient_leaves_the_lane_and_is_captured_in_full(reads):
    model = _model()

    def poison(step):
        if step == 3:
            model[0].weight.grad[0, 0] = math.inf

    flat = FlatGradients(list(model.parameters()))
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as watcher:
        watcher.flat = flat
        records = probed_steps(watcher, model, random_batches(5, 10, 32), flat, poison)
    broken = records[3]
    assert broken.captured and broken.grad_norm == math.inf
    assert broken.layers["0"].grad_nonfinite == 1
    # Step 0 captures everything; steps 1 and 2 are the lane's; the step after
    # the inf trains on inf weights and leaves the lane too.
    assert reads == [True, True, False, False]
    assert not records[2].captured and math.isfinite(records[2].grad_norm)


@needs_kernel
def test_a_clip_or_buffer_replaced_mid_run_is_followed_on_the_next_plain_step(reads):
    model = _model()
    flat = FlatGradients(list(model.parameters()))
    batches = random_batches(4, 10, 32)
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as watcher:
        watcher.flat = flat
        first = probed_steps(watcher, model, batches[:2], flat)
        watcher.clip.close()
        watcher.clip = make_clip("norm", max_norm=1e-4)
        watcher.clip.attach(watcher.params)
        clipped = probed_steps(watcher, model, batches[2:], flat)
    assert all(r.grad_norm_clipped == r.grad_norm for r in first)
    assert all(r.grad_norm_clipped == pytest.approx(1e-4, rel=1e-3) for r in clipped)
    assert all(r.grad_norm > 1e-3 for r in clipped)
    # Each run's step 0 captures everything; the norm clip's plain step went the general way.
    assert reads == [True]


@needs_kernel
def test_an_rnn_s_time_step_norms_ride_on_a_plain_step_s_record(reads):
    model = _model()
    flat = FlatGradients(list(model.parameters()))
    x, y = random_batches(1, 10, 32)[0]
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as watcher:
        watcher.flat = flat
        watcher.begin_step(1)
        loss = nn.functional.mse_loss(model(x), y)
        flat.zero()
        loss.backward()
        watcher.after_backward(loss)
        record = watcher.end_step(loss, 0, extra=torch.tensor([0.5, 2.0, math.nan]))
    assert reads == [True]
    assert record.timestep_grad_norms[:2] == (0.5, 2.0)
    assert math.isnan(record.timestep_grad_norms[2])


@needs_kernel
def test_where_the_buffer_is_not_read_eagerly_the_lane_is_not_taken(monkeypatch, reads):
    # Tests empty EAGER_DEVICES to run a GPU's path on the CPU: packed sentinels, one read.
    monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())
    _, records = _run(lane=True, steps=4, capture_every=NEVER)
    assert reads == []
    assert all(math.isfinite(r.grad_norm) for r in records)
    assert not any(r.captured for r in records[1:])  # step 0 captures everything


@needs_kernel
def test_a_buffer_let_go_or_devices_changed_mid_run_leave_the_lane(monkeypatch, reads):
    model = _model()
    flat = FlatGradients(list(model.parameters()))
    batches = random_batches(2, 10, 32)
    with GradientProbe(model, capture_every=NEVER, activation_every=NEVER) as watcher:
        watcher.flat = flat
        probed_steps(watcher, model, batches, flat)  # step 1 builds the lane and takes it
        monkeypatch.setattr(probe_module, "EAGER_DEVICES", set())  # read once, as on a GPU
        after = probed_steps(watcher, model, batches, flat)
        monkeypatch.setattr(probe_module, "EAGER_DEVICES", {"cpu"})
        watcher.flat = None  # the loop zeroes with zero_grad() from here
        unbuffered = probed_steps(watcher, model, batches)
    assert reads == [True]
    assert math.isfinite(after[1].grad_norm) and math.isfinite(unbuffered[1].grad_norm)
    assert not (after[1].captured or unbuffered[1].captured)


@needs_kernel
def test_a_probe_that_took_the_lane_is_freed_with_its_last_reference(reads):
    import gc
    import weakref

    model = _model()
    flat = FlatGradients(list(model.parameters()))
    watcher = GradientProbe(model, capture_every=NEVER, activation_every=NEVER).__enter__()
    watcher.flat = flat
    probed_steps(watcher, model, random_batches(3, 10, 32), flat)
    watcher.close()
    assert reads == [True, True]
    gone = [weakref.ref(model), weakref.ref(watcher)]
    was_enabled = gc.isenabled()
    gc.disable()  # freed by reference counts alone, not by the cycle collector
    try:
        del model, flat, watcher
        assert [ref() is None for ref in gone] == [True, True]
    finally:
        if was_enabled:
            gc.enable()

"""A statistics step kept compact (engine.compact_stats) says what the eager path says."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

import engine.probe as probe_module
from engine.compact_stats import CompactLayers
from engine.flat_grads import FlatGradients
from engine.history import History
from engine.native_stats import TensorSweep, sweep_kernel
from engine.probe import GradientProbe
from engine.records import LAYER_STATS, LayerStats

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(10, 15), nn.Sigmoid(), nn.Linear(15, 4), nn.Tanh(), nn.Linear(4, 1)
    )


def _records(
    monkeypatch, compact: bool, poison_step: int | None = None, shift: float = 0.0, change=None
):
    # Statistics every step (activations on step 0 only), through a flat buffer.
    # `change(step, model, probe)` runs after backward, before the probe.
    if not compact:
        monkeypatch.setattr(probe_module, "compact_found", lambda *args: None)
    model = _model()
    params = list(model.parameters())
    buffer = FlatGradients(params)

    def poison(step: int) -> None:
        if step == poison_step:
            model[2].weight.grad[1, 3] = float("inf")
        if shift:  # a gradient whose mean dwarfs its spread
            model[4].weight.grad.add_(shift)
        if change is not None:
            change(step, model, probe)

    with GradientProbe(model, capture_every=1, activation_every=1 << 30, lr=0.05) as probe:
        probe.flat = buffer
        batches = random_batches(6, 10, 32)
        records = probed_steps(probe, model, batches, flat=buffer, after_backward=poison)
    monkeypatch.undo()
    return records


def _same(a, b, rel: float = 0.0) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(b):
        return math.isnan(a)
    return a == b if rel == 0.0 else a == pytest.approx(b, rel=rel, abs=1e-12)


@needs_kernel
@pytest.mark.parametrize("shift", [0.0, 1e3])
def test_a_compact_step_s_record_is_the_eager_record(monkeypatch, shift):
    compact = _records(monkeypatch, True, shift=shift)
    eager = _records(monkeypatch, False, shift=shift)
    kinds = [type(r.layers) is CompactLayers for r in compact]
    assert kinds == [False] + [True] * 5  # step 0 captures activations: the eager path
    for a, b in zip(compact, eager, strict=True):
        for field in ("step", "loss", "clipped_frac", "captured"):
            assert _same(getattr(a, field), getattr(b, field)), field
        for field in ("grad_norm", "grad_norm_clipped"):  # math.hypot against fsum: an ulp
            assert _same(getattr(a, field), getattr(b, field), 1e-15), field
        assert a.histograms is b.histograms is None or a.step == 0
        assert list(a.layers) == list(b.layers)
        for name in b.layers:
            for field, want in dataclasses.asdict(b.layers[name]).items():
                # Only the std is computed otherwise (squared deviations about the
                # mean); where the mean dwarfs the spread, the eager path's mean
                # comes from float32 deviations (engine.stats.exact_moments).
                moment = field.endswith("grad_std") or (shift and field.endswith("grad_mean"))
                rel = 1e-5 if moment else 0.0
                assert _same(getattr(a.layers[name], field), want, rel), (a.step, name, field)


@needs_kernel
def test_the_sweep_s_squared_deviations_hold_where_the_mean_dwarfs_the_spread():
    torch.manual_seed(0)
    tensors = [torch.full((15, 4), 1e3) + 1e-3 * torch.randn(15, 4), torch.randn(7)]
    values = TensorSweep.build(tensors, centred=1).flat()  # 5 rows of 2
    exact = float(tensors[0].double().std())
    assert math.sqrt(values[8] / 59) == pytest.approx(exact, rel=1e-9)
    assert values[9] == 0.0  # past `centred`: not computed


@needs_kernel
def test_a_non_finite_step_goes_the_eager_way_and_counts(monkeypatch):
    records = _records(monkeypatch, True, poison_step=2)
    broken = records[2]
    assert type(broken.layers) is not CompactLayers
    assert broken.layers["2"].grad_nonfinite == 1.0
    assert broken.grad_norm == math.inf
    assert type(records[1].layers) is CompactLayers


@needs_kernel
def test_a_weight_given_new_storage_between_steps_is_read_where_it_is_now(monkeypatch):
    # From step 2 on the probe's lane reads the sweep (compact_lane). A weight
    # moved after step 2's optimizer step is found moved after step 3's backward.
    seen = {}  # the model of the run under way, and the step it is on

    def keep(step, model, probe):  # after each backward
        seen["model"], seen["step"] = model, step

    def move_after_step_2(optimizer, args, kwargs):
        if seen["step"] == 2:
            layer = seen["model"][2]
            layer.weight.data = layer.weight.data * 3

    handle = register_optimizer_step_post_hook(move_after_step_2)
    try:
        compact = _records(monkeypatch, True, change=keep)
        eager = _records(monkeypatch, False, change=keep)
    finally:
        handle.remove()
    assert [type(r.layers) is CompactLayers for r in compact] == [False] + [True] * 5
    for a, b in zip(compact, eager, strict=True):
        for name in b.layers:
            want = b.layers[name].update_ratio
            assert a.layers[name].update_ratio == pytest.approx(want, rel=1e-6), (a.step, name)
    assert compact[3].layers["2"].update_ratio < compact[2].layers["2"].update_ratio / 2


@needs_kernel
def test_a_weight_given_new_storage_mid_step_is_read_where_it_is_on_that_step(monkeypatch):
    # Moved after step 3's backward, before the probe: the lane finds the
    # weight moved and gives the step to compact_found, which sweeps it where
    # it is now. The step still comes out compact, with the eager numbers.
    def move(step, model, probe):
        if step == 3:
            model[2].weight.data = model[2].weight.data * 3

    compact = _records(monkeypatch, True, change=move)
    eager = _records(monkeypatch, False, change=move)
    assert [type(r.layers) is CompactLayers for r in compact] == [False] + [True] * 5
    for a, b in zip(compact, eager, strict=True):
        for name in b.layers:
            want = b.layers[name].update_ratio
            assert a.layers[name].update_ratio == pytest.approx(want, rel=1e-6), (a.step, name)
    assert compact[3].layers["2"].update_ratio < compact[2].layers["2"].update_ratio / 2


@needs_kernel
def test_a_buffer_or_clip_replaced_mid_run_ends_the_compact_steps(monkeypatch):
    from engine.clipping import make_clip

    def replace_buffer(step, model, probe):
        if step == 3:
            probe.flat = None

    def replace_clip(step, model, probe):
        if step == 3:
            probe.clip = make_clip("value", clip_value=1e-4)
            probe.clip.attach(probe.params)

    for change in (replace_buffer, replace_clip):
        records = _records(monkeypatch, True, change=change)
        kinds = [type(r.layers) is CompactLayers for r in records]
        assert kinds == [False, True, True, False, False, False], change.__name__
    clipped = records[4]
    assert clipped.clipped_frac > 0 and clipped.grad_norm_clipped < clipped.grad_norm


@needs_kernel
def test_a_gradient_swapped_out_of_the_buffer_takes_the_eager_path(monkeypatch):
    def swap(step, model, probe):
        if step == 3:  # the buffer no longer holds the first gradient (FlatGradients.attached)
            model[0].weight.grad = model[0].weight.grad.clone()

    compact = _records(monkeypatch, True, change=swap)
    eager = _records(monkeypatch, False, change=swap)
    kinds = [type(r.layers) is CompactLayers for r in compact]
    assert kinds == [False, True, True, False, True, True]  # zero() re-attaches it
    for a, b in zip(compact, eager, strict=True):
        assert a.loss == b.loss
        assert a.layers["0"].grad_norm == pytest.approx(b.layers["0"].grad_norm, rel=1e-6)


@needs_kernel
def test_compact_layers_are_a_read_only_mapping_of_layer_stats(monkeypatch):
    record = _records(monkeypatch, True)[1]
    layers = record.layers
    assert len(layers) == 3 and list(layers) == ["0", "2", "4"]
    assert all(isinstance(v, LayerStats) for v in layers.values())
    assert layers["2"] is layers["2"]  # built once
    assert layers == dict(layers) and "9" not in layers
    assert layers.get("9") is None
    with pytest.raises(KeyError):
        layers["9"]
    with pytest.raises(TypeError):
        layers["0"] = LayerStats()
    assert "CompactLayers" in repr(layers) and "grad_std" in repr(layers)
    assert dataclasses.replace(record, step=99).layers is layers


def test_without_the_kernel_statistics_steps_take_the_eager_path(monkeypatch):
    import engine.native_stats as native

    monkeypatch.setattr(native, "_kernel", False)
    model = _model()
    params = list(model.parameters())
    buffer = FlatGradients(params)
    with GradientProbe(model, capture_every=1, activation_every=1 << 30) as probe:
        probe.flat = buffer
        records = probed_steps(probe, model, random_batches(3, 10, 8), flat=buffer)
    assert all(type(r.layers) is dict for r in records)
    assert all(r.layers["0"].grad_std is not None for r in records)


@needs_kernel
def test_a_history_row_of_a_compact_step_is_the_eager_step_s_row(monkeypatch):
    compact, eager = _records(monkeypatch, True), _records(monkeypatch, False)
    histories = []
    for records in (compact, eager):
        history = History()
        for record in records:
            history.append(record)
        histories.append(history)
    assert histories[0].columns == histories[1].columns
    for column in histories[1].columns:
        a, b = histories[0].series(column), histories[1].series(column)
        assert list(a.steps) == list(b.steps), column  # present on the same steps
        rel = 1e-5 if column.endswith("_std") else 1e-15
        assert a.values == pytest.approx(b.values, rel=rel, nan_ok=True), column
    # the row is what the layers' objects say
    layers = compact[1].layers
    row = layers.columns()
    for j, name in enumerate(layers):
        want = dataclasses.astuple(layers[name])
        assert tuple(row[j * len(LAYER_STATS) : (j + 1) * len(LAYER_STATS)]) == want


def _with_lr_then_without(steps_with: int, steps_without: int) -> tuple[list, list]:
    # Statistics every step through a flat buffer; the probe's lr is dropped
    # midway (a loop that leaves the update ratio out from there on).
    model = _model()
    buffer = FlatGradients(list(model.parameters()))
    with GradientProbe(model, capture_every=1, activation_every=1 << 30, lr=0.05) as probe:
        probe.flat = buffer
        first = probed_steps(probe, model, random_batches(steps_with, 10, 8), flat=buffer)
        probe.lr = None
        then = probed_steps(probe, model, random_batches(steps_without, 10, 8), flat=buffer)
    return first, then


@needs_kernel
def test_a_compact_step_s_update_ratio_uses_the_probe_s_learning_rate_of_the_moment():
    _, records = _with_lr_then_without(0, 3)
    assert type(records[1].layers) is CompactLayers
    assert all(stats.update_ratio is None for stats in records[1].layers.values())
    assert all(value is None for value in records[1].layers.columns()[14::16])


@needs_kernel
def test_history_keeps_a_compact_step_s_update_ratio_only_where_it_was_taken():
    # History marks a compact row's measured columns by the row's kind (with
    # an lr or without): a ratio left out is missing there, not NaN.
    first, then = _with_lr_then_without(3, 3)
    history = History()
    for step, record in enumerate(first + then):  # each loop's step 0 takes the activations
        assert step in (0, 3) or type(record.layers) is CompactLayers
        history.append(dataclasses.replace(record, step=step))
    assert list(history.series("2.update_ratio").steps) == [0, 1, 2]
    assert list(history.series("2.grad_std").steps) == [0, 1, 2, 3, 4, 5]
    assert list(history.series("2.weight_mean").steps) == [0, 3]


@needs_kernel
def test_an_rnn_s_compact_steps_carry_its_time_step_norms(monkeypatch):
    from engine.presets import PRESETS
    from engine.trainer import Trainer

    config = PRESETS["rnn-exploding"].config.replace(
        device="cpu", sampling="exact", capture_every=1, activation_every=1 << 30, epochs=1
    )

    def records(compact: bool) -> list:
        if not compact:
            monkeypatch.setattr(probe_module, "compact_found", lambda *args: None)
        trainer = Trainer(config)
        out = [trainer.step() for _ in range(4)]
        monkeypatch.undo()
        return out

    kept, eager = records(True), records(False)
    assert _kept_compact(kept)
    for a, b in zip(kept, eager, strict=True):
        assert a.timestep_grad_norms is not None
        assert a.timestep_grad_norms == b.timestep_grad_norms
        assert (a.loss, a.step, a.captured) == (b.loss, b.step, b.captured)


def _kept_compact(records: list) -> bool:
    """Whether the steps after step 0 (activations too) were kept compact."""
    return all(type(r.layers) is CompactLayers for r in records[1:])

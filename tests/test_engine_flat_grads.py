"""The flat gradient buffer (engine.flat_grads) against autograd's own gradients."""

from __future__ import annotations

import math

import pytest
import torch
from probed_loop import probed_steps, random_batches
from torch import nn

from engine.flat_grads import FLAT_BELOW, FlatGradients
from engine.sentinels import CAT_UP_TO, concatenable


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 15), nn.ReLU(), nn.Linear(15, 1))


def _train(flat: bool, steps: int = 5) -> tuple[list[torch.Tensor], list[float]]:
    model = _model()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    buffer = FlatGradients(params) if flat else None
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 10, generator=generator)
        y = torch.randn(32, 1, generator=generator)
        loss = nn.functional.mse_loss(model(x), y)
        if buffer is not None:
            buffer.zero()
        else:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return [p.detach().clone() for p in params], losses


def test_training_through_the_buffer_is_bit_identical():
    weights, losses = _train(flat=True)
    reference_weights, reference_losses = _train(flat=False)
    assert losses == reference_losses
    for w, ref in zip(weights, reference_weights, strict=True):
        assert torch.equal(w, ref)


def test_gradients_are_views_of_the_buffer_and_its_norm_is_the_total():
    model = _model()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model(torch.randn(8, 10)).sum().backward()
    assert flat.intact()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert torch.allclose(flat.norm(), expected)
    assert all(p.grad.data_ptr() == v.data_ptr() for p, v in zip(params, flat.views, strict=True))


def test_zero_reattaches_a_gradient_someone_set_to_none():
    model = _model()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model.zero_grad(set_to_none=True)
    assert not flat.intact()
    flat.zero()
    assert flat.intact() and float(flat.norm()) == 0.0


def test_only_small_uniform_models_get_a_buffer():
    assert FlatGradients.suits(list(_model().parameters()))
    assert not FlatGradients.suits([])
    big = nn.Linear(1024, FLAT_BELOW // 1024 + 1, bias=False)
    assert not FlatGradients.suits(list(big.parameters()))
    mixed = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    assert not FlatGradients.suits(mixed)
    # off the CPU autograd's own gradients are cheaper (one launch fewer per parameter)
    assert not FlatGradients.suits(list(nn.Linear(3, 3, device="meta").parameters()))


def test_a_gpu_sentinel_concatenates_only_alike_gradients_of_bounded_size():
    assert concatenable(list(_model().parameters()))
    assert not concatenable([])
    mixed = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    assert not concatenable(mixed)
    huge = nn.Linear(1024, CAT_UP_TO // 1024 + 1, bias=False, device="meta")
    assert not concatenable(list(huge.parameters()))


@pytest.mark.parametrize("width", [8, 60, 200, 400])  # 2-layer models: 144 to 321k values
def test_zero_and_host_norm_at_every_size(width, stats_kernel):
    # Below and above the dot-product limit and the piecewise-zeroing limit.
    torch.manual_seed(width)
    model = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
    params = list(model.parameters())
    flat = FlatGradients(params)
    for _ in range(2):
        flat.zero()
        assert float(flat.buffer.abs().max()) == 0.0
        model(torch.randn(16, width)).square().mean().backward()
        want = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in params]).double())
        assert flat.host_norm() == pytest.approx(float(want), rel=1e-5)
        assert flat.host_norm() == pytest.approx(float(flat.norm()), rel=1e-5)


def test_host_norm_carries_nan_inf_and_float32_overflow(stats_kernel):
    model = nn.Linear(4, 4)
    flat = FlatGradients(list(model.parameters()))
    flat.zero()
    flat.buffer[2] = 3e20  # finite, but its square is beyond float32: inf, as torch's norm
    assert flat.host_norm() == math.inf == float(flat.norm())
    flat.buffer[2] = 0.0
    flat.buffer[3] = math.inf
    assert flat.host_norm() == math.inf
    flat.buffer[5] = math.nan
    assert math.isnan(flat.host_norm())


def _same(a: float, b: float, rel: float) -> bool:
    if math.isnan(b):
        return math.isnan(a)
    return a == pytest.approx(b, rel=rel, abs=1e-12)


def test_segment_partials_are_torch_s_sums_norms_and_extremes_with_nan_and_inf(stats_kernel):
    model = nn.Sequential(nn.Linear(10, 15), nn.Linear(15, 4), nn.Linear(4, 3), nn.Linear(3, 1))
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model(torch.randn(8, 10)).sum().backward()
    views = flat.views
    views[2][0, 0] = math.nan  # a NaN
    views[4][1, 1] = math.inf  # an inf
    views[5][0] = -math.inf
    views[6][0, 0] = 3e20  # its square overflows float32: torch's own norm answers
    sums, norms, lows, highs = flat.segment_partials()
    for j, g in enumerate(views):
        assert _same(sums[j], float(g.sum()), 1e-5), j
        assert _same(norms[j], float(torch.linalg.vector_norm(g)), 1e-6), j
        low, high = torch.aminmax(g)
        assert _same(lows[j], float(low), 0) and _same(highs[j], float(high), 0), j
    # NaN and inf come through; an overflowed square is whatever torch's own norm says
    assert math.isnan(norms[2]) and norms[4] == math.inf


def test_segment_partials_only_for_cpu_float_buffers_without_empty_parameters(stats_kernel):
    half = [nn.Parameter(torch.zeros(4, dtype=torch.float16))]
    assert FlatGradients(half).segment_partials() is None
    empty = [
        nn.Parameter(torch.zeros(3)),
        nn.Parameter(torch.zeros(0)),
        nn.Parameter(torch.ones(2)),
    ]
    assert FlatGradients(empty).segment_partials() is None


def test_a_probe_through_the_buffer_reads_what_it_reads_without(monkeypatch, stats_kernel):
    from engine.probe import GradientProbe

    def records(flat: bool) -> list:
        model = _model()
        params = list(model.parameters())
        buffer = FlatGradients(params) if flat else None
        with GradientProbe(model, capture_every=1, activation_every=1 << 30, lr=0.05) as probe:
            probe.flat = buffer
            return probed_steps(probe, model, random_batches(4, 10, 32), flat=buffer)

    read, compact = [], []  # what the buffer gave each statistics step, each way
    real, real_compact = FlatGradients.partials_for, FlatGradients.compact_values

    def partials_for(self, params, others=None):
        read.append(real(self, params, others))
        return read[-1]

    def compact_values(self, params, others):
        values = real_compact(self, params, others)
        if values is not None:
            compact.append(values)
        return values

    real_reader, real_recorder = FlatGradients.compact_reader, FlatGradients.compact_recorder

    def compact_reader(self, params, others):  # the probe's lane from step 2 on, through ctypes
        read_now = real_reader(self, params, others)
        if read_now is None:
            return None

        def counted():
            values = read_now()
            if values is not None:
                compact.append(values)
            return values

        return counted

    def compact_recorder(self, params, others, spec):  # the lane in C (the extension module)
        record = real_recorder(self, params, others, spec)
        if record is None:
            return None

        def counted(loss, eager_devices, step):
            made = record(loss, eager_devices, step)
            if made is not None:
                compact.append(made)
            return made

        return counted

    monkeypatch.setattr(FlatGradients, "partials_for", partials_for)
    monkeypatch.setattr(FlatGradients, "compact_values", compact_values)
    monkeypatch.setattr(FlatGradients, "compact_reader", compact_reader)
    monkeypatch.setattr(FlatGradients, "compact_recorder", compact_recorder)
    through, plain = records(True), records(False)
    assert all(r is not None for r in read)
    # Step 0 (activations too) reads the partials; the others, with the C
    # kernel, the compact step's one list (engine.compact_stats).
    native = stats_kernel != "numpy"
    assert (len(read), len(compact)) == ((1, 3) if native else (4, 0))
    # the weights' norms come from the same sweep where the C kernel builds
    assert all((r[4] is not None) == native for r in read)
    for a, b in zip(through, plain, strict=True):
        assert a.captured and b.captured
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-6)
        for name in b.layers:
            la, lb = a.layers[name], b.layers[name]
            for field in ("raw_grad_norm", "raw_grad_mean", "raw_grad_std", "raw_grad_abs_max"):
                assert getattr(la, field) == pytest.approx(getattr(lb, field), rel=1e-5), field
            assert la.grad_nonfinite == lb.grad_nonfinite == 0
            assert la.update_ratio == pytest.approx(lb.update_ratio, rel=1e-6)


def test_the_weights_swept_with_the_gradients_are_read_where_they_are_now(stats_kernel):
    model = _model()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.zero()
    model(torch.randn(8, 10)).sum().backward()
    weights = [model[0].weight, model[2].weight]
    sums, norms, lows, highs, weight_norms = flat.partials_for(params, weights)
    assert (sums, norms, lows, highs) == flat.segment_partials() or stats_kernel == "numpy"
    if stats_kernel == "numpy":  # no joint sweep: the caller reads the weights its own way
        assert weight_norms is None
        return
    want = [float(torch.linalg.vector_norm(w.detach())) for w in weights]
    assert weight_norms == pytest.approx(want, rel=1e-6)
    model[0].weight.data = model[0].weight.data * 3  # new storage
    assert flat.partials_for(params, weights)[4] == pytest.approx([3 * want[0], want[1]], rel=1e-6)


def test_a_statistics_step_read_whole_gives_the_read_queue_s_record(monkeypatch):
    # engine.grad_partials.host_found against the general path (its read queue),
    # step by step, a NaN step included: the same numbers, bit for bit.
    import dataclasses

    import engine.general_step as general_module
    import engine.probe as probe_module
    from engine.probe import GradientProbe

    real = general_module.host_partials
    used = []
    # Statistics steps kept compact (engine.compact_stats) would skip both paths.
    monkeypatch.setattr(probe_module, "compact_found", lambda *args: None)

    def records(whole: bool) -> list:
        def partials(probe, present):
            read = real(probe, present)
            if read is None or whole:
                used.append(whole and read is not None and read[4] is not None)
                return read
            return (*read[:4], None)  # no weight norms: the general path reads them itself

        monkeypatch.setattr(general_module, "host_partials", partials)
        model = _model()
        params = list(model.parameters())
        buffer = FlatGradients(params)

        def poison(step: int) -> None:
            if step == 2:
                model[2].weight.grad[0, 1] = float("nan")

        with GradientProbe(model, capture_every=1, activation_every=1 << 30, lr=0.05) as probe:
            probe.flat = buffer
            batches = random_batches(4, 10, 32)
            return probed_steps(probe, model, batches, flat=buffer, after_backward=poison)

    whole, queued = records(True), records(False)
    if not any(used):
        pytest.skip("no C compiler here: no weight norms from the sweep")

    def same(x, y) -> bool:
        return x == y or (x != x and y != y)  # NaN is NaN here

    for a, b in zip(whole, queued, strict=True):
        assert a.captured and b.captured
        for name in a.layers:
            for field, value in dataclasses.asdict(a.layers[name]).items():
                assert same(value, getattr(b.layers[name], field)), (name, field)
        for field in ("loss", "grad_norm", "grad_norm_clipped", "clipped_frac"):
            assert same(getattr(a, field), getattr(b, field)), field
    assert whole[2].layers["2"].grad_nonfinite == 1.0
    assert math.isnan(whole[2].layers["2"].raw_grad_mean)

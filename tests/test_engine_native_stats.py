"""The C statistics sweep (engine.native_stats) against torch, and its fallbacks."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_builds import each_kind, fussy_compiler
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.native_stats as native
from engine.native_build import python_headers
from engine.native_stats import (
    TensorSweep,
    places,
    square_sum,
    sweep_kernel,
    torch_norms_where_infinite,
)
from engine.probe import INTERLEAVE_ABOVE, GradientProbe

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")


def _same(a: float, b: float, rel: float) -> bool:
    if math.isnan(b):
        return math.isnan(a)
    return a == pytest.approx(b, rel=rel, abs=1e-12)


@needs_kernel
def test_every_tensor_s_sum_norm_and_extremes_are_torch_s():
    torch.manual_seed(0)
    # Lengths around the kernel's 16 lanes, and a mean that dwarfs the spread.
    tensors = [torch.randn(n) * 10 ** (n % 5 - 2) for n in (1, 15, 16, 17, 33, 1000, 4099)]
    tensors.append(0.5 + 1e-4 * torch.randn(100, 100))
    sums, norms, lows, highs = TensorSweep.build(tensors)()
    for j, t in enumerate(tensors):
        # double accumulators: at least as close to the exact sums as torch's float32
        exact = t.double()
        assert sums[j] == pytest.approx(float(exact.sum()), rel=1e-9, abs=1e-12), j
        assert norms[j] == pytest.approx(float(torch.linalg.vector_norm(exact)), rel=1e-9), j
        low, high = torch.aminmax(t)
        assert (lows[j], highs[j]) == (float(low), float(high)), j


@needs_kernel
def test_nan_inf_and_overflow_come_out_as_torch_gives_them():
    tensors = [
        torch.tensor([1.0, math.nan, 2.0] * 7),
        torch.tensor([math.inf] + [1.0] * 20),
        torch.tensor([-math.inf, math.inf]),
        torch.tensor([3e20] + [1.0] * 18),  # its square overflows float32
    ]
    sums, norms, lows, highs = TensorSweep.build(tensors)()
    norms = torch_norms_where_infinite(norms, tensors)
    for j, t in enumerate(tensors):
        low, high = torch.aminmax(t)
        assert _same(sums[j], float(t.sum()), 1e-6), j
        assert _same(norms[j], float(torch.linalg.vector_norm(t)), 0), j
        assert _same(lows[j], float(low), 0) and _same(highs[j], float(high), 0), j
    assert math.isnan(lows[0]) and math.isnan(highs[0])


@needs_kernel
def test_one_nan_anywhere_makes_min_and_max_nan():
    # The kernel tells a NaN by its sum of squares, not element by element:
    # one NaN in any lane or in the tail, beside infinities or not.
    for n in (1, 16, 37):
        for at in range(n):
            for other in (1.0, math.inf, -math.inf):
                t = torch.full((n,), other)
                t[at] = math.nan
                sums, norms, lows, highs = TensorSweep.build([t])()
                assert math.isnan(lows[0]) and math.isnan(highs[0]), (n, at, other)
                assert math.isnan(sums[0]) and math.isnan(norms[0]), (n, at, other)


@needs_kernel
def test_a_square_sum_is_the_exact_one_nan_and_inf_included():
    torch.manual_seed(1)
    for n in (1, 15, 16, 17, 181, 40_000):
        t = torch.randn(n)
        assert square_sum(t)() == pytest.approx(float(t.double().square().sum()), rel=1e-12)
    t = torch.ones(20)
    sums = square_sum(t)
    t[3] = math.inf
    assert sums() == math.inf
    t[4] = math.nan
    assert math.isnan(sums())
    assert square_sum(torch.ones(3, dtype=torch.float64)) is None
    assert square_sum(torch.ones(4, 4).t()) is None


@needs_kernel
def test_the_same_sweep_reads_the_tensors_current_values():
    t = torch.ones(40)
    sweep = TensorSweep.build([t])
    assert sweep()[0] == [40.0]
    t.mul_(2)
    assert sweep()[0] == [80.0] and sweep.places == [(t.data_ptr(), 40)]


def test_no_sweep_for_other_than_contiguous_cpu_float32_or_empty_tensors():
    for tensors in (
        [torch.ones(4, dtype=torch.float64)],
        [torch.ones(4, 4).t()],
        [torch.ones(3), torch.zeros(0)],
        [torch.ones(4, dtype=torch.float16)],
    ):
        assert TensorSweep.build(tensors) is None


def test_turned_off_or_without_a_compiler_there_is_no_kernel_and_no_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADTUI_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_kernel", None)
    monkeypatch.setenv("GRADTUI_NATIVE", "0")
    assert sweep_kernel() is None and TensorSweep.build([torch.ones(3)]) is None
    monkeypatch.setattr(native, "_kernel", None)
    monkeypatch.delenv("GRADTUI_NATIVE")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert sweep_kernel() is None
    assert not list(tmp_path.glob("*.so"))


@needs_kernel
def test_the_build_is_kept_per_cpu_and_used_again(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADTUI_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_kernel", None)
    assert sweep_kernel() is not None
    (built,) = tmp_path.glob("gradtui_*.so")
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(native, "_kernel", None)
    assert sweep_kernel() is not None
    assert built.stat().st_mtime_ns == stamp  # loaded, not built again
    assert not [p for p in tmp_path.iterdir() if p != built]  # no work files left behind


@needs_kernel
def test_the_extension_module_and_ctypes_give_the_same_numbers(monkeypatch, tmp_path):
    # Python's headers give the extension module; GRADTUI_NATIVE=ctypes the library.
    torch.manual_seed(1)
    tensors = [torch.randn(n) for n in (1, 17, 300)] + [torch.tensor([math.nan, 1.0])]
    found = {}
    for kernel in each_kind(monkeypatch, tmp_path):
        values = TensorSweep.build(tensors, centred=2).flat()
        found[kernel.kind] = (values, square_sum(tensors[2])())
    assert "ctypes" in found
    if python_headers() is not None:
        module, library = found["module"], found["ctypes"]
        assert len(module[0]) == 5 * len(tensors) + 1
        assert all(map(_same, module[0], library[0], [0.0] * len(module[0])))
        assert module[1] == library[1]


@needs_kernel
def test_a_sweep_over_many_tensors_is_every_tensor_s_own():
    # Past 64 tensors the extension module's result no longer fits its stack buffer.
    torch.manual_seed(2)
    tensors = [torch.randn(3 + j % 7) for j in range(70)]
    sums, norms, lows, highs = TensorSweep.build(tensors)()
    for j, t in enumerate(tensors):
        assert sums[j] == pytest.approx(float(t.double().sum()), rel=1e-9, abs=1e-12), j
        assert norms[j] == pytest.approx(float(torch.linalg.vector_norm(t.double())), rel=1e-9)
        assert (lows[j], highs[j]) == (float(t.min()), float(t.max())), j


def test_a_malformed_state_is_a_type_error_not_a_crash():
    kernel = sweep_kernel()
    if kernel is None or kernel.kind != "module":
        pytest.skip("no extension module here")
    for state in (b"", b"12345678", bytes(16), bytes(32), "not bytes"):
        with pytest.raises(TypeError):
            kernel._module.flat(state)
    with pytest.raises(TypeError):
        kernel._module.square_sum(bytes(24))  # a state of no tensor


@needs_kernel
def test_a_compiler_that_rejects_march_native_builds_without_it(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", fussy_compiler(tmp_path, "-march=native"))
    monkeypatch.setattr(native, "_kernel", None)
    sums = TensorSweep.build([torch.arange(20.0)])()[0]
    assert sums == [190.0]


@pytest.mark.parametrize("native_sweep", [True, False])
def test_a_large_model_s_statistics_are_the_same_either_way(monkeypatch, native_sweep):
    if native_sweep and sweep_kernel() is None:
        pytest.skip("no C compiler here")
    if not native_sweep:
        monkeypatch.setattr(native, "_kernel", False)
    width = 300  # 300 x 300 > INTERLEAVE_ABOVE: the probe's large-layer path
    assert width * width > INTERLEAVE_ABOVE

    def records() -> list:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, width), nn.Tanh(), nn.Linear(width, width),
                              nn.Tanh(), nn.Linear(width, 1))  # fmt: skip
        with GradientProbe(model, capture_every=1, activation_every=1 << 30, lr=0.05) as probe:
            assert probe.large_layers
            return probed_steps(probe, model, random_batches(3, 10, 32))

    swept = []
    real = native.FreshSweep.__call__

    def counted(sweep, grads):  # the gradients' sweeps only (the weights' norms have their own)
        swept.append(1)
        return real(sweep, grads)

    monkeypatch.setattr(native.FreshSweep, "__call__", counted)
    got = records()
    assert len(swept) == (3 if native_sweep else 0)  # a sweep a statistics step, where built
    monkeypatch.setattr(native, "_kernel", False)  # the reference: torch's reductions
    want = records()
    for a, b in zip(got, want, strict=True):
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-6)
        for name, lb in b.layers.items():
            la = a.layers[name]
            for field in ("raw_grad_norm", "raw_grad_mean", "raw_grad_std", "raw_grad_abs_max"):
                assert getattr(la, field) == pytest.approx(getattr(lb, field), rel=1e-5), field
            assert la.grad_nonfinite == lb.grad_nonfinite == 0
            assert la.update_ratio == pytest.approx(lb.update_ratio, rel=1e-6)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_a_sweep_s_last_number_is_the_sum_of_the_others_and_tells_any_non_finite(threads):
    # The compact lane's one finiteness test (engine.compact_stats).
    torch.manual_seed(4)
    big = 1 << 20 if threads > 1 else 5  # a threaded sweep is a large one
    for poison in (None, math.nan, math.inf, -math.inf):
        tensors = [torch.randn(big), torch.randn(3, 4)]
        if poison is not None:
            tensors[1][1, 2] = poison
        values = sweep_kernel().sweeper(places(tensors), 0, threads)()
        assert len(values) == 5 * len(tensors) + 1
        if poison is None:
            assert values[-1] == pytest.approx(math.fsum(values[:-1]), rel=1e-12)
        else:
            assert not math.isfinite(values[-1])

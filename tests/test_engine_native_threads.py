"""The C sweep's large sweeps on torch's threads (engine.native_source, engine.native_kernel)."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from kernel_builds import each_kind, fussy_compiler
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.native_kernel as native_kernel
import engine.native_stats as native
from engine.native_stats import FLOAT32_MAX, TensorSweep, places, sweep_kernel
from engine.probe import GradientProbe

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")
PARALLEL_ABOVE = 1 << 20  # as in engine.native_source


def _large_tensors() -> list[torch.Tensor]:
    # Over a million elements in all, of lengths that are not whole chunks, with
    # a NaN, an inf and float32-overflowing squares each deep inside a tensor.
    torch.manual_seed(3)
    tensors = [torch.randn(n) * 0.1 for n in (700_003, 300_017, 130_000, 17, 1)]
    tensors.append(torch.randn(200_000) + 5.0)  # a mean far from zero
    nan, inf, huge = torch.randn(150_000), torch.randn(150_000), torch.randn(150_000)
    nan[90_001], inf[70_000], huge[120_000:120_004] = math.nan, -math.inf, 3e38
    tensors += [nan, inf, huge]
    assert sum(t.numel() for t in tensors) > PARALLEL_ABOVE
    return tensors


def _check_against_torch(values: list[float], tensors: list[torch.Tensor]) -> None:
    k = len(tensors)
    for j, t in enumerate(tensors):
        total, norm, low, high, centred = (values[r * k + j] for r in range(5))
        want_sum = float(t.double().sum())
        if math.isnan(want_sum):
            assert math.isnan(total), j
        else:
            assert total == pytest.approx(want_sum, rel=1e-9, abs=1e-9), j
        want_norm = float(torch.linalg.vector_norm(t.double()))
        if math.isnan(want_norm):
            assert math.isnan(norm) and math.isnan(low) and math.isnan(high), j
            continue
        if want_norm**2 > FLOAT32_MAX:  # squares past float32's range: infinite, as torch's
            assert norm == math.inf == float(torch.linalg.vector_norm(t)), j
        else:
            assert norm == pytest.approx(want_norm, rel=1e-12), j
        assert (low, high) == (float(t.min()), float(t.max())), j
        assert centred == 0.0


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_large_sweep_is_torch_s_on_any_number_of_threads(threads):
    tensors = _large_tensors()
    values = sweep_kernel().sweeper(places(tensors), 0, threads)()
    _check_against_torch(values, tensors)


@needs_kernel
def test_a_threaded_sweep_gives_the_same_numbers_whatever_the_thread_count():
    # The chunks' partials are combined in chunk order, not thread order.
    tensors = _large_tensors()
    kernel = sweep_kernel()
    runs = [kernel.sweeper(places(tensors), 0, threads)() for threads in (2, 3, 4)]
    assert all(str(run) == str(runs[0]) for run in runs)


@needs_kernel
def test_centred_sweeps_stay_whole_whatever_the_threads():
    # The second pass needs the whole tensor's mean: such sweeps take one thread.
    tensors = _large_tensors()[:2]
    kernel = sweep_kernel()
    one = kernel.sweeper(places(tensors), 2, 1)()
    assert kernel.sweeper(places(tensors), 2, 4)() == one
    for j, t in enumerate(tensors):
        want = float(((t.double() - t.double().mean()) ** 2).sum())
        assert one[4 * len(tensors) + j] == pytest.approx(want, rel=1e-9)


@needs_kernel
def test_the_extension_module_and_ctypes_agree_on_a_threaded_sweep(monkeypatch, tmp_path):
    tensors = _large_tensors()
    found = {}
    for kernel in each_kind(monkeypatch, tmp_path):
        found[kernel.kind] = str(kernel.sweeper(places(tensors), 0, 2)())
    assert len(set(found.values())) == 1


@needs_kernel
def test_a_sweep_from_another_thread_is_the_same():
    # The dashboard trains in a thread of its own: OpenMP gives it its own workers.
    tensors = _large_tensors()
    sweep = TensorSweep.build(tensors)
    here = sweep.flat()
    there = []
    worker = threading.Thread(target=lambda: there.append(sweep.flat()))
    worker.start()
    worker.join()
    assert str(there[0]) == str(here)


def test_threads_only_beside_the_one_runtime_torch_loaded(monkeypatch):
    torch_s = {"/site-packages/torch/lib/libgomp.so.1"}
    for before, after, threaded in [
        (torch_s, torch_s, True),
        (torch_s, torch_s | {"/usr/lib/libgomp.so.1"}, False),  # a second runtime came in
        (set(), {"/usr/lib/libgomp.so.1"}, False),  # torch had none: a pool of the kernel's own
        (None, None, False),  # no /proc/self/maps: cannot tell
        (torch_s | {"/opt/libiomp5.so"}, torch_s | {"/opt/libiomp5.so"}, False),
    ]:
        monkeypatch.setattr(native_kernel, "openmp_runtimes", lambda after=after: after)
        assert native_kernel._shares_runtime(before) is threaded, (before, after)


@needs_kernel
def test_loading_the_kernel_brings_no_second_openmp_runtime(monkeypatch, tmp_path):
    before = native_kernel.openmp_runtimes()
    if not before:
        pytest.skip("no OpenMP runtime mapped here (or no /proc/self/maps)")
    monkeypatch.setenv("GRADTUI_CACHE", str(tmp_path))
    for choice in ("1", "ctypes"):
        monkeypatch.setenv("GRADTUI_NATIVE", choice)
        kernel = native_kernel.load_kernel()
        assert native_kernel.openmp_runtimes() == before
        assert kernel.threaded == (len(before) == 1 and _built_with_openmp(kernel))


def _built_with_openmp(kernel) -> bool:
    if kernel.kind == "module":
        return kernel._module.openmp()
    return bool(kernel._library.sweep_openmp())


@needs_kernel
def test_a_compiler_without_openmp_builds_a_single_threaded_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", fussy_compiler(tmp_path, "-fopenmp"))
    monkeypatch.setattr(native, "_kernel", None)
    kernel = sweep_kernel()
    assert kernel is not None and not kernel.threaded
    tensors = _large_tensors()
    _check_against_torch(kernel.sweeper(places(tensors), 0, 2)(), tensors)


def test_a_large_cpu_model_s_weight_norms_come_with_the_activations():
    # A million layer weights: a statistics step reads the gradients (on torch's
    # threads where the kernel may) and not the weights; an activation step
    # reads both, and its update ratio is torch's lr * |grad| / |weight|.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 1024), nn.Tanh(), nn.Linear(1024, 1024), nn.Tanh(),
                          nn.Linear(1024, 1))  # fmt: skip
    lr, taken = 0.05, {}

    def keep_reference(step: int) -> None:
        taken[step] = {
            name: lr
            * layer.weight.grad.double().norm().item()
            / layer.weight.double().norm().item()
            for name, layer in (("0", model[0]), ("2", model[2]), ("4", model[4]))
        }

    with GradientProbe(model, capture_every=1, activation_every=3, lr=lr) as probe:
        assert probe.weights_sampled and probe.large_layers
        records = probed_steps(probe, model, random_batches(5, 8, 16), None, keep_reference, lr)
    for record in records:
        for name, stats in record.layers.items():
            assert stats.grad_norm is not None and math.isfinite(stats.grad_std)
            if record.step % 3 == 0:  # activation steps: the weights whole, the update ratio
                assert stats.weight_std is not None
                assert stats.update_ratio == pytest.approx(taken[record.step][name], rel=1e-5)
            else:
                assert stats.update_ratio is None and stats.weight_mean is None, record.step

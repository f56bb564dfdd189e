"""The C sweep built once for a model's parameters and given each step's new gradients.

engine.native_stats.FreshSweep, which a large CPU model's sentinel and
statistics steps call (engine.grad_partials.host_partials). The reference is
plain PyTorch over the same gradients, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from kernel_builds import each_kind
from torch import nn

from engine.native_stats import FreshSweep, sweep_kernel

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")


def _model() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(30, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                         nn.Linear(200, 3))  # fmt: skip


def _backward(model: nn.Module, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)  # autograd's own new tensors, at new addresses
    nn.functional.mse_loss(model(torch.randn(16, 30)), torch.randn(16, 3)).backward()
    return [p.grad for p in model.parameters()]


def _torch_rows(grads: list[torch.Tensor]) -> list[list[float]]:
    exact = [g.double() for g in grads]
    return [
        [float(g.sum()) for g in exact],
        [float(torch.linalg.vector_norm(g)) for g in exact],
        [float(g.min()) for g in grads],
        [float(g.max()) for g in grads],
    ]


def _assert_rows(found: list[list[float]], expected: list[list[float]]) -> None:
    for row, (got, want) in enumerate(zip(found, expected, strict=True)):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), row


@needs_kernel
def test_each_step_s_new_gradients_are_read_as_torch_reads_them(monkeypatch, tmp_path):
    for kernel in each_kind(monkeypatch, tmp_path):  # the extension module, then ctypes
        model = _model()
        sweep = FreshSweep.build(list(model.parameters()))
        assert sweep is not None, kernel.kind
        for seed in range(3):
            grads = _backward(model, seed)
            _assert_rows(sweep(grads), _torch_rows(grads))


@needs_kernel
def test_nan_and_inf_come_through_as_they_are():
    model = _model()
    sweep = FreshSweep.build(list(model.parameters()))
    grads = _backward(model, 0)
    grads[2][5, 7] = math.nan
    grads[4][0, 0] = math.inf
    sums, norms, lows, highs = sweep(grads)
    assert all(math.isnan(row[2]) for row in (sums, norms, lows, highs))
    assert sums[4] == math.inf and norms[4] == math.inf and highs[4] == math.inf
    assert all(map(math.isfinite, sums[:2] + [sums[3]]))


@needs_kernel
def test_a_gradient_it_cannot_read_as_it_lies_gives_none_not_a_wrong_number():
    model = _model()
    params = list(model.parameters())
    sweep = FreshSweep.build(params)
    grads = _backward(model, 0)
    missing = [None, *grads[1:]]
    transposed = list(grads)
    transposed[2] = grads[2].t().contiguous().t()  # the same values, laid out by column
    sparse = list(grads)
    sparse[1] = grads[1].to_sparse()
    for case in (missing, transposed, sparse):
        assert sweep(case) is None
    shrunk = list(grads)
    shrunk[4] = grads[4][:1].clone()  # as after `p.data = smaller`: never read past its end
    # As after `module.cuda()` for one layer: its address is no host memory (a meta
    # tensor's is 0, which the kernel would have read had the device gone unasked).
    elsewhere = list(grads)
    elsewhere[3] = torch.empty_like(grads[3], device="meta")
    for case in (shrunk, elsewhere):
        assert sweep(case) is None
    assert sweep(grads) is not None  # the gradients it was given before: still read


@needs_kernel
@pytest.mark.skipif(not hasattr(torch.Tensor, "grad_dtype"), reason="torch before grad_dtype")
def test_a_gradient_kept_in_another_dtype_gives_none():
    model = _model()
    params = list(model.parameters())
    sweep = FreshSweep.build(params)
    grads = _backward(model, 0)
    params[2].grad = None
    params[2].grad_dtype = torch.float64  # a parameter's gradients may be kept in another dtype
    params[2].grad = grads[2].double()
    assert sweep([p.grad for p in params]) is None


@needs_kernel
def test_a_sweep_of_over_a_million_floats_on_torch_s_threads_is_torch_s():
    # Above the kernel's PARALLEL_ABOVE (1 << 20 floats in all): the chunked sweep.
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(1100, 1100), nn.Tanh(), nn.Linear(1100, 1))
    sweep = FreshSweep.build(list(model.parameters()))
    threads = torch.get_num_threads()
    try:
        for count in {1, max(2, threads)}:
            torch.set_num_threads(count)
            model.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(torch.randn(8, 1100)), torch.randn(8, 1)).backward()
            grads = [p.grad for p in model.parameters()]
            _assert_rows(sweep(grads), _torch_rows(grads))
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_no_sweep_for_parameters_other_than_cpu_float32():
    assert FreshSweep.build([]) is None
    assert FreshSweep.build([nn.Parameter(torch.zeros(4, dtype=torch.float64))]) is None
    assert FreshSweep.build([nn.Parameter(torch.zeros(0))]) is None

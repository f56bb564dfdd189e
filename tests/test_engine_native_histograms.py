"""The C histograms (engine.native_stats.strided_histograms) against torch's fast_histogram.

The reference answer is engine.histograms' torch path: the strided sample
binned by torch's sub, mul and bincount. The kernel must give the same
counts bin for bin, through the extension module and through ctypes, and an
activation step's histograms must not change with the kernel on or off.
"""

from __future__ import annotations

import math

import pytest
import torch
from kernel_builds import each_kind
from probed_loop import probed_steps, random_batches
from torch import nn

import engine.native_stats as native
from engine.histograms import HIST_BINS, HIST_SAMPLE, fast_histogram, hist_sample, sample_stride
from engine.native_stats import strided_histograms, sweep_kernel
from engine.probe import GradientProbe

needs_kernel = pytest.mark.skipif(sweep_kernel() is None, reason="no C compiler here")


def tensors() -> list[torch.Tensor]:
    """Shapes and value ranges a step's weights, gradients and activations take."""
    g = torch.Generator().manual_seed(3)
    out = [
        torch.randn(1000, 100, generator=g),  # above HIST_SAMPLE: a strided sample
        torch.randn(100, 10, generator=g).relu(),  # many values at the minimum
        torch.randn(7, generator=g) * 1e-30,  # a tiny range
        torch.randn(50_001, generator=g) * 3e37,  # a range near float32's limit
        (torch.randn(4096, generator=g) * 5).round(),  # values on bin edges
        torch.full((300,), 0.25),  # no range at all: every value in the first bin
        torch.tensor([2.0]),
        torch.arange(25.0),  # the maximum alone in the extra bin
        torch.rand(3 * HIST_SAMPLE + 1, generator=g) - 0.5,
    ]
    return out


def reference(t: torch.Tensor) -> list[float]:
    lo, hi = float(t.min()), float(t.max())
    return [float(c) for c in fast_histogram(hist_sample(t), lo, hi, HIST_BINS).tolist()]


def native_counts(ts: list[torch.Tensor]) -> list[list[float]] | None:
    extremes = [(float(t.min()), float(t.max())) for t in ts]
    bounds = [(lo, HIST_BINS / max(hi - lo, 1e-30)) for lo, hi in extremes]  # as fast_histogram
    flat = strided_histograms(ts, [sample_stride(t) for t in ts], bounds, HIST_BINS)
    if flat is None:
        return None
    width = HIST_BINS + 1
    return [flat[i * width : (i + 1) * width] for i in range(len(ts))]


@needs_kernel
def test_each_kind_of_kernel_counts_what_torch_counts_bin_for_bin(monkeypatch, tmp_path):
    ts = tensors()
    want = [reference(t) for t in ts]
    kinds = []
    for kernel in each_kind(monkeypatch, tmp_path):
        kinds.append(kernel.kind)
        assert native_counts(ts) == want
        assert native_counts([]) == []
    assert "ctypes" in kinds


@needs_kernel
def test_the_counts_add_up_to_the_sample_and_the_maximum_is_in_the_extra_bin():
    t = torch.arange(25.0)
    [row] = native_counts([t])
    assert sum(row) == 25 and row[HIST_BINS] == 1.0
    big = torch.randn(1000, 100)
    [row] = native_counts([big])
    assert sum(row) == math.ceil(big.numel() / sample_stride(big))


@needs_kernel
def test_no_native_counts_for_other_than_contiguous_cpu_float32():
    for t in (torch.randn(10, 10).t(), torch.randn(10, dtype=torch.float64)):
        assert native_counts([torch.randn(5), t]) is None


def test_a_malformed_histogram_state_is_a_type_error_not_a_crash():
    kernel = sweep_kernel()
    if kernel is None or kernel.kind != "module":
        pytest.skip("no extension module here")
    import struct

    x = torch.arange(10.0)
    good = struct.pack("qqqqqdd", 1, 4, x.data_ptr(), 10, 1, 0.0, 0.4)
    assert kernel._module.histograms(good) == [3.0, 2.0, 3.0, 2.0, 0.0]
    malformed = [
        b"", bytes(8), bytes(24), "not bytes", good[:-1],
        struct.pack("qq", 1 << 61, 1),  # a k whose size would overflow
        struct.pack("qqqqqdd", 1, 1 << 61, x.data_ptr(), 10, 1, 0.0, 0.4),  # bins
        struct.pack("qqqqqdd", 1, 4, x.data_ptr(), 10, 0, 0.0, 0.4),  # a stride of 0
        struct.pack("qqqqqdd", 1, 4, x.data_ptr(), -1, 1, 0.0, 0.4),  # a negative length
        struct.pack("qqqqqdd", 2, 4, x.data_ptr(), 10, 1, 0.0, 0.4),  # k against the size
    ]  # fmt: skip
    for state in malformed:
        with pytest.raises(TypeError):
            kernel._module.histograms(state)
    with pytest.raises(TypeError):
        kernel._module.flat(struct.pack("qqq", 1 << 61, 0, 1))  # a sweep's k likewise


def test_strided_histograms_refuses_arguments_that_do_not_match():
    t = torch.arange(10.0)
    for strides, bounds, bins in (([1], [], 4), ([0], [(0.0, 1.0)], 4), ([1], [(0.0, 1.0)], 0)):
        with pytest.raises(ValueError):
            strided_histograms([t], strides, bounds, bins)


@needs_kernel
def test_an_activation_step_s_histograms_are_the_same_with_the_kernel_or_without(monkeypatch):
    def histograms() -> list:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 200), nn.ReLU(), nn.Linear(200, 100), nn.Sigmoid(),
                              nn.Linear(100, 1))  # fmt: skip
        with GradientProbe(model, capture_every=1, activation_every=1, lr=0.05) as probe:
            records = probed_steps(probe, model, random_batches(3, 10, 256))
        return [record.histograms for record in records]

    calls = []
    real = native.strided_histograms

    def counted(*args):
        calls.append(1)
        return real(*args)

    import engine.histograms as histograms_module

    monkeypatch.setattr(histograms_module, "strided_histograms", counted)
    got = histograms()
    assert len(calls) == 3  # one C call an activation step
    monkeypatch.setattr(native, "_kernel", False)  # the reference: torch's operators
    want = histograms()
    assert got == want
    kinds = got[0]
    assert set(kinds) == {"weight", "grad", "act"} and len(kinds["act"]) == 3

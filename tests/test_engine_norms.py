"""The CPU norm the probe takes of large tensors: torch.dot, torch's answer where it overflows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.probe import GradientProbe
from engine.stats import DOT_ABOVE, cpu_norm


def _reference(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.double()))


@pytest.mark.parametrize("numel", [10, DOT_ABOVE - 1, DOT_ABOVE, 4 * DOT_ABOVE + 3])
def test_norm_matches_float64_reference(numel):
    t = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 1e-3 + 1e-4
    assert float(cpu_norm(t)) == pytest.approx(_reference(t), rel=1e-5)


@pytest.mark.parametrize("value", [1e18, 1e20, 3e38])
def test_squares_that_overflow_float32_give_vector_norms_answer(value):
    t = torch.full((DOT_ABOVE,), value)  # from squares 1e36 (fine) to past float32
    assert float(cpu_norm(t)) == pytest.approx(float(torch.linalg.vector_norm(t)), rel=1e-6)


@pytest.mark.parametrize(
    "value, expected",
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "inf")],
)
def test_nan_and_inf_come_out_as_vector_norm_gives_them(value, expected):
    t = torch.ones(DOT_ABOVE * 2)
    t[7] = value
    got, want = float(cpu_norm(t)), float(torch.linalg.vector_norm(t))
    assert math.isnan(got) if expected == "nan" else got == math.inf
    assert (math.isnan(want) and math.isnan(got)) or want == got


def test_non_contiguous_and_half_tensors_use_vector_norm():
    t = torch.randn(512, 512)[:, ::2]
    assert float(cpu_norm(t)) == float(torch.linalg.vector_norm(t))
    h = torch.randn(DOT_ABOVE, dtype=torch.bfloat16)
    assert float(cpu_norm(h)) == float(torch.linalg.vector_norm(h))


def test_probe_norms_of_large_layers_match_torch_through_float32_overflow():
    # A 90,000-value layer with gradients near 1e17-1e18: the sums of their
    # squares overflow float32; the probe's norms must still be torch's.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 300), nn.ReLU(), nn.Linear(300, 300), nn.ReLU(),
                          nn.Linear(300, 1))  # fmt: skip
    x, y = torch.randn(64, 10), torch.randn(64, 1)
    with GradientProbe(model, capture_every=1, activation_every=1000) as probe:
        for step in range(2):
            probe.begin_step(step)
            loss = nn.functional.mse_loss(model(x), y) * 1e20
            model.zero_grad()
            loss.backward()
            want = {n: float(torch.linalg.vector_norm(model.get_submodule(n).weight.grad))
                    for n in ("0", "2", "4")}  # fmt: skip
            probe.after_backward(loss)
            record = probe.end_step(loss)
            for name, norm in want.items():
                assert record.layers[name].grad_norm == pytest.approx(norm, rel=1e-5)
            assert record.layers["2"].grad_norm == math.inf  # torch's answer too
            assert record.layers["2"].grad_nonfinite == 0.0  # the values themselves are finite

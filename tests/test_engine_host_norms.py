"""HostNorms (engine.stats): CPU weight norms by the C sweep or dot products, against torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.stats import HostNorms


def _torch_norms(tensors: list[torch.Tensor]) -> list[float]:
    return [float(torch.linalg.vector_norm(t)) for t in tensors]


def test_norms_are_torch_s_with_nan_inf_and_overflow(stats_kernel):
    torch.manual_seed(0)
    tensors = [torch.randn(100, 100), torch.randn(7, 3), torch.randn(5, dtype=torch.float64)]
    host = HostNorms(tensors)
    assert host.norms() == pytest.approx(_torch_norms(tensors), rel=1e-6)
    tensors[0][3, 4] = math.nan
    tensors[1][0, 0] = math.inf
    tensors[2][0] = 1e200  # float64: no overflow
    got, want = host.norms(), _torch_norms(tensors)  # the same views see the new values
    assert math.isnan(got[0]) and got[1] == math.inf and got[2] == pytest.approx(want[2])
    tensors[1][0, 0] = 3e20  # its square overflows float32: torch's own norm answers
    assert host.norms()[1] == _torch_norms(tensors)[1]


def test_a_weight_that_moved_is_read_where_it_is_now(stats_kernel):
    layer = nn.Linear(4, 3)
    host = HostNorms([layer.weight])
    before = host.norms()
    layer.weight.data = layer.weight.data * 2  # new storage: the kept view would be stale
    assert host.norms() == pytest.approx([2 * before[0]], rel=1e-6)


def test_none_where_the_tensors_are_not_contiguous_cpu_floats(stats_kernel):
    assert HostNorms([torch.ones(4, dtype=torch.float16)]).norms() is None
    assert HostNorms([torch.ones(4, 4).t()]).norms() is None
    assert HostNorms([]).norms() == []

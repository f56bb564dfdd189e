"""Reading a GPU sentinel pair as one complex number (engine.sentinels.read_values)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.sentinels import as_pair, read_values

ODD = [float("nan"), float("inf"), float("-inf"), -0.0, 1e-45, 3.4e38, 0.1, -2.5]


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_pair_reads_as_its_floats_exactly(dtype):
    for first in ODD:
        for second in ODD:
            vector = torch.tensor([first, second], dtype=dtype)
            pair = as_pair(vector)
            assert pair is not None
            assert all(map(_same, pair, vector.tolist())), (first, second, pair)


def test_what_cannot_be_viewed_as_one_complex_is_left_to_tolist():
    buffer = torch.arange(8, dtype=torch.float32)
    assert as_pair(buffer.narrow(0, 1, 2)) is None  # the first float not aligned for a complex
    assert as_pair(buffer.narrow(0, 2, 2)) == [2.0, 3.0]
    assert as_pair(buffer[::4]) is None  # not side by side
    assert as_pair(buffer[:3]) is None
    assert as_pair(torch.tensor([1.0, 2.0], dtype=torch.float16)) is None
    assert read_values(buffer.narrow(0, 1, 2)) == [1.0, 2.0]
    assert read_values(torch.tensor([1.0, float("inf")])) == [1.0, float("inf")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_pair_is_read_as_tolist_reads_it():
    for first in ODD:
        vector = torch.tensor([first, 0.25], device="cuda")
        assert all(map(_same, read_values(vector), vector.tolist()))
    three = torch.tensor([1.0, 2.0, 3.0], device="cuda")
    assert read_values(three) == [1.0, 2.0, 3.0]

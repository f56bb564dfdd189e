"""The probe's overhead as a share of the source's way's: issue 4's "10x less", with no floor."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_probe import SOURCE_SHARE, overhead_share
from benchmarks.common import check


def test_a_share_is_the_probes_overhead_over_the_sources():
    share, note = overhead_share(0.003, 0.047)
    assert share == pytest.approx(0.003 / 0.047)
    assert check(share, f"<= {SOURCE_SHARE:g}")  # F52's readings: met, 15.7x less
    assert "15.7x less" in note and "+0.003" in note and "+0.047" in note


def test_a_probe_at_a_tenth_of_the_source_meets_the_target_and_above_it_misses():
    target = f"<= {SOURCE_SHARE:g}"
    assert check(overhead_share(0.0049, 0.05)[0], target)
    assert not check(overhead_share(0.0051, 0.05)[0], target)
    assert not check(overhead_share(0.022, 0.068)[0], target)  # F46: 3.1x less, a miss


def test_a_probe_that_costs_nothing_meets_the_target_however_cheap_the_source():
    # The floor this replaces read 0.047 / 0.005 = 9.4x, a miss, for any probe under 0.5%.
    for probe in (0.0, -0.016):
        share, note = overhead_share(probe, 0.047)
        assert share <= 0 and check(share, f"<= {SOURCE_SHARE:g}")
        assert "at least as fast as the bare one" in note


@pytest.mark.parametrize(
    ("source", "said"), [(0.0, "measured no overhead"), (-0.01, "measured no overhead"),
                         (math.nan, "was not measured")],
)  # fmt: skip
def test_a_source_without_overhead_gives_no_share(source, said):
    share, note = overhead_share(0.01, source)
    assert share is None and check(share, f"<= {SOURCE_SHARE:g}") is None
    assert said in note


def test_nan_overheads_come_out_as_nan_not_as_a_crash():
    share, note = overhead_share(math.nan, 0.05)
    assert math.isnan(share) and not check(share, f"<= {SOURCE_SHARE:g}")
    assert "nan" in note and "as fast" not in note

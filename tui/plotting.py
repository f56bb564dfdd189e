"""Numbers made plottable: non-finite sanitizing, log and symlog transforms, ticks.

A line cannot be drawn through infinity, and values spanning thirty decades
need axes that read, so every plot goes through here: values are split into the
finite points that are drawn and the non-finite ones that are marked, axes
are transformed (log10, or a symmetric log that keeps the sign), and tick
labels are written the way a person writes them: 1e-6 … 1e26, 0.69, -1e3.
Nothing here imports Textual; the widgets use it and so can tests.
"""

from __future__ import annotations

import math

import numpy as np

# Layer colours, input (cool) to output (warm): the order of the layers reads
# from the colour alone, which is what a vanishing gradient is about.
_STOPS = (
    (70, 110, 255),
    (40, 200, 230),
    (70, 220, 120),
    (220, 220, 60),
    (255, 150, 40),
    (250, 90, 140),
)
NONFINITE_COLOR = (255, 60, 60)  # markers for NaN/inf points, and the alarm
NONFINITE_MARK = "✖"


def layer_colors(count: int) -> list[tuple[int, int, int]]:
    """`count` colours spread evenly from the first stop (input) to the last (output)."""
    if count <= 0:
        return []
    if count == 1:
        return [_STOPS[0]]
    colors = []
    for i in range(count):
        pos = i * (len(_STOPS) - 1) / (count - 1)
        lo = min(int(pos), len(_STOPS) - 2)
        frac = pos - lo
        a, b = _STOPS[lo], _STOPS[lo + 1]
        colors.append(tuple(round(a[k] + (b[k] - a[k]) * frac) for k in range(3)))
    return colors


def rich_color(rgb: tuple[int, int, int]) -> str:
    """The Rich style string of an RGB tuple."""
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


# -- numbers ------------------------------------------------------------------
def format_number(value: float | None, digits: int = 3) -> str:
    """A short, human form: 0.693, 1.2e-5, 3.3e26, NaN, inf, -inf, — for None."""
    if value is None:
        return "—"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e4:
        if magnitude >= 10**digits:
            return f"{value:.0f}"  # 1234, not 1.23e+03
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{max(digits - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def short_number(value: float | None, width: int) -> str:
    """format_number squeezed into `width` characters: 0.0032 → 3.2e-3 → 3e-3."""
    for text in (format_number(value, 2), format_number(value, 1)):
        if len(text) <= width:
            return text
    if value is not None and math.isfinite(value) and value != 0:
        mantissa, exponent = f"{value:.0e}".split("e")
        text = f"{mantissa}e{int(exponent)}"
        if len(text) <= width:
            return text
    return "…"[:width]  # a cut-off number would read as another number


def short_name(name: str, width: int) -> str:
    """A layer name in `width` cells: whole, else its last dotted part, else cut with …."""
    if len(name) <= width:
        return name
    tail = name.rsplit(".", 1)[-1]
    if len(tail) <= width:
        return tail
    return tail[: max(width - 1, 0)] + "…" if width > 1 else tail[:width]


def power_label(exponent: int) -> str:
    """The tick label of 10**exponent: 1e-6, 0.01, 0.1, 1, 10, 100, 1e3 … 1e26."""
    if -2 <= exponent <= 2:
        return format_number(10.0**exponent)
    return f"1e{exponent}"


# -- sanitizing ---------------------------------------------------------------
def split_finite(
    steps: np.ndarray, values: np.ndarray, positive: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps of drawable points, their values, steps of NaN/inf points).

    With `positive`, zero and negative values (undrawable on a log axis) are
    left out of the line; they are not non-finite, so they are not marked.
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    keep = finite & (values > 0) if positive else finite
    return steps[keep], values[keep], steps[~finite]


def log10_positive(values: np.ndarray) -> np.ndarray:
    """log10 of finite positive values (callers pass only those)."""
    return np.log10(np.asarray(values, dtype=float))


def symlog(values: np.ndarray, linthresh: float) -> np.ndarray:
    """Symmetric log: sign(x)·log10(1 + |x|/linthresh); 1e-6 and 1e26 both read."""
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log10(1.0 + np.abs(values) / linthresh)


def symlog_threshold(values: np.ndarray) -> float:
    """A linear-zone width below the smallest magnitudes worth telling apart.

    A power of ten near the 5th percentile of the non-zero magnitudes, so the
    smallest layer's gradient still sits well away from zero.
    """
    values = np.abs(np.asarray(values, dtype=float))
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return 1.0
    low = float(np.percentile(values, 5))
    exponent = math.floor(math.log10(low)) - 1
    return 10.0 ** min(max(exponent, -30), 0)


# -- ticks --------------------------------------------------------------------
def log_ticks(lo: float, hi: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Ticks for an axis of log10 values from lo to hi, labelled as plain values.

    Spanning a decade or more, the ticks are whole powers of ten (thinned to
    fit); within a decade they are round values of the data itself.
    """
    max_ticks = max(max_ticks, 2)
    if hi - lo >= 1:
        first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        count = last - first + 1
        stride = max(1, math.ceil(count / max_ticks))
        exponents = list(range(last, first - 1, -stride))[::-1]  # keep the top power
        return [float(e) for e in exponents], [power_label(e) for e in exponents]
    values = nice_ticks(10.0**lo, 10.0**hi, max_ticks)
    values = [v for v in values if v > 0]
    return [math.log10(v) for v in values], distinct_labels(values)


def distinct_labels(values: list[float]) -> list[str]:
    """format_number of each value with just enough digits that no two labels match."""
    labels: list[str] = []
    for digits in range(2, 8):
        labels = [format_number(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def symlog_ticks(lo: float, hi: float, linthresh: float, max_ticks: int):
    """Ticks (transformed positions, labels) for a symlog axis from lo to hi.

    Candidates are 0 and ±10^k above the linear zone that fall inside the
    axis; a stride over k (keeping the largest) leaves about max_ticks.
    """
    eps = 1e-6
    top = max(abs(lo), abs(hi))
    k_min = round(math.log10(linthresh)) + 1
    k_max = math.floor(top + math.log10(linthresh) + eps)
    position = {
        k: float(symlog(np.array([10.0**k]), linthresh)[0]) for k in range(k_min, k_max + 1)
    }
    up = [k for k, p in position.items() if hi > 0 and p <= hi + eps]
    down = [k for k, p in position.items() if lo < 0 and -p >= lo - eps]
    candidates = sorted(set(up) | set(down))
    sides = (hi > 0) + (lo < 0)
    per_side = max(1, (max_ticks - 1) // max(sides, 1))
    stride = max(1, math.ceil(len(candidates) / per_side))
    chosen = set(candidates[::-1][::stride])
    ticks, labels = [0.0], ["0"]
    for k in sorted(chosen):
        if k in up:
            ticks.append(position[k])
            labels.append(power_label(k))
        if k in down:
            ticks.append(-position[k])
            labels.append("-" + power_label(k))
    order = np.argsort(ticks)
    return [ticks[i] for i in order], [labels[i] for i in order]


def nice_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round values (1, 2, 5 × 10^k steps) between lo and hi, at most max_ticks."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * power
        if (hi - lo) / step <= max_ticks - 1:
            break
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def step_ticks(first: float, last: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Whole-number step ticks, labelled 0, 500, 12k, 1.5M."""
    if last <= first:
        return [first], [step_label(first)]
    values = [v for v in nice_ticks(first, last, max_ticks) if float(v).is_integer()]
    if not values:
        values = [first, last]
    return values, [step_label(v) for v in values]


def step_label(step: float) -> str:
    """A step count as a short label: 950, 12k, 1.5M."""
    step = int(step)
    if abs(step) >= 1_000_000:
        return f"{step / 1_000_000:g}M"
    if abs(step) >= 10_000:
        return f"{step / 1000:g}k"
    return str(step)


def padded_range(lo: float, hi: float, minimum: float = 0.05) -> tuple[float, float]:
    """(lo, hi) widened to at least `minimum` and by a small margin, for y limits."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return -1.0, 1.0
    span = hi - lo
    if span < minimum:
        middle = (lo + hi) / 2
        return middle - minimum / 2, middle + minimum / 2
    margin = span * 0.04
    return lo - margin, hi + margin

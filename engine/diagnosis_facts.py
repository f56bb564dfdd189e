"""The numbers a diagnosis reads, gathered from a History once per call.

Kept apart from the rules in engine.diagnosis so that each file says one
thing: here, what was measured (NaN-safe, bucket-aware); there, what it means.
Nothing here imports torch.
"""

from __future__ import annotations

import math

import numpy as np

from engine.config import RunConfig
from engine.history import History, Series
from engine.records import LayerStats, NonFinite

ALL = 100_000  # max_points large enough to read a series at its stored resolution


def fmt(value: float | None) -> str:
    """A number short and plain: 0.5, 13, 231, 1.4e-3, 9.3e6, NaN, inf."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.2g}" if abs(value) < 100 else f"{value:.0f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def module_of(layer: str) -> str:
    """The module a layer belongs to: `cell.weight_hh` -> `cell`, `h1` -> `h1`."""
    head, _, tail = layer.rpartition(".")
    return head if head and tail.startswith("weight") else layer


class RunFacts:
    """What the rules read: series over the whole run, the latest layer statistics."""

    def __init__(
        self, history: History, config: RunConfig | None, nonfinite: NonFinite | None
    ) -> None:
        self.history = history
        self.config = config
        self.nonfinite = nonfinite
        self.latest = history.latest
        self.layers = list(history.layer_names)
        # The last layer is the output; its "activation" is its own linear output.
        self.hidden = self.layers[:-1]
        captured = history.latest_captured or history.latest
        self.grads: dict[str, LayerStats] = dict(captured.layers)
        # Activations are taken every few steps; a record without them has None there.
        acts = history.latest_activations or captured
        self.acts: dict[str, LayerStats] = dict(acts.layers)
        self.grad = history.series("grad_norm", max_points=ALL)
        self.loss = history.series("loss", max_points=ALL)
        self.ts_steps, self.ts_rows = history.timestep_matrix()
        self.clip = config.clip if config else None
        self.activation = None
        if config is not None:
            self.activation = "tanh" if config.model == "rnn" else config.activation

    @property
    def recurrent(self) -> bool:
        """True when per-time-step gradient norms were recorded (an RNN)."""
        return len(self.ts_rows) > 0

    @property
    def time_steps(self) -> int:
        """The sequence length T of the recorded per-time-step norms."""
        return self.ts_rows.shape[1] if self.recurrent else 0

    def first_bad(self) -> tuple[int, str, str] | None:
        """(step, "loss NaN" or "gradient non-finite", first bad layer or "loss")."""
        if self.nonfinite is not None:
            step, layer = self.nonfinite.step, self.nonfinite.layer
        else:
            bad = self.loss.nonfinite.copy()
            if len(self.grad.nonfinite) == len(bad):  # both recorded on every step
                bad |= self.grad.nonfinite
            hits = np.flatnonzero(bad)
            if not len(hits):
                return None
            step, layer = int(self.loss.steps[hits[0]]), "loss"
            for name in self.layers:  # input to output: the first one to go bad
                s = self.history.series(f"{name}.raw_grad_norm", max_points=ALL)
                bad_steps = s.steps[s.nonfinite]
                if len(bad_steps) and bad_steps[0] <= step:
                    layer = name
                    break
        value = _value_at(self.loss, step)
        what = "gradient non-finite" if finite(value) else f"loss {fmt(value)}"
        return step, what, layer

    def growth(self) -> tuple[float, int, int, float, float]:
        """(peak / first total raw norm, first step, peak step, first, peak), finite values."""
        ok = np.isfinite(self.grad.hi)
        if not ok.any():
            return 1.0, 0, 0, math.nan, math.nan
        first_i = int(np.argmax(ok))
        first = float(self.grad.values[first_i])
        if not finite(first):
            first = float(self.grad.lo[first_i])
        peak_i = int(np.argmax(np.where(ok, self.grad.hi, -np.inf)))
        peak = float(self.grad.hi[peak_i])
        ratio = peak / first if first > 0 else (math.inf if peak > 0 else 1.0)
        return ratio, int(self.grad.steps[first_i]), int(self.grad.steps[peak_i]), first, peak

    def time_ratio(self, row: np.ndarray) -> float:
        """|dL/dh_1| / |dL/dh_T| of one backward: inf when dL/dh_1 blew up, NaN if unknown."""
        early, late = float(row[0]), float(row[-1])
        if math.isinf(early):
            return math.inf
        if not finite(early) or not finite(late) or late == 0:
            return math.nan
        return early / late

    def time_peak(self) -> tuple[float, int]:
        """The largest |dL/dh_1| / |dL/dh_T| of the run, and its step."""
        best, step = math.nan, 0
        for row, s in zip(self.ts_rows, self.ts_steps, strict=True):
            ratio = self.time_ratio(row)
            if ratio == ratio and not best >= ratio:
                best, step = ratio, int(s)
        return best, step

    def latest_time_ratio(self) -> float:
        """|dL/dh_1| / |dL/dh_T| of the latest backward (0 when nothing reaches h_1)."""
        row = self.ts_rows[-1]
        if finite(float(row[0])) and row[0] == 0 and finite(float(row[-1])) and row[-1] > 0:
            return 0.0
        return self.time_ratio(row)

    def clipped_frac(self) -> float | None:
        """The mean fraction of gradient elements clipping changed, over recent steps."""
        s = self.history.series("clipped_frac", last=100)
        values = s.values[np.isfinite(s.values)]
        return float(values.mean()) if len(values) else None

    def largest_timestep_norm(self) -> float | None:
        """The largest |dL/dh_t| recorded this run (finite values only)."""
        values = self.ts_rows[np.isfinite(self.ts_rows)] if self.recurrent else np.zeros(0)
        return float(values.max()) if len(values) else None

    def loss_trend(self) -> tuple[float, float] | None:
        """(first, latest) finite loss, when there are two."""
        values = self.loss.values[np.isfinite(self.loss.values)]
        return (float(values[0]), float(values[-1])) if len(values) > 1 else None

    def hidden_pair(self) -> tuple[str, str] | None:
        """The first and last hidden layers of a layer stack, when it has two or more."""
        if self.recurrent or len(self.hidden) < 2:
            return None
        return self.hidden[0], self.hidden[-1]


def finite(value: float | None) -> bool:
    """True for a finite number (None, NaN and inf are not)."""
    return value is not None and math.isfinite(value)


def ratio(a: float | None, b: float | None) -> float:
    """a / b, or NaN when either is missing, non-finite, or b is zero."""
    if not finite(a) or not finite(b) or b == 0:
        return math.nan
    return a / b


def _value_at(series: Series, step: int) -> float | None:
    hits = np.flatnonzero(series.steps <= step)
    return float(series.values[hits[-1]]) if len(hits) else None

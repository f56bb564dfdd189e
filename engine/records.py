"""The records the engine streams: one per training step, frozen and host-side.

Statistics that were not captured on a step are None, never NaN: NaN in a
record always means the training itself produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

GRAD_STATS = ("grad_mean", "grad_std", "grad_norm", "grad_abs_max")
RAW_STATS = tuple(f"raw_{name}" for name in GRAD_STATS)
WEIGHT_STATS = ("weight_mean", "weight_std")
ACT_STATS = ("act_mean", "act_std", "act_zero_frac")
LAYER_STATS = (
    GRAD_STATS
    + RAW_STATS
    + ("grad_nonfinite",)
    + WEIGHT_STATS
    + ACT_STATS
    + (
        "update_ratio",
        "act_saturation",
    )
)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight, its gradient and its activation."""

    grad_mean: float | None = None  # the gradient the optimizer applies
    grad_std: float | None = None  # unbiased, as torch.std
    grad_norm: float | None = None  # L2
    grad_abs_max: float | None = None
    raw_grad_mean: float | None = None  # before any clipping
    raw_grad_std: float | None = None
    raw_grad_norm: float | None = None
    raw_grad_abs_max: float | None = None
    grad_nonfinite: float | None = None  # count of NaN/inf gradient elements
    weight_mean: float | None = None
    weight_std: float | None = None
    act_mean: float | None = None  # the layer's activation output (before batch norm)
    act_std: float | None = None
    act_zero_frac: float | None = None
    update_ratio: float | None = None  # lr * |grad| / |w|: how fast the weight moves
    act_saturation: float | None = None  # sigmoid/tanh outputs within 2% of a bound

    def as_dict(self) -> dict[str, float]:
        """The captured statistics only, by name."""
        # The names kept once: dataclasses.fields() costs ~1 us a call.
        return {name: v for name in _LAYER_FIELDS if (v := getattr(self, name)) is not None}


_LAYER_FIELDS = tuple(f.name for f in fields(LayerStats))


@dataclass(frozen=True)
class Histogram:
    """Counts of values in `len(counts)` equal bins between lo and hi (finite values)."""

    lo: float
    hi: float
    counts: tuple[float, ...]
    nonfinite: float = 0.0  # values left out because they were NaN or infinite


@dataclass(frozen=True)
class NonFinite:
    """Where the training first produced NaN or infinity."""

    step: int
    layer: str  # the first layer (input to output) whose gradient was non-finite, or "loss"
    what: str  # "loss", "gradient" or "gradient norm"

    def describe(self) -> str:
        """One line for status bars and summaries."""
        return f"non-finite {self.what} at step {self.step} in {self.layer}"


@dataclass(frozen=True)
class StepRecord:
    """What one training step produced: always the sentinels, sometimes more."""

    step: int
    epoch: int
    loss: float
    grad_norm: float  # total L2 norm of all gradients before clipping
    grad_norm_clipped: float  # the same after clipping
    clipped_frac: float | None = None  # fraction of elements clipping changed (captured)
    layers: Mapping[str, LayerStats] = field(default_factory=dict)
    histograms: Mapping[str, Mapping[str, Histogram]] | None = None  # kind -> layer -> hist
    timestep_grad_norms: tuple[float, ...] | None = None  # rnn: |dL/dh_t| per time step
    captured: bool = False  # full gradient statistics were taken on this step
    activations_captured: bool = False  # activation statistics and histograms too

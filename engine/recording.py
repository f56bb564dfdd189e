"""A step's record from what the probe read: the dataclasses built at the least cost."""

from __future__ import annotations

import math
from dataclasses import fields

from engine.records import LayerStats, StepRecord


def make_record(probe, f: dict, epoch: int) -> StepRecord:
    """The StepRecord of `probe`'s current step from `f`, the values its queue read."""
    if "raw_total" in f:
        return _sentinel_record(probe, f, epoch)
    raw_norms = f["raw_norms"]
    applied_norms = f.get("applied_norms", raw_norms)
    slots = probe._slots(f["present"])
    raw, weights, acts = f.get("raw"), f.get("weights"), f.get("acts")
    applied = f.get("applied", raw)
    lr, saturating = probe.lr, probe.saturating is not None
    layers = {}
    for j, name in enumerate(probe.layer_names):
        k = slots[j]
        s = dict(_BLANK)
        if k is not None:
            s["raw_grad_norm"] = raw_norms[k]
            s["grad_norm"] = applied_norms[k]
        if raw is not None:
            r, a = raw[j], applied[j]
            s["raw_grad_mean"], s["raw_grad_std"], s["raw_grad_abs_max"] = r[0], r[1], r[2]
            s["grad_mean"], s["grad_std"], s["grad_abs_max"] = a[0], a[1], a[2]
            s["grad_nonfinite"] = r[3]
        if weights is not None:
            w = weights[j]
            s["weight_mean"], s["weight_std"] = w[0], w[1]
            if lr is not None and k is not None:
                s["update_ratio"] = safe_ratio(lr * applied_norms[k], w[2])
        if acts is not None and (act := acts[j]) is not None:
            s["act_mean"], s["act_std"], s["act_zero_frac"] = act[0], act[1], act[2]
            if saturating:
                s["act_saturation"] = act[3]
        layers[name] = _layer_stats(s)
    clipped_frac = None
    if "clipped" in f:
        numel = (
            probe._all_numel
            if f["present"] is probe._all_present
            else sum(probe.params[i].numel() for i in f["present"])
        )
        clipped_frac = f["clipped"][0] / numel if numel else None
    elif probe.capture and not probe.clip.changes_gradients:
        clipped_frac = 0.0
    return step_record(
        probe, f, epoch, l2_total(raw_norms), l2_total(applied_norms), clipped_frac, layers
    )


def step_record(
    probe, f: dict, epoch: int, grad_norm: float, clipped: float, clipped_frac, layers
) -> StepRecord:
    """The StepRecord of `probe`'s current step: loss (and time-step norms) from `f`, the rest given.

    What it captured is what the probe's flags say; `clipped` is the total
    gradient norm after clipping.
    """
    return new_step_record(
        probe.step, epoch, f["loss"][0], grad_norm, clipped, clipped_frac, layers,
        f.get("hist"), tuple(f["extra"][0]) if "extra" in f else None,
        probe.capture, probe.capture_acts,
    )  # fmt: skip


def new_step_record(
    step, epoch, loss, grad_norm, clipped, clipped_frac, layers, histograms, timesteps,
    captured, activations_captured,
) -> StepRecord:  # fmt: skip
    """A StepRecord from every field, in StepRecord's order, at the least cost (fast_record).

    The builder of the probe's records (step_record), a GPU's plain steps
    (engine.plain_lane's ReplayLane) and compact steps (engine.compact_stats);
    a CPU plain step's is plain_step_record, the same record in one frame.
    """
    values = {
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "grad_norm": grad_norm,
        "grad_norm_clipped": clipped,
        "clipped_frac": clipped_frac,
        "layers": layers,
        "histograms": histograms,
        "timestep_grad_norms": timesteps,
        "captured": captured,
        "activations_captured": activations_captured,
    }
    # fast_record's way without its call: each Python frame of a step's
    # bookkeeping costs ~1-3 us once the step's tensors have emptied the caches.
    if not STEP_RECORD_BY_DICT:
        return StepRecord(**values)
    record = _new(StepRecord)
    _set_attribute(record, "__dict__", values)
    return record


def plain_step_record(
    layers, step: int, epoch: int, read: tuple[float, float], timesteps=None
) -> StepRecord:
    """A plain step's StepRecord: its `read` (loss, norm), nothing measured per layer (`layers`).

    new_step_record's record for a step that captured neither tier, in one
    frame: the lanes (engine.plain_lane) bind `layers` and call it per step.
    """
    loss, norm = read
    values = {
        "step": step, "epoch": epoch, "loss": loss, "grad_norm": norm, "grad_norm_clipped": norm,
        "clipped_frac": None, "layers": layers, "histograms": None,
        "timestep_grad_norms": timesteps, "captured": False, "activations_captured": False,
    }  # fmt: skip
    if not STEP_RECORD_BY_DICT:
        return StepRecord(**values)
    record = _new(StepRecord)
    _set_attribute(record, "__dict__", values)
    return record


def _sentinel_record(probe, f: dict, epoch: int) -> StepRecord:
    # A step that carried the sentinels only: the loss and the total norms.
    raw_total = f["raw_total"][0]
    clipped = f["applied_total"][0] if "applied_total" in f else raw_total
    return step_record(probe, f, epoch, raw_total, clipped, None, probe.blank_layers)


_BLANK_LAYERS: dict[tuple[str, ...], dict[str, LayerStats]] = {}


def blank_layers(names: list[str]) -> dict[str, LayerStats]:
    """Every layer with nothing measured; one shared (never modified) dict per model."""
    key = tuple(names)
    layers = _BLANK_LAYERS.get(key)
    if layers is None:
        if len(_BLANK_LAYERS) > 64:  # many models in one process: stay bounded
            _BLANK_LAYERS.clear()
        layers = _BLANK_LAYERS[key] = {name: LayerStats() for name in names}
    return layers


_BLANK = {f.name: None for f in fields(LayerStats)}
# Field counts of the record classes that can be built through their instance
# dict (not if a later version gives them __slots__).
_FIELD_COUNT = {
    cls: len(fields(cls)) for cls in (LayerStats, StepRecord) if not hasattr(cls, "__slots__")
}


# Whether a StepRecord is an object given its instance dict (new_step_record,
# and the C records of engine.native_record): every field, none in __slots__.
STEP_RECORD_BY_DICT = _FIELD_COUNT.get(StepRecord) == 11
_new, _set_attribute = object.__new__, object.__setattr__


def fast_record(cls, values: dict):
    """An instance of the record class `cls` (LayerStats, StepRecord) from `values`, at the least cost."""
    # A frozen dataclass's __init__ sets its fields one object.__setattr__ at a
    # time: microseconds a layer a step. Given every field, handing over the
    # instance dict builds the same object (eq, hash, repr and replace read
    # attributes); `values` must not be used afterwards.
    if len(values) != _FIELD_COUNT.get(cls):
        return cls(**values)
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    return obj


def _layer_stats(values: dict) -> LayerStats:
    return fast_record(LayerStats, values)


def l2_total(values: list[float]) -> float:
    """The L2 norm of norms (the total of several tensors' norms), inf or NaN as they come."""
    try:
        return math.sqrt(math.fsum(x * x for x in values))
    except (OverflowError, ValueError):
        return math.inf if all(x == x for x in values) else math.nan


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x / 0 as inf (or NaN for 0 / 0) instead of an error."""
    if denominator == 0:
        return math.inf if numerator else math.nan
    return numerator / denominator

"""Per-layer statistics of a training step, for any nn.Module in any loop.

Usage in a plain loop::

    with GradientProbe(model, clip=make_clip("norm")) as probe:
        for step, (x, y) in enumerate(batches):
            probe.begin_step(step)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            probe.after_backward()      # measures raw, clips, measures applied
            optimizer.step()
            record = probe.end_step(loss, epoch)

Cost policy: the sentinels (loss, total gradient norm raw and clipped, each
layer's gradient norm) are taken on every step; the full gradient and weight
statistics on step 0 and every `capture_every`-th step; activations and
histograms on step 0 and every `activation_every`-th step. Everything a step
measured is gathered on the device and copied to the host once.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.clipping import ClipStrategy
from engine.records import Histogram, LayerStats, StepRecord
from engine.stats import (
    ActivationTap,
    histogram_rows,
    moments,
    nonfinite_counts,
    weight_layers,
)

HIST_BINS = 24


class GradientProbe:
    """Measures gradients, weights and activations of `model`, step by step.

    `layers` maps a layer name to its weight parameter (default: every
    parameter of two or more dimensions, named without ".weight"); hooks are
    removed on exit, whatever happens.
    """

    def __init__(
        self,
        model: nn.Module,
        clip: ClipStrategy | None = None,
        capture_every: int = 1,
        activation_every: int = 10,
        lr: float | None = None,
        saturating: tuple[float, float] | None = None,
    ) -> None:
        self.model = model
        self.clip = clip or ClipStrategy()
        self.capture_every = capture_every
        self.activation_every = activation_every
        self.lr = lr  # for the update-to-weight ratio; None leaves it out
        self.saturating = saturating  # (low, high) bounds of a sigmoid/tanh output
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.layer_names, self.layer_params = weight_layers(model)
        index_of = {id(p): i for i, p in enumerate(self.params)}
        self._layer_index = [index_of[id(p)] for p in self.layer_params]
        self.taps = ActivationTap(model, self.layer_names)
        self._pending: dict | None = None
        self.capture = self.capture_acts = False
        self.step = 0

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> GradientProbe:
        self.clip.attach(self.params)
        self.taps.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook the probe and its clip strategy registered."""
        self.taps.close()
        self.clip.close()

    # -- the step ----------------------------------------------------------
    def begin_step(self, step: int) -> None:
        """Decide what this step captures and arm the activation hooks."""
        self.step = step
        self.capture = step % self.capture_every == 0
        self.capture_acts = step % self.activation_every == 0
        self.taps.armed = self.capture_acts

    def after_backward(self) -> None:
        """Measure the raw gradients, clip them, measure the applied ones.

        Call between `loss.backward()` and `optimizer.step()`. All results
        stay on the device until `end_step`.
        """
        raw_all = self.clip.raw_grads()
        present = [i for i, g in enumerate(raw_all) if g is not None]
        raw = [raw_all[i] for i in present]
        raw_norms = list(torch._foreach_norm(raw)) if raw else []
        pending: dict = {"present": present, "raw_norms": raw_norms}
        if self.capture:
            layer_raw = self._layer_tensors(raw_all)
            pending["raw_moments"] = moments(layer_raw)
            pending["nonfinite"] = nonfinite_counts(layer_raw)
            pending["clipped"] = self.clip.clipped_count(raw)
            pending["numel"] = sum(g.numel() for g in raw)
        self.clip.apply(raw_norms)
        if self.clip.changes_gradients:
            applied = [self.params[i].grad for i in present]
            pending["applied_norms"] = list(torch._foreach_norm(applied))
        else:
            pending["applied_norms"] = raw_norms
        if self.capture:
            layer_grads = self._layer_tensors([p.grad for p in self.params])
            pending["moments"] = (
                moments(layer_grads) if self.clip.changes_gradients else pending["raw_moments"]
            )
            pending["weights"] = moments([p.detach() for p in self.layer_params])
        if self.capture_acts:
            # Histograms first: statistics() forgets the kept activations.
            pending["hist"] = histogram_rows(
                {
                    "weight": [p.detach() for p in self.layer_params],
                    "grad": [self.params[i].grad for i in self._layer_index],
                    "act": self.taps.outputs(),
                },
                HIST_BINS,
            )
            pending["acts"] = self.taps.statistics(self.saturating)
        self._pending = pending

    def _layer_tensors(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        # A layer that took no part in backward has a zero gradient, not a missing one.
        return [
            g if (g := grads[i]) is not None else torch.zeros_like(self.params[i])
            for i in self._layer_index
        ]

    def end_step(self, loss: torch.Tensor, epoch: int = 0, extra: torch.Tensor | None = None) -> StepRecord:
        """Copy this step's measurements to the host (once) and build its record."""
        p = self._pending or {"present": [], "raw_norms": [], "applied_norms": []}
        self._pending = None
        device = loss.device
        zero = torch.zeros((), device=device)
        parts = [loss.detach().reshape(1).float()]
        raw_n = _stack(p["raw_norms"], zero)
        app_n = _stack(p["applied_norms"], zero)
        parts += [raw_n.float(), app_n.float()]
        layout: list[tuple[str, int]] = [("loss", 1), ("raw", raw_n.numel()), ("applied", app_n.numel())]
        for key in ("raw_moments", "moments", "weights", "nonfinite", "acts", "hist"):
            if key in p:
                parts.append(p[key].reshape(-1).float())
                layout.append((key, p[key].numel()))
        if p.get("clipped") is not None:
            parts.append(p["clipped"].reshape(1).float())
            layout.append(("clipped", 1))
        if extra is not None:
            parts.append(extra.detach().reshape(-1).float())
            layout.append(("extra", extra.numel()))
        # The one device-to-host copy of the step: everything above in one tensor.
        flat = torch.cat([t.to(device) for t in parts]).cpu().tolist()
        values, offset = {}, 0
        for key, size in layout:
            values[key] = flat[offset : offset + size]
            offset += size
        return self._record(values, p, epoch)

    # -- building the record -------------------------------------------------
    def _record(self, v: dict, p: dict, epoch: int) -> StepRecord:
        raw_norms, applied_norms = v["raw"], v["applied"]
        total_raw = _l2(raw_norms)
        total_applied = _l2(applied_norms)
        slot = {param_index: k for k, param_index in enumerate(p["present"])}
        layers = {}
        n_layers = len(self.layer_names)
        for j, name in enumerate(self.layer_names):
            k = slot.get(self._layer_index[j])
            stats = {
                "raw_grad_norm": raw_norms[k] if k is not None else None,
                "grad_norm": applied_norms[k] if k is not None else None,
            }
            if "raw_moments" in v:
                stats.update(_moment_fields(v["raw_moments"], j, n_layers, "raw_grad_"))
                stats.update(_moment_fields(v["moments"], j, n_layers, "grad_"))
                w = _moment_fields(v["weights"], j, n_layers, "weight_")
                stats["weight_mean"], stats["weight_std"] = w["weight_mean"], w["weight_std"]
                stats["grad_nonfinite"] = v["nonfinite"][j]
                if self.lr is not None and stats["grad_norm"] is not None:
                    stats["update_ratio"] = _ratio(self.lr * stats["grad_norm"], w["weight_norm"])
            if "acts" in v:
                present, mean, std, zero_frac, saturation = v["acts"][j * 5 : j * 5 + 5]
                if present:
                    stats.update(act_mean=mean, act_std=std, act_zero_frac=zero_frac)
                    if self.saturating is not None:
                        stats["act_saturation"] = saturation
            layers[name] = LayerStats(**stats)
        histograms = None
        if "hist" in v:
            histograms = _histograms(v["hist"], self.layer_names, HIST_BINS)
        clipped_frac = None
        if "clipped" in v and p.get("numel"):
            clipped_frac = v["clipped"][0] / p["numel"]
        elif self.capture and not self.clip.changes_gradients:
            clipped_frac = 0.0
        return StepRecord(
            step=self.step,
            epoch=epoch,
            loss=v["loss"][0],
            grad_norm=total_raw,
            grad_norm_clipped=total_applied,
            clipped_frac=clipped_frac,
            layers=layers,
            histograms=histograms,
            timestep_grad_norms=tuple(v["extra"]) if "extra" in v else None,
            captured=self.capture,
            activations_captured=self.capture_acts,
        )

    def nonfinite_layer(self) -> str | None:
        """The first layer (input to output) whose gradient holds NaN or inf.

        A second host copy, taken only on the rare step a sentinel tripped.
        """
        grads = [p.grad for p in self.layer_params]
        counts = nonfinite_counts(grads).cpu().tolist()
        for name, count in zip(self.layer_names, counts):
            if count > 0:
                return name
        return None


def _stack(items: list[torch.Tensor], zero: torch.Tensor) -> torch.Tensor:
    return torch.stack(items) if items else zero.reshape(0)


def _l2(values: list[float]) -> float:
    try:
        return math.sqrt(math.fsum(x * x for x in values))
    except (OverflowError, ValueError):
        return math.inf if all(x == x for x in values) else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return math.inf if numerator else math.nan
    return numerator / denominator


def _moment_fields(flat: list[float], j: int, n: int, prefix: str) -> dict:
    # moments() lays out rows of (mean, std, norm, abs_max) per layer.
    mean, std, norm, abs_max = flat[j * 4 : j * 4 + 4]
    if prefix == "weight_":
        return {"weight_mean": mean, "weight_std": std, "weight_norm": norm}
    return {f"{prefix}mean": mean, f"{prefix}std": std, f"{prefix}abs_max": abs_max}


def _histograms(flat: list[float], names: list[str], bins: int) -> dict:
    row = bins + 3  # lo, hi, nonfinite, counts
    out: dict[str, dict[str, Histogram]] = {}
    for k, kind in enumerate(("weight", "grad", "act")):
        out[kind] = {}
        for j, name in enumerate(names):
            start = (k * len(names) + j) * row
            r = flat[start : start + row]
            if r[0] != r[0] and r[1] != r[1] and not any(r[3:]):
                continue  # no activation was recorded for this layer
            out[kind][name] = Histogram(lo=r[0], hi=r[1], counts=tuple(r[3:]), nonfinite=r[2])
    return out

"""Correctness before speed: the probe's numbers against torch's own, before any timing.

The benchmark command runs this first and stops if it fails, so a faster
probe can never be a wronger one. Each case trains a few steps under the
probe twice on identical copies of a model: once on the CPU's fast path
(float32 partials, exact fallbacks) and once on the device path (torch's own
std_mean and friends, as on a GPU), and every step is also checked against
statistics computed directly with torch. Cases: the three benchmark models,
the four clip modes, gradients scaled until float32 sums of squares overflow
(the exploding preset's regime), weights with a large common offset, NaN and
inf in the input; and where nothing clips, each again as the Trainer steps
a small model (a flat gradient buffer, statistics steps kept compact).

Run alone: `.venv/bin/python -m benchmarks.check_probe`.
"""

from __future__ import annotations

import copy
import math
import sys

import torch
from torch import nn

import engine.probe as probe_module
from engine.clipping import make_clip
from engine.compact_stats import CompactLayers
from engine.flat_grads import FlatGradients
from engine.native_stats import sweep_kernel
from engine.probe import GradientProbe

REL = 1e-5  # fast path against device path: float tolerance


def _close(a, b, rel: float = REL) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b), 1e-6)


def _train(
    model, x, y, clip: str, eager: bool, scale: float = 1.0, steps: int = 3, trainer: bool = False
):
    # `trainer`: as the Trainer steps a small model, gradients in a flat buffer,
    # the loss handed to the probe, activations on step 0 only (where a
    # statistics step is kept compact, engine.compact_stats).
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    flat = FlatGradients(list(model.parameters())) if trainer else None
    saved = set(probe_module.EAGER_DEVICES)
    probe_module.EAGER_DEVICES.clear()
    if eager:
        probe_module.EAGER_DEVICES.update(saved)
    records, direct = [], []
    try:
        strategy = make_clip(clip, 0.05, 0.1)
        activation_every = 1 << 30 if trainer else 1
        with GradientProbe(
            model, strategy, 1, activation_every, lr=0.01, saturating=(0.0, 1.0)
        ) as probe:
            probe.flat = flat
            for step in range(steps):
                probe.begin_step(step)
                loss = nn.functional.mse_loss(model(x), y) * scale
                if flat is not None:
                    flat.zero()
                else:
                    optimizer.zero_grad()
                loss.backward()
                if clip == "none":
                    layers = zip(probe.layer_names, probe.layer_params, strict=True)
                    direct.append({n: p.grad.clone() for n, p in layers})
                probe.after_backward(loss if trainer else None)
                optimizer.step()
                records.append(probe.end_step(loss))
    finally:
        probe_module.EAGER_DEVICES.clear()
        probe_module.EAGER_DEVICES.update(saved)
    return records, direct


def _compare(fast, device, label: str) -> list[str]:
    problems = []
    for a, b in zip(fast, device, strict=True):
        for key in ("loss", "grad_norm", "grad_norm_clipped", "clipped_frac"):
            if not _close(getattr(a, key), getattr(b, key)):
                problems.append(
                    f"{label} step {a.step} {key}: {getattr(a, key)} vs {getattr(b, key)}"
                )
        for name, stats in a.layers.items():
            mine, theirs = stats.as_dict(), b.layers[name].as_dict()
            if set(mine) != set(theirs):
                problems.append(f"{label} {name}: fields differ {set(mine) ^ set(theirs)}")
            for key in mine.keys() & theirs.keys():
                if key.endswith("mean") and _close_mean(mine, theirs, key):
                    continue
                if not _close(mine[key], theirs[key]):
                    problems.append(
                        f"{label} step {a.step} {name}.{key}: {mine[key]} vs {theirs[key]}"
                    )
        for kind, hists in (a.histograms or {}).items():
            for name, h in hists.items():
                g = b.histograms[kind][name]
                total, expected = sum(h.counts) + h.nonfinite, sum(g.counts) + g.nonfinite
                if h.nonfinite != g.nonfinite or abs(total - expected) > 1e-3 * expected + 1:
                    problems.append(f"{label} {kind} histogram {name}: {h} vs {g}")
    return problems


def _close_mean(mine: dict, theirs: dict, key: str) -> bool:
    # A float32 sum (torch.mean's) and std_mean's double one differ by rounding
    # relative to the spread, not to a mean near zero: compare on that scale.
    spread = theirs.get(key.replace("mean", "std"))
    a, b = mine[key], theirs[key]
    if spread is None or not all(map(math.isfinite, (a, b, spread))):
        return False
    return abs(a - b) <= REL * (abs(b) + spread)


def _against_torch(records, direct, label: str) -> list[str]:
    problems = []
    for record, grads in zip(records, direct, strict=False):  # no `direct` under clipping
        for name, g in grads.items():
            stats = record.layers[name]
            want = (g.mean().item(), g.std().item(), g.norm().item(), g.abs().max().item())
            got = (stats.grad_mean, stats.grad_std, stats.grad_norm, stats.grad_abs_max)
            for what, w, v in zip(("mean", "std", "norm", "abs_max"), want, got, strict=True):
                if not _close(v, w, 1e-4) and not (math.isnan(w) and math.isnan(v)):
                    problems.append(f"{label} step {record.step} {name}.grad_{what}: {v} vs {w}")
    return problems


def cases():
    """(label, model, x, y, clip, scale) for every case."""
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(10, 50), nn.Sigmoid(), nn.Linear(50, 50), nn.Tanh(),
                          nn.Linear(50, 1))  # fmt: skip
    x, y = torch.randn(64, 10), torch.randn(64, 1)
    wide = nn.Sequential(nn.Linear(10, 600), nn.ReLU(), nn.Linear(600, 1))  # sampled histograms
    xw, yw = torch.randn(200, 10), torch.randn(200, 1)
    offset = copy.deepcopy(small)
    with torch.no_grad():
        offset[2].weight.add_(5.0)
        offset[0].weight.add_(100.0)
    x_nan, x_inf = x.clone(), x.clone()
    x_nan[0, 0], x_inf[0, 0] = math.nan, math.inf
    for clip in ("none", "value", "norm", "hook"):
        yield f"clip={clip}", small, x, y, clip, 1.0
    large = nn.Sequential(nn.Linear(10, 300), nn.ReLU(), nn.Linear(300, 300), nn.ReLU(),
                          nn.Linear(300, 1))  # fmt: skip
    for clip in ("none", "norm"):  # a 90,000-value layer: the interleaved partials
        yield f"large layers, clip={clip}", large, x, y, clip, 1.0
    yield "large layers, loss x1e17 (float32 overflow)", large, x, y, "none", 1e17
    yield "sampled histograms", wide, xw, yw, "none", 1.0
    for scale in (1e20, 1e30):
        yield f"loss x{scale:g} (float32 overflow)", small, x, y, "none", scale
    yield "weights offset by 5 and 100", offset, x, y, "none", 1.0
    yield "NaN input", small, x_nan, y, "none", 1.0
    yield "inf input", small, x_inf, y, "none", 1.0


def check() -> list[str]:
    """Every problem found (empty when the probe is right)."""
    problems, compact = [], 0
    for label, model, x, y, clip, scale in cases():
        fast, direct = _train(model, x, y, clip, eager=True, scale=scale)
        device, _ = _train(model, x, y, clip, eager=False, scale=scale)
        problems += _compare(fast, device, label)
        problems += _against_torch(fast, direct, label)
        if clip == "none":  # again as the Trainer's loop takes it
            fast, direct = _train(model, x, y, clip, True, scale, steps=4, trainer=True)
            device, _ = _train(model, x, y, clip, False, scale, steps=4, trainer=True)
            problems += _compare(fast, device, f"{label}, Trainer's loop")
            problems += _against_torch(fast, direct, f"{label}, Trainer's loop")
            compact += sum(type(r.layers) is CompactLayers for r in fast)
    if sweep_kernel() is not None and not compact:
        problems.append("no statistics step was kept compact (engine.compact_stats)")
    return problems


def main() -> int:
    """Print the verdict; exit 1 on any problem."""
    problems = check()
    for line in problems[:20]:
        print("  " + line)
    print("probe check:", "ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

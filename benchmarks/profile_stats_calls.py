"""What each call of a block-model statistics step costs right after backward.

The profile behind RESULTS.md's bound on "statistics every step": every
candidate call is timed right after a real `backward()` (one call per step,
rotating through them) and then again in a warm loop. Not part of the
default command; it prints a table in about 15 seconds.

Run: `.venv/bin/python -m benchmarks.profile_stats_calls [--threads N]`.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from engine.config import RunConfig
from engine.trainer import Trainer

STEPS_EACH = 300


def _calls(trainer: Trainer) -> dict:
    """The candidate calls, each a function of no arguments."""
    probe = trainer.probe
    params, layers = probe.params, probe.layer_params
    scalars = [torch.tensor(1.0) for _ in range(30)]
    grad_views = [p.grad.numpy().reshape(-1) for p in layers]
    weight_views = [p.detach().numpy().reshape(-1) for p in layers]

    def as_probe_calls() -> list[float]:
        parts = list(torch._foreach_norm([p.grad for p in params]))
        for p in layers:
            parts.append(p.grad.sum())
            parts.extend(torch.aminmax(p.grad))
        parts += list(torch._foreach_norm(layers))
        return torch.stack(parts).tolist()

    def through_numpy() -> list:
        rows = [(float(np.dot(g, g)), float(g.sum()), float(g.min()), float(g.max()))
                for g in grad_views]  # fmt: skip
        return rows + [float(np.dot(w, w)) for w in weight_views]

    return {
        "_foreach_norm of the gradients": lambda: torch._foreach_norm([p.grad for p in params]),
        "sum() of the layer gradients": lambda: [p.grad.sum() for p in layers],
        "aminmax of the layer gradients": lambda: [torch.aminmax(p.grad) for p in layers],
        "_foreach_norm of the weights": lambda: torch._foreach_norm(list(layers)),
        "stack of 30 scalars + tolist": lambda: torch.stack(scalars).tolist(),
        "all of them, as the probe calls them": as_probe_calls,
        "the same statistics through numpy": through_numpy,
        "nothing": lambda: None,
    }


def main() -> None:
    """Print the table: microseconds right after backward and in a warm loop."""
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    config = RunConfig().replace(epochs=1_000_000, device="cpu", sampling="exact")
    trainer = Trainer(config)
    trainer.step()  # the gradients exist (as views of the flat buffer) from here on
    calls = _calls(trainer)
    names = list(calls)
    after: dict[str, list[int]] = {name: [] for name in names}
    for i in range(len(names) * STEPS_EACH):
        name = names[i % len(names)]
        x, y = trainer._next_batch()
        loss = trainer.loss_fn(trainer.model(x), y)
        trainer.flat.zero()
        loss.backward()
        started = time.perf_counter_ns()
        calls[name]()
        after[name].append(time.perf_counter_ns() - started)
        trainer.optimizer.step()
    print(f"block model, {torch.get_num_threads()} threads; microseconds (median)")
    print(f"{'call':40s} {'after backward':>15s} {'warm loop':>10s}")
    for name in names:
        warm = []
        for _ in range(200):
            started = time.perf_counter_ns()
            calls[name]()
            warm.append(time.perf_counter_ns() - started)
        cold = statistics.median(after[name][20:]) / 1000
        print(f"{name:40s} {cold:15.1f} {statistics.median(warm) / 1000:10.1f}")


if __name__ == "__main__":
    main()

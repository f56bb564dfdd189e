"""Issue 4 §6: the probe on a CUDA GPU: overhead, and one device-to-host copy per step.

Skipped (one line, no failure) where torch sees no CUDA device. Otherwise:

- steps/s of the bare loop against the probe (statistics every step, the
  default policy) on the block model and the large MLP, interleaved as in
  bench_probe (on a GPU the loop's own `loss.item()` is its one sync too);
- synchronizations: with `torch.cuda.set_sync_debug_mode("warn")`, every
  synchronizing call warns; a sentinel step, a captured step and an
  activation step of the probe must each warn exactly once (their one read).

Run alone: `.venv/bin/python -m benchmarks.bench_gpu [--quick]`.
"""

from __future__ import annotations

import sys
import warnings

from benchmarks.common import Result, check, interleaved, median_and_spread


def _available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def sync_counts() -> dict[str, int]:
    """Synchronizing calls made by the probe in each kind of step (want 1 each)."""
    import torch

    from benchmarks.loops import Loop
    from engine.config import RunConfig
    from engine.probe import GradientProbe

    loop = Loop(RunConfig(device="cuda"))
    loop.to("cuda")
    probe = GradientProbe(loop.model, capture_every=2, activation_every=4, lr=0.01).__enter__()
    counts = {}
    names = {1: "sentinel step", 2: "captured step", 4: "activation step"}
    try:
        for step in range(6):
            x, y = loop.batch()
            probe.begin_step(step)
            loss = loop.loss_fn(loop.model(x), y)
            loop.optimizer.zero_grad()
            loss.backward()
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    probe.after_backward()
                    loop.optimizer.step()
                    probe.end_step(loss, 0)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            if step in names:
                counts[names[step]] = sum("synchroniz" in str(w.message) for w in caught)
    finally:
        probe.close()
    return counts


def overhead(quick: bool) -> list[Result]:
    """Bare against the probe on the GPU, interleaved."""
    from benchmarks.bench_probe import DEFAULTS, PLANS
    from benchmarks.loops import NEVER, Bare, Loop, Probe, block_runner

    results = []
    for model in ("block", "large MLP"):
        config = PLANS[model][0]
        loop = Loop(config)
        loop.to("cuda")
        steps, rounds = 50, (3 if quick else 9)
        bare = block_runner(Bare(loop), steps)
        runners = {
            "stats every step": block_runner(Probe(loop, 1, NEVER), steps),
            "default policy": block_runner(
                Probe(loop, DEFAULTS.capture_every, DEFAULTS.activation_every, budgeted=True),
                steps,
            ),
        }
        for name, values in interleaved(bare, runners, rounds).items():
            med, spread = median_and_spread(values)
            target = "<= 1.05" if name == "default policy" else ""
            results.append(
                Result("gpu", f"cuda {model}: {name} / bare", med, "x", target,
                       check(med, target), spread)
            )  # fmt: skip
    return results


def run(quick: bool = False, emit=None) -> list[Result]:
    """Everything above, or one skipped line without a GPU."""
    if not _available():
        results = [Result("gpu", "CUDA probe overhead and syncs", None, "x",
                          note="no CUDA device: skipped")]  # fmt: skip
    else:
        results = []
        for kind, n in sync_counts().items():
            results.append(
                Result("gpu", f"cuda syncs in a {kind}", float(n), "calls", "<= 1", n <= 1)
            )
        results += overhead(quick)
    for result in results:
        if emit is not None:
            emit(result)
    return results


def main() -> None:
    """Print the figures of this benchmark alone."""
    print("bench_gpu")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

"""Issue 4 §1: what watching the gradients costs a training step.

Steps/s of a bare PyTorch loop against the same loop watched by gradtui's
GradientProbe (statistics every step, every 10th step, the default policy)
and by what people use instead: the slides' capture_gradients (whole
gradients kept every step), TensorBoard's add_histogram per layer per step,
and per-layer `.item()` statistics. Then the end-to-end engine step of
`gradtui run` (Trainer + History) against a bare loop with the same batches.

Run alone: `.venv/bin/python -m benchmarks.bench_probe [--quick]`.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import Result, check, interleaved, median_and_spread
from benchmarks.loops import (
    NEVER,
    Bare,
    Engine,
    EngineBare,
    Loop,
    Naive,
    Probe,
    Source,
    TensorBoard,
    block_runner,
)
from engine.config import RunConfig

DEFAULTS = RunConfig()  # the capture policy the Trainer uses unless told otherwise

# name -> (config, steps per block, rounds of the probe set, rounds of the alternatives)
MODELS = {
    "block": (RunConfig(), 30, 9, 4),
    "regression": (
        RunConfig(
            dataset="regression",
            model="shallow",
            hidden_units=15,
            batch_size=32,
            standardize_target=True,
        ),
        300,
        11,
        4,
    ),
    "large MLP": (
        RunConfig(n_layers=8, hidden_units=1024, n_samples=1024, batch_size=256),
        2,
        7,
        2,
    ),
}
# Targets (issue 4): statistics every step, and the default policy, per model.
EVERY_TARGET = {"block": "<= 1.05", "large MLP": "<= 1.02"}
DEFAULT_TARGET = "<= 1.05"
SOURCE_FACTOR = 10.0  # gradtui's overhead at least 10x below the source's way
OVERHEAD_FLOOR = 0.005  # overheads below the noise count as this, not as 0


def probe_variants(loop: Loop) -> dict:
    """gradtui's probe under the capture policies issue 4 names."""
    return {
        "sentinels only": Probe(loop, NEVER, NEVER),
        "stats every step": Probe(loop, 1, NEVER),
        "everything every 10th step": Probe(loop, 10, 10),
        "default policy": Probe(
            loop, DEFAULTS.capture_every, DEFAULTS.activation_every, budgeted=True
        ),
    }


def alternative_variants(loop: Loop, model: str) -> dict:
    """What people watch gradients with instead."""
    variants = {
        "source's way (grad.tolist())": Source(loop, "tolist"),
        "source's way, clone()": Source(loop, "clone"),
        "TensorBoard add_histogram": TensorBoard(loop),
        "naive per-layer .item()": Naive(loop),
    }
    if model != "large MLP":
        variants["everything every step"] = Probe(loop, 1, 1)
    return variants


def measure(model: str, quick: bool) -> list[Result]:
    """All variants of one model, interleaved against the bare loop."""
    config, steps, rounds, alt_rounds = MODELS[model]
    if quick:
        rounds, alt_rounds = max(3, rounds // 3), max(1, alt_rounds // 2)
    loop = Loop(config)
    bare = block_runner(Bare(loop), steps)
    results = []
    medians = {}
    for variants, n in (
        (probe_variants(loop), rounds),
        (alternative_variants(loop, model), alt_rounds),
    ):
        runners = {name: block_runner(v, steps) for name, v in variants.items()}
        ratios = interleaved(bare, runners, n)
        for name, values in ratios.items():
            med, spread = median_and_spread(values)
            medians[name] = med
            target = ""
            if name == "stats every step":
                target = EVERY_TARGET.get(model, "")
            elif name == "default policy":
                target = DEFAULT_TARGET
            results.append(
                Result(
                    "probe", f"{model}: {name} / bare", med, "x", target, check(med, target), spread
                )
            )
    ours = max(medians["stats every step"] - 1, OVERHEAD_FLOOR)
    theirs = medians["source's way (grad.tolist())"] - 1
    factor = theirs / ours
    results.append(
        Result(
            "probe",
            f"{model}: source's overhead / probe's (every step)",
            factor,
            "x",
            f">= {SOURCE_FACTOR:g}",
            factor >= SOURCE_FACTOR,
            f"{theirs:.2f} vs {medians['stats every step'] - 1:+.3f}",
        )
    )
    return results


def measure_engine(model: str, quick: bool) -> list[Result]:
    """`gradtui run`'s step (Trainer + History, optionally JSONL) against a bare loop."""
    config, steps, rounds, _ = MODELS[model]
    config = config.replace(epochs=1_000_000, device="cpu")
    if quick:
        rounds = max(3, rounds // 3)
    bare = block_runner(EngineBare(config), steps)
    runners = {
        "engine step, default policy": block_runner(Engine(config), steps),
        "engine step + JSONL export": block_runner(Engine(config, export=True), steps),
    }
    results = []
    for name, values in interleaved(bare, runners, rounds).items():
        med, spread = median_and_spread(values)
        target = DEFAULT_TARGET if name == "engine step, default policy" else ""
        results.append(
            Result("probe", f"{model}: {name} / bare", med, "x", target, check(med, target), spread)
        )
    return results


def run(quick: bool = False, emit=None, models=None) -> list[Result]:
    """Every model (the large MLP last: it is the slow one); `emit` sees each result."""
    results = []
    for model in models or MODELS:
        batch = measure(model, quick)
        if model != "large MLP":
            batch += measure_engine(model, quick)
        for result in batch:
            if emit is not None:
                emit(result)
        results += batch
    return results


def main() -> None:
    """Print the figures of this benchmark alone (`--model block` for one model)."""
    quick = "--quick" in sys.argv
    models = [sys.argv[sys.argv.index("--model") + 1]] if "--model" in sys.argv else None
    print(f"bench_probe (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    run(quick, emit=lambda r: print(r.line(), flush=True), models=models)


if __name__ == "__main__":
    main()

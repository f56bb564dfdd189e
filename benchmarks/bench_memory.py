"""Issue 4 §4: memory of a long headless run with per-step capture: bounded.

A 1,000,000-step run of a 10-layer model with the probe capturing every step
takes hours of training; what could grow is what the run keeps, and a
headless run keeps exactly one thing per step: the record appended to its
History (the probe, the trainer and the optimizer hold nothing per step).
So the benchmark has two parts, each in a fresh subprocess, the two side by
side (each uses one thread; RSS does not depend on what else runs):

1. the History of `gradtui run` fed 1,000,000 synthetic records of a
   10-layer model (every statistic present, histograms every 10th step),
   RSS sampled along the way;
2. the real engine: a Trainer (probe capturing every step) on a 10-layer
   block model, its records appended to a History, for 4,000 steps, RSS
   sampled at 2,000 and 4,000 steps — the real probe keeps nothing either.

Target: RSS at the end <= RSS at 10,000 steps + 100 MB.

Nothing here is timed, so the benchmark command starts these children
(`Pending`) while the frame benchmark builds its histories, which is untimed
too, and waits for them before its first timed frame: ~35 s of the command
in a slow hour, on a core that would otherwise idle.

Run alone: `.venv/bin/python -m benchmarks.bench_memory [--quick]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.common import Budget, Result

TARGET_MB = 100.0
_MB = 1024 * 1024


def _rss() -> float:
    """Resident set size of this process, MB (Linux /proc, else psutil)."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / _MB


def synthetic_child(steps: int) -> dict:
    """Append `steps` synthetic records to a History; RSS at checkpoints."""
    import gc

    from benchmarks.synthetic import LAYERS, records
    from engine.history import History

    history = History()
    marks = {10_000, 100_000, 500_000, steps}
    out = {"start": _rss()}
    for record in records(steps, LAYERS):
        history.append(record)
        if history.count in marks:
            gc.collect()
            out[str(history.count)] = _rss()
    out["history_mb"] = history.memory_bytes() / _MB
    return out


def engine_child(steps: int) -> dict:
    """A real Trainer, capture every step, 10 layers, records into a History."""
    import gc

    import torch

    from engine.config import RunConfig
    from engine.history import History
    from engine.trainer import Trainer

    torch.set_num_threads(1)
    config = RunConfig(
        n_layers=9, hidden_units=32, n_samples=256, batch_size=64, shuffle=True,
        epochs=1_000_000, capture_every=1, device="cpu",
    )  # fmt: skip
    trainer, history = Trainer(config), History()
    out = {"start": _rss()}
    for step in range(1, steps + 1):
        history.append(trainer.step())
        if step in (steps // 2, steps):
            gc.collect()
            out[str(step)] = _rss()
    trainer.close()
    return out


def _spawn(kind: str, steps: int) -> subprocess.Popen:
    code = (
        "import json, sys; from benchmarks import bench_memory as b; "
        f"print(json.dumps(b.{kind}_child({steps})))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=root,
    )  # fmt: skip


def _answer(child: subprocess.Popen) -> dict:
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"bench_memory child exited {child.returncode}: {err[-300:]}")
    return json.loads(out.strip().splitlines()[-1])


class Pending:
    """The two children, started; `wait` until both have answered."""

    def __init__(self, quick: bool) -> None:
        self.steps = 200_000 if quick else 1_000_000
        self.engine_steps = 2_000 if quick else 4_000  # growth after half of them
        self._children = (_spawn("synthetic", self.steps), _spawn("engine", self.engine_steps))
        self.answers: tuple[dict, dict] | None = None

    def wait(self) -> None:
        """Block until both children have printed their RSS figures."""
        if self.answers is None:
            self.answers = tuple(_answer(child) for child in self._children)


def run(
    quick: bool = False, emit=None, budget: Budget | None = None, pending: Pending | None = None
) -> list[Result]:
    """Both parts (started here unless `pending` has them); `emit` sees each result.

    Not cut by a time `budget`: the million records are the figure's point.
    """
    pending = pending or Pending(quick)
    pending.wait()
    synth, real = pending.answers
    steps, engine_steps = pending.steps, pending.engine_steps
    results = []
    base = synth["10000"]
    growth = synth[str(steps)] - base
    results.append(Result(
        "memory", f"History, {steps:,} records: RSS growth after 10,000", growth, "MB",
        f"<= {TARGET_MB:g}", growth <= TARGET_MB,
        f"RSS {base:.0f} MB at 10k, {synth[str(steps)]:.0f} MB at the end; "
        f"history arrays {synth['history_mb']:.1f} MB",
    ))  # fmt: skip
    half = str(engine_steps // 2)
    growth = real[str(engine_steps)] - real[half]
    results.append(Result(
        "memory", f"Trainer+History, {engine_steps:,} real steps: RSS growth after {int(half):,}",
        growth, "MB", f"<= {TARGET_MB:g}", growth <= TARGET_MB,
        f"RSS {real[half]:.0f} MB then {real[str(engine_steps)]:.0f} MB",
    ))  # fmt: skip
    for result in results:
        if emit is not None:
            emit(result)
    return results


def main() -> None:
    """Print the figures of this benchmark alone."""
    print("bench_memory")
    run("--quick" in sys.argv, emit=lambda r: print(r.line(), flush=True))


if __name__ == "__main__":
    main()

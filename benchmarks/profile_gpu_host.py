"""The host's share of a GPU step, emulated on the CPU: what a GPU-less machine can measure.

A GPU step of the slides' models is host-bound (benchmarks/RESULTS.md,
section 6): what the probe costs it is mostly host time, its torch calls
and its Python. This runs the probe's device path on the CPU the way a GPU
box runs it (the read queued for one copy, no flat buffer, the sentinel and
statistics graphs in place) with each graph's replay stood in for by a
fixed vector, so only the host's work is timed. Printed, in place (right
after a real `backward()`, where the caches are cold as on a GPU's host):

- a statistics step's phases: `after_backward`, `end_step` (the read and
  the record) and `History.append`, medians over STEPS steps of the
  Trainer's block model;
- a plain step's sentinels and record, through the Trainer's lane and
  through the probe's general path, in a warm loop.

Not part of the default command (a profile, like profile_stats_calls.py).
Run: `.venv/bin/python -m benchmarks.profile_gpu_host`, in a process of its own.
"""

from __future__ import annotations

import statistics
import time

import torch

STEPS = 2000  # statistics steps timed
WARM = 300  # steps before the timing
LOOPS = 5000  # plain steps a warm-loop round


def _emulate_gpu_path() -> None:
    # What a GPU box differs in, for the probe: no eager reads, no flat
    # buffer, graphs where the parameters allow. The set and the function
    # are replaced in place, so modules that hold them see the change.
    import engine.flat_grads as flat_module
    import engine.probe as probe_module

    probe_module.EAGER_DEVICES.clear()
    probe_module.graphable = lambda params: True
    flat_module.FlatGradients.suits = staticmethod(lambda params: False)


class _Replay:
    """A stand-in for a placement's graph: the same vector every step, at the cost of a call."""

    def __init__(self, vector: torch.Tensor) -> None:
        self.vector = vector
        self.replays = 0
        self.active = True

    def replayed(self, grads: list, loss: torch.Tensor) -> torch.Tensor:
        """As PlacementGraphs.replayed on a hit: the placement looked up, then the output."""
        _ = (loss.data_ptr(), *[g.data_ptr() for g in grads])  # the placement, as a hit pays it
        self.replays += 1
        return self.vector

    packed = replayed

    def close(self) -> None:
        """As PlacementGraphs.close."""
        self.active = False


def _trainer(capture_every: int):
    from engine.config import RunConfig
    from engine.trainer import Trainer

    config = RunConfig(
        device="cpu", batch_size=16, epochs=1_000_000, capture_every=capture_every,
        activation_every=1 << 40, sampling="exact",
    )  # fmt: skip
    trainer = Trainer(config)
    probe = trainer.probe
    stats = probe._graphed
    grads = [torch.randn_like(p) for p in probe.params]
    stats.graphs = _Replay(stats.compute(grads, torch.tensor(0.5)))
    probe.sentinel_graphs = _Replay(torch.tensor([0.5, 1.0]))
    return trainer


def statistics_step_phases() -> dict[str, float]:
    """Median us in place of each phase of a statistics step (every step captures)."""
    from engine.history import History

    trainer, history = _trainer(1), History()
    probe = trainer.probe
    times: dict[str, list[float]] = {"after_backward": [], "end_step": [], "History.append": []}

    def timed(name: str, call):
        def run(*args):
            started = time.perf_counter()
            out = call(*args)
            times[name].append(time.perf_counter() - started)
            return out

        return run

    probe.after_backward = timed("after_backward", probe.after_backward)
    probe.end_step = timed("end_step", probe.end_step)
    append = timed("History.append", history.append)
    for _ in range(WARM):
        append(trainer.step(exact=True))
    for series in times.values():
        series.clear()
    for _ in range(STEPS):
        append(trainer.step(exact=True))
    trainer.close()
    return {name: statistics.median(v) * 1e6 for name, v in times.items()}


def plain_step_us() -> dict[str, float]:
    """Best-of-rounds us of a plain step's sentinels and record, warm: the lane and the general path."""
    trainer = _trainer(1 << 40)
    probe, lane, model = trainer.probe, trainer._lane, trainer.model
    x, y = next(iter(trainer.batches.epoch()))
    loss = trainer.loss_fn(model(x), y)
    trainer.optimizer.zero_grad()
    loss.backward()

    def general():
        probe.begin_step(7, capture=False, activations=False)
        probe.after_backward(loss)
        return probe.end_step(loss, 0)

    def through_lane():
        probe.begin_step(7, capture=False, activations=False)
        return lane.record(7, 0, lane.read(loss, 7, 0))

    out = {}
    for name, call in (("general path", general), ("the Trainer's lane", through_lane)):
        for _ in range(500):
            call()
        rounds = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(LOOPS):
                call()
            rounds.append((time.perf_counter() - started) / LOOPS * 1e6)
        out[name] = min(rounds)
    trainer.close()
    return out


def main() -> None:
    """Print both tables."""
    _emulate_gpu_path()
    print("GPU path emulated on the CPU (replays stood in for), block model, batch 16")
    print(f"\na statistics step, in place (median us of {STEPS} steps):")
    for name, us in statistics_step_phases().items():
        print(f"  {name:<16} {us:7.1f}")
    print("\na plain step's sentinels and record, warm loop (best us of 7 rounds):")
    for name, us in plain_step_us().items():
        print(f"  {name:<20} {us:6.2f}")


if __name__ == "__main__":
    main()

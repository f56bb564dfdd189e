"""The training loops bench_probe compares: bare, gradtui's probe, and the alternatives.

Every variant trains the same model, on the same batches, with the same
optimizer; only what it does to watch the gradients differs. A variant is
started before its timed block and stopped after it, so registering and
removing hooks, opening and closing files are not timed.
"""

from __future__ import annotations

import itertools
import time

import torch
from torch import nn

from benchmarks.common import now
from engine.clipping import ClipStrategy
from engine.config import RunConfig
from engine.data import make_tensors
from engine.flat_grads import FlatGradients
from engine.model import build_model
from engine.policy import CapturePolicy
from engine.probe import GradientProbe
from engine.stats import weight_layers

NEVER = 1 << 62  # a capture period that never comes round again


class Loop:
    """A model, its optimizer, a cycle of batches and the bare step."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        X, y = make_tensors(config)
        model, _ = build_model(config)
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        self.loss_fn = nn.BCEWithLogitsLoss() if config.dataset == "ball" else nn.MSELoss()
        b = config.batch_size
        self.batches = [(X[i : i + b], y[i : i + b]) for i in range(0, len(X), b)]
        self._batches = itertools.cycle(self.batches)
        self.layer_names, self.layers = weight_layers(model)

    def to(self, device: str) -> None:
        """Move the model, its optimizer and the batches to `device`."""
        self.model.to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr)
        self.batches = [(x.to(device), y.to(device)) for x, y in self.batches]
        self._batches = itertools.cycle(self.batches)
        self.layer_names, self.layers = weight_layers(self.model)

    def batch(self):
        """The next batch of the cycle."""
        return next(self._batches)

    def flat_buffer(self) -> FlatGradients | None:
        """As the Trainer does: a small model's gradients as views of one flat buffer (or None)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return FlatGradients(params) if FlatGradients.suits(params) else None

    def backward(self, flat: FlatGradients | None = None) -> torch.Tensor:
        """Forward and backward on the next batch, gradients zeroed first; the loss.

        With `flat`, the gradients are zeroed in that buffer, as the Trainer does.
        """
        x, y = self.batch()
        loss = self.loss_fn(self.model(x), y)
        if flat is not None:
            flat.zero()
        else:
            self.optimizer.zero_grad()
        loss.backward()
        return loss

    def bare_step(self, flat: FlatGradients | None = None) -> float:
        """One plain step; the loss is read as any training loop logs it.

        With `flat`, the gradients are zeroed in that buffer (see `backward`).
        """
        loss = self.backward(flat)
        self.optimizer.step()
        return loss.item()


class Variant:
    """One way of watching: `start`, `step` a number of times, `stop`."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.step_index = 0

    def start(self) -> None:
        """Prepare (hooks, files); not timed."""

    def stop(self) -> None:
        """Undo `start`; not timed."""

    def close(self) -> None:
        """Let go of what lasts across blocks (files), once a set is done; not timed."""

    def settle(self, seconds: float) -> None:
        """Run untimed for `seconds`, so a time-budgeted policy reaches its steady state.

        A run's first captures are paid from a small allowance (engine.policy);
        a long run amortizes it, a benchmark's few short blocks would not.
        """
        self.start()
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                self.step()
        finally:
            self.stop()

    def step(self) -> None:
        """One watched training step."""
        self.loop.bare_step()
        self.step_index += 1


class Bare(Variant):
    """The baseline: nothing watched."""


class FlatBare(Variant):
    """Nothing watched, but the gradients zeroed through one flat buffer, as the Trainer does.

    What the probe variants' loop saves before the probe does any work: on the
    regression model, one fill instead of `zero_grad()`'s loop and fresh
    gradients, ~9% of a step (benchmarks/step_pairs.py shows it each run).
    """

    def start(self) -> None:
        self.flat = self.loop.flat_buffer()

    def stop(self) -> None:
        self.loop.optimizer.zero_grad()  # the next variant starts from autograd's own

    def step(self) -> None:
        self.loop.bare_step(self.flat)
        self.step_index += 1


class Probe(Variant):
    """gradtui's GradientProbe with a capture policy, in the Trainer's loop.

    With `budgeted`, statistics and activation steps follow the Trainer's
    time-budgeted policy (engine.policy) instead of the plain every-k rules.
    A probe is made for each block (the other variants share the model), so
    a block pays what a probe's first steps cost; with `kept`, one probe
    serves every block, as in a user's loop, its hooks removed in between.
    """

    def __init__(
        self,
        loop: Loop,
        capture_every: int,
        activation_every: int,
        budgeted: bool = False,
        graphs: bool = True,
        kept: bool = False,
    ) -> None:
        """`graphs=False`: a GPU's steps op by op, not replayed (an A/B of the graphs)."""
        super().__init__(loop)
        self.capture_every, self.activation_every = capture_every, activation_every
        self.graphs, self.kept = graphs, kept
        self.replays = 0  # steps a CUDA graph replayed (sentinels or statistics), all blocks
        self.policy = CapturePolicy(capture_every, activation_every) if budgeted else None
        self.probe: GradientProbe | None = None
        self._stopped: float | None = None

    def start(self) -> None:
        self._begin()
        # Last: what starting costs is no step's either (CapturePolicy.skip).
        skip_gap(self.policy, self._stopped)

    def _begin(self) -> None:
        if self.kept and self.probe is not None:
            self.probe.taps.attach()
            self.probe.clip.attach(self.probe.params)
            return  # its flat buffer re-attaches its views when it zeroes them
        self.probe = GradientProbe(
            self.loop.model,
            clip=ClipStrategy(),
            capture_every=self.capture_every,
            activation_every=self.activation_every,
            lr=self.loop.config.lr,
        ).__enter__()
        if not self.graphs:  # the same reductions, issued op by op
            for graphs in (self.probe.sentinel_graphs, self.probe._graphed):
                if graphs is not None:
                    graphs.close()
        self.flat = self.probe.flat = self.loop.flat_buffer()

    def stop(self) -> None:
        if self.kept:  # its graphs stay; their replays are counted once, at the end
            self.probe.taps.close()
            self.probe.clip.close()
            self.replays = replays(self.probe)
        else:
            self.replays += replays(self.probe)
            self.probe.close()
        self.loop.optimizer.zero_grad()  # the next variant starts from autograd's own
        self._stopped = time.perf_counter()

    def step(self) -> None:
        loop, probe, policy = self.loop, self.probe, self.policy
        if policy is None:  # fixed periods: nothing to time (the Trainer times for its budget)
            probe.begin_step(self.step_index)
            loss = loop.backward(self.flat)
            probe.after_backward(loss)
            loop.optimizer.step()
            probe.end_step(loss, 0)
            self.step_index += 1
            return
        start = time.perf_counter()
        stats, acts = policy.plan(self.step_index)
        probe.begin_step(self.step_index, activations=acts, capture=stats)
        loss = loop.backward(self.flat)
        if not (stats or acts):  # as the Trainer does, a plain step is not timed inside
            probe.after_backward(loss)
            loop.optimizer.step()
            probe.end_step(loss, 0)
            policy.done(self.step_index, (probe.capture, False), start, 0.0)
            self.step_index += 1
            return
        measured = time.perf_counter()
        probe.after_backward(loss)
        measuring = time.perf_counter() - measured
        loop.optimizer.step()
        measured = time.perf_counter()
        probe.end_step(loss, 0)
        measuring += time.perf_counter() - measured
        policy.done(self.step_index, (probe.capture, acts), start, measuring)
        self.step_index += 1


def skip_gap(policy: CapturePolicy | None, stopped: float | None) -> None:
    """Tell a time-budgeted policy that the time since `stopped` was no step of its loop.

    Between a variant's blocks the other variants run. Unannounced, that gap
    reads as a pause: the block's last step earns two steps' credit and a
    capture on it is charged a whole step over its cost (CapturePolicy.skip).
    In the policy's tests, 0.2 s gaps every 10 steps of 4 ms cut the
    statistics captures from 707 to 599 of 3,000 steps and raised the
    activation captures from 71 to 77.
    """
    if policy is not None and stopped is not None:
        policy.skip(time.perf_counter() - stopped)


def replays(probe: GradientProbe) -> int:
    """Steps whose sentinels or statistics `probe` took by a CUDA graph's replay, so far."""
    stats = probe._graphed
    kept = [probe.sentinel_graphs, None if stats is None else stats.graphs]
    return sum(graphs.replays for graphs in kept if graphs is not None)


def block_runner(variant: Variant, steps: int):
    """A callable that runs `steps` steps of `variant` and returns their seconds."""

    def run() -> float:
        variant.start()
        try:
            start = now()
            for _ in range(steps):
                variant.step()
            return now() - start
        finally:
            variant.stop()

    return run

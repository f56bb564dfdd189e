"""One training run, advanced one step at a time: data, model, optimizer, probe.

The Trainer is synchronous and owns no thread; `engine.session` runs it in
one, and the headless command drives it directly.
"""

from __future__ import annotations

import gc
import math
import threading
import time

import torch
from torch import nn

from engine.clipping import make_clip
from engine.collector import collector_paused, import_quietly
from engine.config import ConfigError, RunConfig
from engine.data import EpochBatches, lazy_imports, make_tensors
from engine.flat_grads import FlatGradients
from engine.model import build_model
from engine.plain_lane import PlainLane, ReplayLane
from engine.policy import NOTHING, CapturePolicy
from engine.probe import EAGER_DEVICES, GradientProbe
from engine.records import NonFinite, StepRecord

# Output bounds of the saturating activations, for the saturation statistic.
_SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but no CUDA GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


_threads_before_sharing: int | None = None


def set_core_sharing(share: bool) -> None:
    """Train on one core fewer while another session trains beside this one.

    torch defaults to one thread per core, and its threads spin at the end of
    each parallel op: two sessions training at once on all cores each fight
    over every core. `share=False` puts back the count torch had, so a single
    run (the dashboard's, `gradtui run`'s) trains as a plain script would.
    torch's thread count is per process, hence this module-level memory.
    """
    import os

    global _threads_before_sharing
    cores = os.cpu_count() or 1
    if share and torch.get_num_threads() >= cores > 1:
        _threads_before_sharing = torch.get_num_threads()
        torch.set_num_threads(cores - 1)
    elif not share and _threads_before_sharing is not None:
        torch.set_num_threads(_threads_before_sharing)
        _threads_before_sharing = None


_long_lived_frozen = False
_freezing = threading.Lock()


def freeze_long_lived(config: RunConfig | None = None) -> None:
    """Keep the cyclic garbage collector off what was alive before the first run.

    torch's import leaves ~170,000 objects that live as long as the process;
    every full collection scans them all. Training allocates enough to set
    off a few full collections a thousand steps: 310 ms of a 4.2 s run of the
    block model, measured (55 ms once those objects sit in the permanent
    generation, where `gc.freeze` puts them). Done once, before the first
    Trainer builds anything, so the runs' own objects stay collectable.

    What the first run would import on first use is imported first and
    frozen too: torch.optim's first optimizer imports ~800 modules
    (torch._dynamo), `config`'s data set may import sklearn (~1,000 more).
    Left unfrozen, those ~190,000 objects made each full collection of a
    run's first seconds take 50-190 ms, a few a second: the dashboard's
    frames waited on them.
    """
    global _long_lived_frozen
    # Two runs starting at once (compare mode) wait for one freeze: the second
    # must not import what the first is half-way through importing (a module
    # can then be seen half-initialized: sklearn's pandas, for one).
    with _freezing:
        if _long_lived_frozen:
            return
        with collector_paused():
            for module in lazy_imports(config) if config is not None else ():
                import_quietly(module)
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # its lazy imports
        gc.freeze()
        _long_lived_frozen = True


class Trainer:
    """Builds the configured experiment and trains it step by step."""

    def __init__(self, config: RunConfig, share_cores: bool = False) -> None:
        """`share_cores`: another session trains beside this one (see `set_core_sharing`)."""
        freeze_long_lived(config)
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cpu":
            set_core_sharing(share_cores)
        X, y = make_tensors(config)
        model, generator = build_model(config)
        self.model = model.to(self.device)
        self.batches = EpochBatches(
            X.to(self.device), y.to(self.device), config.batch_size, config.shuffle, generator
        )
        self.loss_fn = nn.BCEWithLogitsLoss() if config.dataset == "ball" else nn.MSELoss()
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=config.lr, momentum=config.momentum
            )
        activation = "tanh" if config.model == "rnn" else config.activation
        self.probe = GradientProbe(
            self.model,
            clip=_clip_strategy(config, self.model),
            capture_every=config.capture_every,
            activation_every=config.activation_every,
            lr=config.lr,
            saturating=_SATURATING.get(activation),
        ).__enter__()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.flat = FlatGradients(params) if FlatGradients.suits(params) else None
        self.probe.flat = self.flat
        # The rnn's per-time-step gradient norms (looked up once: a module's
        # missing attribute costs microseconds to find missing).
        self._timesteps = getattr(self.model, "timestep_grad_norms", None)
        # Plain steps of a small CPU model, or of a GPU's, take a lane (engine.plain_lane).
        self._lane = PlainLane.for_probe(
            self.probe, EAGER_DEVICES, self._timesteps
        ) or ReplayLane.for_probe(self.probe, self._timesteps)
        self.steps_per_epoch = len(self.batches)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step_index = 0
        self.epoch = 0
        self._epoch_batches = self.batches.epoch()  # a generator: nothing drawn until used
        self.first_nonfinite: NonFinite | None = None
        self.layer_names = list(self.probe.layer_names)
        # Which steps capture statistics and activations: within a time budget.
        self.policy = CapturePolicy(
            config.capture_every, config.activation_every, exact=config.sampling == "exact"
        )

    @property
    def finished(self) -> bool:
        """True once every configured epoch has been trained."""
        return self.step_index >= self.total_steps

    def _next_batch(self):
        # The next (x, y); Trainer.step draws it inline.
        batch = next(self._epoch_batches, None)
        return batch if batch is not None else self._next_epoch()

    def _next_epoch(self):
        # The first batch of the next epoch, once the current one ran out.
        self.epoch += 1
        self._epoch_batches = self.batches.epoch()
        return next(self._epoch_batches)

    def step(self, exact: bool = False) -> StepRecord:
        """Train on one batch and return what the probe recorded.

        `exact`: capture on the configured periods, not the time budget's (a single step).
        """
        start = time.perf_counter()
        # On a 0.1 ms step each Python frame of bookkeeping costs about a point of
        # the run (more than its lines: it runs cold right after the step's own
        # work), so a plain step calls as few as it can: the next batch, and the
        # policy's answers between captures, are read here (CapturePolicy's fast path).
        batch = next(self._epoch_batches, None)
        x, y = batch if batch is not None else self._next_epoch()
        if not self.model.training:  # train() walks every module: not on every step
            self.model.train()
        probe, step, policy = self.probe, self.step_index, self.policy
        if step < policy.quiet_until and not exact:
            stats = activations = False
        else:
            stats, activations = policy.plan(step, exact)
        probe.begin_step(step, activations=activations, capture=stats)
        loss = self.loss_fn(self.model(x), y)
        if self.flat is not None:
            self.flat.zero()
        else:
            self.optimizer.zero_grad()
        loss.backward()
        lane = self._lane
        if lane is not None and not (stats or activations):
            read = lane.read(loss, step, self.epoch)
            if read is not None:
                self.optimizer.step()
                if step == policy.queue_next:  # done(step, NOTHING, start, 0.0)
                    policy.queued.append(start)
                    policy.queue_next = step + 1
                else:
                    policy.done(step, NOTHING, start, 0.0)
                self.step_index = step + 1
                # The CPU's lane made the record itself, where the kernel is a module.
                record = read if lane.recorded else lane.record(step, self.epoch, read)
                # A GPU's lane records a step that broke as it is (the CPU's leaves the lane).
                if (
                    not lane.finite
                    and self.first_nonfinite is None
                    and not (math.isfinite(record.loss) and math.isfinite(record.grad_norm))
                ):
                    self.first_nonfinite = self._check_nonfinite(record)
                return record
            # Not finite, or the buffer was let go: the probe's general path.
        timesteps = self._timesteps
        # What measuring costs, for the policy's budget; a plain step's few
        # microseconds go uncounted (timing them would cost about as much).
        clock = time.perf_counter if stats or activations else _no_clock
        measured = clock()
        probe.after_backward(loss)
        measuring = clock() - measured
        self.optimizer.step()
        measured = clock()
        record = probe.end_step(loss, self.epoch, timesteps() if timesteps else None)
        measuring += clock() - measured
        # A record's loss and total norm are floats, never None.
        if self.first_nonfinite is None and not (
            math.isfinite(record.loss) and math.isfinite(record.grad_norm)
        ):
            self.first_nonfinite = self._check_nonfinite(record)
        policy.done(step, (probe.capture, activations), start, measuring)
        self.step_index = step + 1
        return record

    def _check_nonfinite(self, record: StepRecord) -> NonFinite | None:
        loss_bad = not math.isfinite(record.loss)
        if not loss_bad and math.isfinite(record.grad_norm):
            return None
        layer = self.probe.nonfinite_layer()
        what = "gradient"
        if layer is None:
            # Finite elements whose norm overflowed, or a loss gone bad on its own.
            bad = [n for n, s in record.layers.items() if not _finite(s.raw_grad_norm)]
            layer, what = (bad[0], "gradient norm") if bad else ("loss", "loss")
        if loss_bad:
            what = "loss"
        return NonFinite(step=record.step, layer=layer, what=what)

    def close(self) -> None:
        """Remove the probe's hooks."""
        self.probe.close()


def _no_clock() -> float:
    return 0.0


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _clip_strategy(config: RunConfig, model: nn.Module):
    if config.model == "rnn":
        from engine.recurrent import clip_for

        own = clip_for(config, model)
        if own is not None:
            return own
    return make_clip(config.clip, config.clip_value, config.max_norm, config.norm_type)

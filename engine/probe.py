"""Per-layer statistics of a training step, for any nn.Module in any loop.

Usage in a plain loop::

    with GradientProbe(model, clip=make_clip("norm")) as probe:
        for step, (x, y) in enumerate(batches):
            probe.begin_step(step)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            probe.after_backward(loss)  # measures raw, clips, measures applied
            optimizer.step()
            record = probe.end_step(loss, epoch)

Cost policy: the sentinels (loss, total gradient norm raw and clipped, each
layer's gradient norm) are taken on every step; the full gradient statistics
and the weights' norms (the update ratio) on step 0 and every
`capture_every`-th step; activations, histograms and the weights' mean and
std on step 0 and every `activation_every`-th step. On the CPU a model of a
million layer weights or more (WEIGHTS_SAMPLED_FROM) takes its weights' norms
with the activations too.

What a step measured is read back in one go: on a GPU, one device-to-host copy
per step (more only on a step whose loss or gradient went non-finite). On the
CPU, where a read costs no synchronization, values are read as soon as
computed, while the tensors are as measured, so that the few statistics the
fast partials cannot give to float tolerance are recomputed (engine.stats).
A small CPU model's statistics step keeps the C sweep's numbers as they are
and its record's layers are built from them when read (engine.compact_stats);
a GPU's keeps its graph's vector the same way (engine.graphed_stats). A plain
step over a CPU flat buffer reads its sentinels through the Trainer's own lane
(engine.plain_lane). Steps no fast path takes go the general way
(engine.general_step).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.activation_tap import ActivationTap
from engine.clipping import ClipStrategy
from engine.compact_stats import CompactLayout, compact_found, compact_lane, finish_record
from engine.general_step import measure
from engine.graphed_sentinels import GraphedSentinels
from engine.graphed_stats import GraphedStatistics, GraphedStep, graphable, graphed_found
from engine.heap import keep_freed_memory
from engine.histograms import HIST_BINS
from engine.native_stats import FreshSweep
from engine.plain_lane import PlainLane, PlainStep
from engine.readout import ReadQueue, first_nonfinite, store
from engine.recording import blank_layers, make_record
from engine.records import StepRecord
from engine.sentinels import concatenable, read_packed, sentinel_pending
from engine.stats import HostNorms, weight_layers

__all__ = ["GradientProbe", "HIST_BINS"]

# Devices whose values are read as soon as computed (a read there costs no
# synchronization). Others get torch's own reductions and one read per step;
# tests empty this set to run that path on the CPU.
EAGER_DEVICES = {"cpu"}
INTERLEAVE_ABOVE = 1 << 16  # elements in a layer: larger ones are read tensor by tensor
WEIGHTS_SAMPLED_FROM = 1 << 20  # layer weights in all: on the CPU, their norms with the activations


class GradientProbe:
    """Measures gradients, weights and activations of `model`, step by step.

    The layers are the parameters of two or more dimensions, named without
    ".weight" (engine.stats.weight_layers); hooks are removed on exit,
    whatever happens. Entering also has glibc's malloc keep freed memory
    for the process's next steps (engine.heap.keep_freed_memory).
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
        self._lane = None  # compact_found's steady state (engine.compact_stats.compact_lane)
        self._plain: PlainLane | None | bool = False  # a plain step's lane; False: not built yet
        self._flat = None
        self.clip = clip or ClipStrategy()
        self.capture_every = capture_every
        self.activation_every = activation_every
        self._lr = lr  # for the update-to-weight ratio; None leaves it out
        self.saturating = saturating  # (low, high) bounds of a sigmoid/tanh output
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.layer_names, self.layer_params = weight_layers(model)
        index_of = {id(p): i for i, p in enumerate(self.params)}
        self._layer_index = [index_of[id(p)] for p in self.layer_params]
        self._layer_numel = [p.numel() for p in self.layer_params]
        self._all_present = tuple(range(len(self.params)))
        self._all_numel = sum(p.numel() for p in self.params)
        self.concatenable = concatenable(self.params)  # a GPU sentinel's one norm
        # Layers too big for the cache get their statistics taken tensor by tensor.
        self.large_layers = max(self._layer_numel, default=0) > INTERLEAVE_ABOVE
        self.taps = ActivationTap(model, self.layer_names)
        # A small CPU model's weight norms without torch's per-call cost (HostNorms).
        self._host_norms = None if self.large_layers else HostNorms(list(self.layer_params))
        self._fresh_sweep: FreshSweep | None | bool = False  # False: not built yet
        # On the CPU, reading a large model's weights for their norms costs as
        # much as its gradient statistics (1.35 against 1.5 ms a statistics
        # step of an 8x1024 MLP, out of ~100 on 2 cores): they, and so the
        # update ratio, come with the activations there, like the weights'
        # mean and std. A GPU reads them in its statistics graph at no cost.
        self.weights_sampled = sum(self._layer_numel) >= WEIGHTS_SAMPLED_FROM
        self.blank_layers = blank_layers(self.layer_names)  # a sentinel record's layers
        # A small CPU model's statistics step, kept compact (engine.compact_stats).
        self.compact_layout = CompactLayout(
            self.layer_names, self._layer_index, self._layer_numel, len(self.params)
        )
        self._pending = None  # what after_backward left for end_step
        self._graphed: GraphedStatistics | None = None  # a GPU's statistics, replayed
        self.sentinel_graphs: GraphedSentinels | None = None  # a GPU's sentinels, replayed
        self.capture = self.capture_acts = self._armed = False
        self.step = 0

    @property
    def flat(self):
        """The Trainer's flat gradient buffer (engine.flat_grads), when it keeps one; else None."""
        return self._flat

    @flat.setter
    def flat(self, flat) -> None:
        self._flat, self._lane, self._plain = flat, None, False

    @property
    def lr(self) -> float | None:
        """The learning rate of the update-to-weight ratio; None leaves the ratio out."""
        return self._lr

    @lr.setter
    def lr(self, lr: float | None) -> None:
        self._lr, self._lane = lr, None  # the compact lane keeps the lr it was built with

    @property
    def fresh_sweep(self) -> FreshSweep | None:
        """The C sweep of this model's gradients (engine.native_stats), built on first use; or None."""
        if self._fresh_sweep is False:
            self._fresh_sweep = FreshSweep.build(self.params)
        return self._fresh_sweep

    @property
    def clip(self) -> ClipStrategy:
        """How the gradients are clipped between the raw and the applied measurements."""
        return self._clip

    @clip.setter
    def clip(self, clip: ClipStrategy) -> None:
        self._clip, self._lane, self._plain = clip, None, False

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> GradientProbe:
        # The process keeps freed memory for the next step (engine.heap): what a
        # watched step allocates beside the model's tensors then cannot move the
        # heap's top and make the model's pages fault in again each step.
        keep_freed_memory()
        self.clip.attach(self.params)
        self.taps.attach()
        clip = self.clip
        if graphable(self.params) and not clip.changes_gradients and clip.raw_is_grad:
            try:
                self._graphed = GraphedStatistics(
                    self.params, self._layer_index, list(self.layer_params), self.layer_names
                )
            except Exception:  # a graph is a speed-up: without one, op by op
                self._graphed = None
            self.sentinel_graphs = GraphedSentinels()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook the probe and its clip strategy registered; drop its graphs."""
        self.taps.close()
        self.clip.close()
        if self._graphed is not None:
            self._graphed.close()
            self._graphed = None
        if self.sentinel_graphs is not None:
            self.sentinel_graphs.close()

    # -- the step ----------------------------------------------------------
    def begin_step(
        self, step: int, activations: bool | None = None, capture: bool | None = None
    ) -> None:
        """Decide what this step captures and arm the activation hooks.

        `activations` and `capture` override the `activation_every` and
        `capture_every` rules for this step (the Trainer's time-budgeted
        policy, engine.policy, decides them).
        """
        self.step = step
        self.capture = step % self.capture_every == 0 if capture is None else capture
        if activations is None:
            activations = step % self.activation_every == 0
        self.capture_acts = activations
        if activations or self._armed:  # the hooks' setter costs ~1 us a plain step
            self.taps.armed = self._armed = activations

    def after_backward(self, loss: torch.Tensor | None = None) -> None:
        """Measure the raw gradients, clip them, measure the applied ones.

        Call between `loss.backward()` and `optimizer.step()`. Given the
        loss, on the CPU a step that was to carry only the sentinels is
        captured in full when its loss or a gradient norm is not finite, so
        the step where a run breaks always carries its statistics.
        """
        if loss is not None and not self.capture_acts:
            if self.capture:
                lane = self._lane
                pending = None if lane is None else lane(loss, EAGER_DEVICES, self.step)
                if pending is None:
                    pending = compact_found(self, loss, EAGER_DEVICES)
                    if pending is not None:
                        self._lane = compact_lane(self)
                    elif self._graphed is not None:
                        pending = graphed_found(self, loss)
            else:
                # A plain step over the CPU flat buffer: the Trainer's own lane
                # (engine.plain_lane), ~7 us less than sentinel_pending right after backward.
                plain = self._plain
                if plain is False:
                    plain = self._plain = PlainLane.for_probe(self, EAGER_DEVICES)
                if plain is not None and self._flat.device_type in EAGER_DEVICES:
                    read = plain.read(loss, self.step, 0)  # end_step gives the epoch
                    if read is not None:
                        self._pending = read if plain.recorded else PlainStep(read)
                        return
                pending = sentinel_pending(self, loss, EAGER_DEVICES)
            if pending is not None:
                self._pending = pending  # for end_step
                return
        with torch.no_grad():
            self._pending = measure(self, loss, EAGER_DEVICES)

    def _layer_grads(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        # A layer that took no part in backward has a zero gradient, not a missing one.
        return [
            g if (g := grads[i]) is not None else torch.zeros_like(self.params[i])
            for i in self._layer_index
        ]

    def _slots(self, present: tuple[int, ...]) -> list[int | None]:
        if present is self._all_present:
            return self._layer_index
        slot = {i: k for k, i in enumerate(present)}
        return [slot.get(i) for i in self._layer_index]

    # -- the host copy and the record ----------------------------------------
    def end_step(
        self, loss: torch.Tensor, epoch: int = 0, extra: torch.Tensor | None = None
    ) -> StepRecord:
        """Read what the step measured (one host copy) and build its record."""
        pending, self._pending = self._pending, None
        kind = type(pending)
        if kind is PlainStep:  # a plain step read through the flat buffer's lane
            return pending.record(self, epoch, extra)
        if kind is StepRecord:  # a small CPU model's step, recorded after backward (in C)
            return finish_record(pending, epoch, extra) if epoch or extra is not None else pending
        if kind is GraphedStep:  # a GPU's graphed statistics step
            return pending.record(self, loss, epoch, extra)
        if pending is not None and pending[1] is None:  # packed sentinels (a GPU's step)
            return make_record(self, read_packed(pending[0], extra), epoch)
        q, found = pending if pending is not None else (None, {"present": (), "raw_norms": []})
        if q is None and ("loss" not in found or extra is not None):
            q = ReadQueue()
        if "loss" not in found:
            q.add([loss.detach().reshape(())], store(found, "loss"))
        if extra is not None:
            q.add_vectors([extra.detach().reshape(-1)], store(found, "extra"))
        if q is not None:
            q.flush()
        return make_record(self, found, epoch)

    def nonfinite_layer(self) -> str | None:
        """The first layer (input to output) whose gradient holds NaN or inf.

        A second host copy, taken only on the rare step a sentinel tripped.
        """
        grads = [p.grad for p in self.layer_params]
        return first_nonfinite(self.layer_names, grads)

"""A small CPU model's statistics step, kept as the C sweep's numbers and decoded when read.

On a small model a statistics step is bound by Python, not arithmetic: right
after `backward()` each line costs about a microsecond, and turning every
gradient's partials into per-layer rows and objects took ~30 us of a 0.25 ms
step (the regression model). Here the step keeps the one list the C sweep
wrote (every gradient's sum, norm, extremes and squared deviations, and the
weights' norms; engine.native_stats) and its record's layers are a
`CompactLayers`, which builds each layer's LayerStats from those numbers the
first time it is read. The numbers are the step's own, read while the
tensors were as measured; only their arithmetic is deferred, so the record
says what an eager one would: the same numbers, but for the std (from the
deviations about the mean, exact where the eager path's one-pass sums need
its float64 fallback) and the total norm's last bit (a test holds them
together).

The path is taken where all of this holds: a CPU flat gradient buffer
(engine.flat_grads) with the C kernel, nothing that clips or keeps the raw
gradient aside, no activation capture on the step, and every number finite.
Anything else (a NaN step above all) goes the probe's general way, which
counts non-finite elements and recomputes from the tensors. After a step
taken this way the probe keeps a `compact_lane`: the same checks, less
what holds for the whole run, and where the kernel is an extension module,
the whole record in one C call (engine.native_record). The record is made
right after backward, as the numbers are read; the probe's `end_step`
gives it its epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from engine.recording import STEP_RECORD_BY_DICT, fast_record, new_step_record, safe_ratio
from engine.records import LAYER_STATS, LayerStats, StepRecord

if TYPE_CHECKING:  # engine.history imports this module, and nothing there imports torch
    import torch


class CompactLayout:
    """Where each layer's numbers lie in a compact step's list, for one probe's model."""

    __slots__ = ("names", "position", "index", "numel", "stride", "gradients")

    def __init__(
        self, names: list[str], index: list[int], numel: list[int], gradients: int
    ) -> None:
        self.names = tuple(names)
        self.position = {name: j for j, name in enumerate(names)}
        self.index = tuple(index)  # each layer's gradient among the swept tensors
        self.numel = tuple(numel)
        self.gradients = gradients  # the swept gradients; the layers' weights follow them
        self.stride = gradients + len(names)

    def layer(self, values: list[float], j: int, lr: float | None) -> LayerStats:
        """Layer j's statistics from a compact step's `values` (every number finite).

        `lr` gives the update-to-weight ratio; None leaves it out.
        """
        stats = self._stats(values, j, lr)
        return fast_record(LayerStats, dict(zip(LAYER_STATS, stats, strict=True)))

    def columns(self, values: list[float], lr: float | None) -> list[float | None]:
        """Every layer's statistics in LAYER_STATS order, layer after layer.

        What `layer` gives, without its objects: a History row of a compact
        step (~1 us a layer against ~4 through LayerStats).
        """
        out: list[float | None] = []
        for j in range(len(self.names)):
            out += self._stats(values, j, lr)
        return out

    def _stats(self, values: list[float], j: int, lr: float | None) -> tuple:
        # Layer j's LAYER_STATS. The sweep's rows are `stride` long: sums, norms,
        # minima, maxima, squared deviations (TensorSweep.flat); the weights'
        # norms follow the gradients' in the norms' row.
        stride, i, n = self.stride, self.index[j], self.numel[j]
        norm = values[stride + i]
        mean = values[i] / n
        # Unbiased, as torch.std; from the squared deviations about the mean, so
        # exact where a one-pass sum of squares would cancel.
        std = math.sqrt(values[4 * stride + i] / (n - 1)) if n > 1 else math.nan
        abs_max = max(-values[2 * stride + i], values[3 * stride + i])
        ratio = None
        if lr is not None:
            ratio = safe_ratio(lr * norm, values[stride + self.gradients + j])
        # The raw gradient is the applied one (nothing clips on this path); the
        # weights' moments and the activations come only with activation steps.
        grad = (mean, std, norm, abs_max)
        return (*grad, *grad, 0.0, None, None, None, None, None, ratio, None)


class CompactLayers(Mapping):
    """A compact step's layers by name: each LayerStats built on first read, then kept."""

    __slots__ = ("_layout", "_values", "_lr", "_built")

    def __init__(self, layout: CompactLayout, values: list[float], lr: float | None) -> None:
        self._layout = layout
        self._values = values
        self._lr = lr  # the probe's, when the step was taken
        # Built on first read, from whichever thread reads first: two readers at
        # once build equal objects, and either may stay.
        self._built: dict[str, LayerStats] = {}

    def __getitem__(self, name: str) -> LayerStats:
        stats = self._built.get(name)
        if stats is None:
            j = self._layout.position[name]  # KeyError for a name it does not hold
            stats = self._built[name] = self._layout.layer(self._values, j, self._lr)
        return stats

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.names)

    def __len__(self) -> int:
        return len(self._layout.names)

    def names(self) -> tuple[str, ...]:
        """The layers' names, in order."""
        return self._layout.names

    def columns(self) -> list[float | None]:
        """Every layer's statistics in LAYER_STATS order (CompactLayout.columns), for a History row."""
        return self._layout.columns(self._values, self._lr)

    def kind(self) -> tuple:
        """What fixes which of `columns()` are None: the layout's class, and whether lr was given."""
        return type(self._layout), self._lr is None

    def __repr__(self) -> str:
        return f"CompactLayers({dict(self)!r})"


def compact_record(
    layout: CompactLayout, lr: float | None, step: int, loss: float, values: list[float]
) -> StepRecord:
    """A compact statistics step's StepRecord, from its loss and the sweep's list (epoch 0).

    What the extension module's compact_record builds in C
    (engine.native_record), made in Python: the first step of a lane, and
    every step where the kernel is called through ctypes. The probe's
    `end_step` sets the step's epoch (`finish_record`).
    """
    stride = layout.stride
    # Every gradient's norm together (all finite here: one C call).
    total = math.hypot(*values[stride : stride + layout.gradients])
    # Nothing clips on this path: the total norm is the applied one too.
    return new_step_record(
        step, 0, loss, total, total, 0.0, CompactLayers(layout, values, lr), None, None, True,
        False,
    )  # fmt: skip


def record_spec(layout: CompactLayout, lr: float | None) -> tuple | None:
    """What the C compact_record needs to build `compact_record`'s record (engine.native_record).

    None where a StepRecord is not an object given its instance dict.
    """
    if not STEP_RECORD_BY_DICT:
        return None
    template = vars(new_step_record(0, 0, 0.0, 0.0, 0.0, 0.0, None, None, None, True, False))
    return (StepRecord, dict(template), CompactLayers, layout, lr, layout.gradients)


def finish_record(record: StepRecord, epoch: int, extra: torch.Tensor | None) -> StepRecord:
    """`record`, made after backward, given its step's epoch and an rnn's per-time-step norms.

    A compact statistics step's record, or a plain step's made in C
    (engine.plain_lane): the probe's `end_step` finishes either.

    Set in its instance dict: the record is the probe's own until its
    `end_step` returns it, and a frozen dataclass's fields are set one
    object.__setattr__ at a time (engine.recording.fast_record).
    """
    fields = vars(record)
    fields["epoch"] = epoch
    if extra is not None:
        fields["timestep_grad_norms"] = tuple(extra.detach().reshape(-1).tolist())
    return record


def _compact_buffer(probe):
    # The probe's flat buffer where its run suits the compact path (a clip
    # strategy that leaves the raw gradients in `.grad`), else None.
    flat, clip = probe.flat, probe.clip
    if flat is None or clip.changes_gradients or not clip.raw_is_grad:
        return None
    return flat


def compact_found(probe, loss: torch.Tensor, eager_devices: set[str]) -> StepRecord | None:
    """A statistics step's record from one C sweep; None where the compact path does not apply.

    `probe` is the GradientProbe whose step this is (capturing statistics,
    not activations). None also when the loss or any number is not finite:
    the general path then counts and recomputes from the tensors.
    """
    flat = _compact_buffer(probe)
    if flat is None or flat.device_type not in eager_devices:
        return None
    values = flat.compact_values(probe.params, probe.layer_params)
    if values is None:
        return None
    loss_value = loss.item()
    # The sweep's last number, the sum of the others: NaN or inf anywhere (or
    # a sum that overflows) shows in it (summed in C: ~1.5 us less than here).
    if not (math.isfinite(loss_value) and math.isfinite(values[-1])):
        return None
    return compact_record(probe.compact_layout, probe.lr, probe.step, loss_value, values)


def compact_lane(probe):
    """`compact_found` for the steps after one it took, at the least cost; None where it did not.

    Built right after a step that `compact_found` took: lane(loss,
    eager_devices, step) gives the step's record, or None to send the step
    to `compact_found`. What holds for a whole run (the probe's buffer, clip
    strategy and lr: the probe drops its lane when one is replaced) is
    checked here once; each call checks the rest, as `compact_found` does:
    the device is one read eagerly, the buffer holds the gradients and no
    weight moved (FlatGradients.compact_reader), every number is finite.
    Where the kernel is an extension module the lane is one C call
    (FlatGradients.compact_recorder, engine.native_record).
    """
    flat = _compact_buffer(probe)
    if flat is None:
        return None
    layout, lr = probe.compact_layout, probe.lr
    spec = record_spec(layout, lr)
    lane = None if spec is None else flat.compact_recorder(probe.params, probe.layer_params, spec)
    if lane is not None:
        return lane
    read = flat.compact_reader(probe.params, probe.layer_params)
    if read is None:
        return None
    device, isfinite = flat.device_type, math.isfinite

    def lane(loss: torch.Tensor, eager_devices: set[str], step: int) -> StepRecord | None:
        if device not in eager_devices or (values := read()) is None:
            return None
        loss_value = loss.item()
        if not (isfinite(loss_value) and isfinite(values[-1])):
            return None
        return compact_record(layout, lr, step, loss_value, values)

    return lane

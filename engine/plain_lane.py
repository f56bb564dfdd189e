"""A plain training step of a small CPU model: its sentinels and record, in the fewest lines.

Most steps of a fast run capture nothing but the sentinels (the loss and the
total gradient norm). On a small CPU model such a step is bound by Python:
right after `backward()` each line costs about a microsecond, and the
probe's general sentinel path (after_backward, then end_step: dispatch,
pending state, a found dict, the record builder) took ~12 us of the
regression model's ~250 us step. The Trainer takes this lane instead where
it applies: one C call for the flat buffer's sum of squares, the loss read,
one record, ~5 us. A step whose loss or norm is not finite, or whose
gradient a caller replaced, leaves the lane (None from `read`), and the
probe's general path captures it in full as ever.
"""

from __future__ import annotations

import math

from engine.native_stats import FLOAT32_MAX
from engine.recording import new_step_record
from engine.records import StepRecord


class PlainLane:
    """The sentinel step of a GradientProbe over a CPU flat gradient buffer (engine.flat_grads).

    Built by `for_probe` only where nothing clips the gradients or keeps
    them aside, no per-time-step norms are taken (the rnn), and the C kernel
    gives the buffer's sum of squares.
    """

    __slots__ = ("_probe", "_flat", "_square_sum")

    def __init__(self, probe, flat) -> None:
        self._probe = probe
        self._flat = flat
        self._square_sum = flat._square_sum

    @staticmethod
    def for_probe(probe, eager_devices: set[str], timesteps=None) -> PlainLane | None:
        """The lane for `probe`'s plain steps, or None where the general path must take them."""
        flat, clip = probe.flat, probe.clip
        if flat is None or flat.device_type not in eager_devices or timesteps is not None:
            return None
        if clip.changes_gradients or not clip.raw_is_grad or flat._square_sum is None:
            return None
        return PlainLane(probe, flat)

    def read(self, loss) -> tuple[float, float] | None:
        """(loss, total gradient norm) after `backward()`, or None to leave the lane.

        None when either is not finite, or the buffer no longer holds the
        gradients (a caller zeroed them with `set_to_none`).
        """
        flat = self._flat
        if flat.params[0].grad is not flat.views[0]:  # FlatGradients.attached, inline
            return None
        square_sum = self._square_sum()
        # NaN fails both tests; a sum past float32's range is an infinite norm.
        if not square_sum <= FLOAT32_MAX:
            return None
        value = loss.item()
        if not math.isfinite(value):
            return None
        return value, math.sqrt(square_sum)

    def record(self, step: int, epoch: int, read: tuple[float, float]) -> StepRecord:
        """The StepRecord of plain step `step`, from what `read` gave."""
        loss, norm = read
        return new_step_record(
            step, epoch, loss, norm, norm, None, self._probe.blank_layers, None, None, False, False
        )

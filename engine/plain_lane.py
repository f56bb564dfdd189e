"""A plain training step's sentinels and record, in the fewest lines: on the CPU and on a GPU.

Most steps of a fast run capture nothing but the sentinels (the loss and the
total gradient norm). On a small CPU model such a step is bound by Python:
right after `backward()` each line costs about a microsecond, and the
probe's general sentinel path (after_backward, then end_step: dispatch,
pending state, a found dict, the record builder) took ~12 us of the
regression model's ~250 us step. The Trainer takes this lane instead where
it applies: one C call for the flat buffer's sum of squares, the loss read,
one record, ~5 us; where the kernel is an extension module, all of it in
one C call (engine.native_record). A probe in a user's loop over a flat
buffer takes the same lane from `after_backward` to `end_step`: 13-14
against 16-18 us on the regression model, 39 against 45 us on the block
model, before the record was made in C. A step whose loss or norm is not
finite, or whose gradient a caller replaced, leaves the lane (None from
`read`), and the probe's general path captures it in full as ever.

On a GPU a step is host-bound too (~40 us of host time a kernel launch on
the H100 of the benchmarks), and its sentinels are one CUDA graph replay
(engine.graphed_sentinels): the ReplayLane replays it right after
`backward()` and reads the vector after `optimizer.step()` (the step's one
sync, once the optimizer's kernels are queued behind the replay), with no
dispatch, pending state or found dict between. A step that broke is
recorded as it is, as the general GPU path records it; the Trainer looks
for where it broke.
"""

from __future__ import annotations

import math
from functools import partial

from engine.native_stats import FLOAT32_MAX, plain_recorder
from engine.recording import STEP_RECORD_BY_DICT, l2_total, new_step_record, plain_step_record
from engine.records import StepRecord
from engine.sentinels import packed_from_grads, read_values


class PlainLane:
    """The sentinel step of a GradientProbe over a CPU flat gradient buffer (engine.flat_grads).

    Built by `for_probe` only where nothing clips the gradients or keeps
    them aside and the C kernel gives the buffer's sum of squares; for the
    Trainer's own steps, only where no per-time-step norms are taken (the
    rnn: a probe's PlainStep carries them from `end_step` instead). It keeps
    the probe's blank layers, not the probe: a probe keeps its own lane, and
    the model must be freed with its last reference, not by the cycle
    collector. A probe keeps a record made in C from `after_backward` to
    `end_step`, which gives it its epoch; else the read, as a PlainStep.

    `read(loss, step, epoch)`, right after `backward()`: where `recorded`,
    the step's whole StepRecord, made in one C call (engine.native_record's
    plain_record: the Python that made it slowed the model's own steps as
    well); else (through ctypes) the step's (loss, total gradient norm), for
    `record(step, epoch, read)`. None either way to leave the lane: the loss
    or the norm is not finite, or the buffer no longer holds the gradients
    (a caller zeroed them with `set_to_none`). Both are callables kept on
    the lane, not methods: no Python frame of their own.
    """

    __slots__ = ("_blank", "record", "read", "recorded")
    finite = True  # its records' loss and norm: `read` leaves the lane where they are not

    def __init__(self, probe, flat) -> None:
        self._blank = probe.blank_layers
        # record(step, epoch, read): the StepRecord of plain step `step`, from
        # what `read` gave; the builder itself, bound (no frame of its own).
        self.record = partial(plain_step_record, self._blank)
        made = None
        if STEP_RECORD_BY_DICT:  # the C record is a StepRecord given its instance dict
            template = dict(vars(plain_step_record(self._blank, 0, 0, (0.0, 0.0))))
            made = plain_recorder(
                flat._square_sum, (flat.params[0], flat.views[0], flat), (StepRecord, template)
            )
        self.recorded = made is not None
        self.read = made if made is not None else partial(_read, flat, flat._square_sum)

    @staticmethod
    def for_probe(probe, eager_devices: set[str], timesteps=None) -> PlainLane | None:
        """The lane for `probe`'s plain steps, or None where the general path must take them."""
        flat, clip = probe.flat, probe.clip
        if flat is None or flat.device_type not in eager_devices or timesteps is not None:
            return None
        if clip.changes_gradients or not clip.raw_is_grad or flat._square_sum is None:
            return None
        return PlainLane(probe, flat)


def _read(flat, sum_squares, loss, step=None, epoch=None) -> tuple[float, float] | None:
    # PlainLane.read through ctypes: (loss, total gradient norm), or None.
    if flat.params[0].grad is not flat.views[0]:  # FlatGradients.attached, inline
        return None
    square_sum = sum_squares()
    # NaN fails both tests; a sum past float32's range is an infinite norm.
    if not square_sum <= FLOAT32_MAX:
        return None
    value = loss.item()
    if not math.isfinite(value):
        return None
    return value, math.sqrt(square_sum)


class PlainStep:
    """What a GradientProbe's plain step read through its PlainLane, kept for end_step.

    The probe's own API (a user's loop) takes the Trainer's lane this way
    where the kernel is called through ctypes: `after_backward` reads,
    `end_step` records, with no found dict between. As an extension module
    the lane's read is the record itself.
    """

    __slots__ = ("read",)

    def __init__(self, read: tuple[float, float]) -> None:
        self.read = read

    def record(self, probe, epoch: int, extra=None) -> StepRecord:
        """The step's record, as the general sentinel path makes it; `extra`, an rnn's norms."""
        timesteps = None if extra is None else tuple(extra.detach().reshape(-1).tolist())
        return plain_step_record(probe.blank_layers, probe.step, epoch, self.read, timesteps)


class ReplayLane:
    """The sentinel step of a GradientProbe whose sentinels a GPU replays as a graph.

    Built by `for_probe` only where the probe keeps sentinel graphs (a CUDA
    model that nothing clips, engine.graphed_sentinels) and no flat buffer,
    and no per-time-step norms are taken (the rnn).
    """

    __slots__ = ("_probe",)
    finite = False  # a step that broke is recorded as it is
    recorded = False  # `read` gives the vector `record` reads

    def __init__(self, probe) -> None:
        self._probe = probe

    @staticmethod
    def for_probe(probe, timesteps=None) -> ReplayLane | None:
        """The lane for `probe`'s plain steps, or None where the general path must take them."""
        if probe.sentinel_graphs is None or probe.flat is not None or timesteps is not None:
            return None
        clip = probe.clip
        if clip.changes_gradients or not clip.raw_is_grad:
            return None
        return ReplayLane(probe)

    def read(self, loss, step=None, epoch=None):
        """The step's [loss, norms...] device vector, unread; None to leave the lane.

        Replayed where a graph reads this step's tensors, else op by op, as
        engine.sentinels.packed_sentinels takes it. None when a parameter
        has no gradient.
        """
        return packed_from_grads(self._probe, loss)

    def record(self, step: int, epoch: int, read) -> StepRecord:
        """The StepRecord of plain step `step`: `read`'s vector read here (the one sync)."""
        values = read_values(read)
        norms = values[1:]
        norm = norms[0] if len(norms) == 1 else l2_total(norms)
        return new_step_record(
            step, epoch, values[0], norm, norm, None, self._probe.blank_layers, None, None, False,
            False,
        )  # fmt: skip

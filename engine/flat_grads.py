"""Every gradient of a small model as a view into one flat buffer.

The sentinel every step pays, the total gradient norm, is then one kernel over
one buffer instead of a norm per parameter; and zeroing the gradients is one
fill instead of `zero_grad()`'s Python loop over parameters. On the slides'
regression model (six tensors, 181 numbers) that is the difference between a
sentinel costing 14% of a step and costing nothing measurable; on the block
model, 2% and nothing (benchmarks/README.md). A statistics step's sums,
norms and extremes of every gradient are four numpy calls over the buffer
(`segment_partials`), whatever the number of parameters.

Above FLAT_BELOW elements the buffer does not pay: filling it and adding
backward's gradients into it are two more passes over memory than letting
autograd hand its fresh gradients over (+2% on an 8x1024 MLP). So only the
Trainer, which owns the loop and its zeroing, uses it, and only for models
whose trainable parameters are few, on the CPU, in one dtype.

Not on a GPU: there a step is host-bound, and adding backward's gradient
into a `.grad` that exists is one more kernel launch per parameter (autograd
hands a fresh gradient over for free when `.grad` is None). On an H100 the
block model's sentinels cost 1.13x through the buffer against 0.96x through
one concatenation of autograd's own gradients (benchmarks/RESULTS.md, §6).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
from torch import nn

from engine.native_stats import (
    FLOAT32_MAX,
    TensorSweep,
    places,
    square_sum,
    torch_norms_where_infinite,
)

FLAT_BELOW = 1 << 20  # trainable elements: larger models keep autograd's own gradients
SERIAL_BELOW = 1 << 17  # elements: smaller buffers are zeroed without the thread pool
_TORCH_GRAIN = 32768  # at::internal::GRAIN_SIZE: torch fills no fewer elements in parallel
_MKL_SERIAL_DOT = 8192  # MKL's sdot ran on one thread up to 8,000 elements, on two from 16,000
_GRAD = operator.attrgetter("grad")
_DATA_PTR = torch.Tensor.data_ptr


class FlatGradients:
    """One buffer holding every trainable parameter's `.grad` as a view."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        first = params[0]
        total = sum(p.numel() for p in params)
        self.buffer = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.device_type = first.device.type
        # Small buffers are zeroed piece by piece, each below torch's parallel
        # grain: waking the intra-op thread pool for a fill costs more than the
        # fill (and the bare loop it is measured against runs no fill at all).
        piece = _TORCH_GRAIN if total <= SERIAL_BELOW else total
        self._pieces = [self.buffer[i : i + piece] for i in range(0, total, piece)]
        self._one_piece = len(self._pieces) == 1
        # A small CPU float buffer's norm is a BLAS dot product (see host_norm).
        floats = first.dtype in (torch.float32, torch.float64)
        self._dot = self.device_type == "cpu" and floats and total < _MKL_SERIAL_DOT
        # Or one C call (engine.native_stats), where it builds: no torch dispatch.
        self._square_sum = square_sum(self.buffer)
        self.views: list[torch.Tensor] = []
        offset = 0
        for p in params:
            self.views.append(self.buffer[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        # numpy's segment reductions over the buffer (segment_partials): CPU
        # floats only, and no empty parameter (reduceat would misread it).
        self._array = self._starts = self._squares = None
        self._holds: list | None = None  # the parameter list found to be `params`
        self._sweep = None  # the same in one pass of C (engine.native_stats), where it builds
        self._joint: TensorSweep | None = None  # the views and the weights (partials_for)
        self._other_places: list | None = None
        self._other_pointers: list | None = None  # their addresses alone (compact_values)
        if self.device_type == "cpu" and floats and all(p.numel() for p in params):
            self._sweep = TensorSweep.build(self.views)
            if self._sweep is None:  # numpy's way needs its views and a scratch buffer
                self._array = self.buffer.numpy()
                self._starts = np.cumsum([0] + [p.numel() for p in params[:-1]]).astype(np.intp)
                self._squares = np.empty_like(self._array)

    @staticmethod
    def suits(params: list[nn.Parameter]) -> bool:
        """Whether a flat buffer pays for these parameters (few, on the CPU, one dtype)."""
        if not params:
            return False
        first = params[0]
        return (
            sum(p.numel() for p in params) < FLAT_BELOW
            and first.device.type == "cpu"
            and all(p.device == first.device and p.dtype == first.dtype for p in params)
            and all(p.is_contiguous() and not p.is_sparse for p in params)
        )

    def zero(self) -> None:
        """Zero every gradient (in place), re-attaching any view someone replaced.

        With `.grad` defined and grad mode off, autograd adds backward's
        gradient into it in place, so the views keep the buffer current.
        """
        if self._one_piece:
            self.buffer.zero_()
        else:
            torch._foreach_zero_(self._pieces)
        if not self.intact():
            for p, view in zip(self.params, self.views, strict=True):
                if p.grad is not view:
                    p.grad = view

    def intact(self) -> bool:
        """Whether every `.grad` is still its view (nothing swapped one out since zero)."""
        # All in C: a Python loop over the parameters cost ~2 us a step right after
        # the optimizer's step (the regression model's zero went from 5.4 to 3.7 us).
        return all(map(operator.is_, map(_GRAD, self.params), self.views))

    def attached(self) -> bool:
        """A cheap `intact` for the owner's own loop: the first gradient is still its view.

        Between `zero` and the optimizer step of the Trainer's loop nothing
        replaces a `.grad` (autograd adds into them in place); this catches a
        caller that zeroed with `set_to_none` in between.
        """
        return self.params[0].grad is self.views[0]

    def norm(self) -> torch.Tensor:
        """The total L2 norm of all gradients: one kernel (a device scalar)."""
        return torch.linalg.vector_norm(self.buffer)

    def host_norm(self) -> float:
        """The total L2 norm as a Python float; inf or NaN as they come.

        One C call where engine.native_stats builds (in double; 6.4 -> ~2 us
        in place on the regression model, where torch's dispatch is most of
        the cost). Else, on the calling thread (measured by counting futex
        calls: a woken thread pool costs more than these sums): under 8,192
        elements one BLAS dot product, above torch's norm (MKL's dot would go
        parallel). A sum of squares beyond float32's range is inf in every
        way, as in `norm()`; a caller that finds it not finite takes torch's
        general path.
        """
        if self._square_sum is not None:
            square_sum = self._square_sum()
            return math.inf if square_sum > FLOAT32_MAX else math.sqrt(square_sum)
        if self._dot:
            buffer = self.buffer
            return math.sqrt(torch.dot(buffer, buffer).item())
        return float(self.norm())

    def partials_for(self, params: list, others: list | None = None) -> tuple | None:
        """`segment_partials` and the L2 norms of `others` (or None), or None.

        None where the buffer does not hold exactly these parameters'
        gradients. `others` (the weights) are swept with the gradients in the
        same C call where it builds (one call instead of two, ~20 us in place).
        """
        if not self._holds_now(params):
            return None
        joint = self._joint_sweep(others) if others is not None else None
        if joint is None:
            partials = self.segment_partials()
            return None if partials is None else (*partials, None)
        sums, norms, lows, highs = joint()
        k = len(self.views)
        return (
            sums[:k],
            torch_norms_where_infinite(norms[:k], self.views),
            lows[:k],
            highs[:k],
            torch_norms_where_infinite(norms[k:], others),
        )

    def compact_values(self, params: list, others: list) -> list[float] | None:
        """The joint sweep of the gradients and `others` as one list (TensorSweep.flat), or None.

        Each gradient's squared deviations are in it (the sweep's fifth row),
        so its standard deviation needs no tensor afterwards. None where the
        buffer does not hold exactly these parameters' gradients, or without
        the C kernel.
        """
        joint = self._compact_joint(params, others)
        return None if joint is None else joint.flat()

    def compact_reader(self, params: list, others: list):
        """`compact_values` for a loop's steady state: a callable giving the list or None; or None.

        None where `compact_values` would give None now. Each call checks
        what that method checks of a step: the first gradient is still its
        view, and no weight moved (a weight given new storage is so noticed
        on the step it happened). Where either fails it gives None, and the
        caller goes back to `compact_values`, which rebuilds. Right after
        backward every lookup misses the caches, so what holds for the
        whole run is checked here once (engine.compact_stats.compact_lane).
        Where the kernel is an extension module, `compact_recorder` does
        this and the rest of the step in C.
        """
        joint = self._compact_joint(params, others)
        if joint is None:
            return None
        first, view = self.params[0], self.views[0]
        others, pointers, sweep = tuple(others), list(self._other_pointers), joint.flat

        # `_keep`: the sweep's tensors stay alive while it may read them.
        def read(_keep: TensorSweep = joint) -> list[float] | None:
            if first.grad is not view or list(map(_DATA_PTR, others)) != pointers:
                return None
            return sweep()

        return read

    def compact_recorder(self, params: list, others: list, spec: tuple):
        """A compact step's whole record in one C call, f(loss, eager_devices, step); or None.

        The checks of `compact_reader`, the sweep, the loss read and the
        record in one call of the extension module (engine.native_record,
        whose `spec` this is); None where `compact_values` would give None
        now, or through ctypes.
        """
        joint = self._compact_joint(params, others)
        if joint is None:
            return None
        where = (
            self.device_type, self.params[0], self.views[0], tuple(others),
            tuple(self._other_pointers), joint,
        )  # fmt: skip
        return joint.recorder(where, spec)

    def _compact_joint(self, params: list, others: list) -> TensorSweep | None:
        # compact_values' sweep, checked for this step (None where it does not
        # apply). The checks inline: each call right after backward costs ~1 us.
        if params is not self._holds and not self._holds_now(params):
            return None
        if self.params[0].grad is not self.views[0]:  # attached()
            return None
        # A weight given new storage moves its address (its length cannot change
        # alone: its gradient, a view here, would no longer fit).
        joint = self._joint
        if joint is None or list(map(_DATA_PTR, others)) != self._other_pointers:
            joint = self._joint_sweep(others)
            if joint is None:
                return None
        return joint

    def _holds_now(self, params: list) -> bool:
        # Whether the buffer holds `params`' gradients now (the list is checked once).
        if params is not self._holds:
            if len(params) != len(self.params) or any(
                a is not b for a, b in zip(params, self.params, strict=True)
            ):
                return False
            self._holds = params
        return self.attached()

    def _joint_sweep(self, others: list) -> TensorSweep | None:
        # The views never move; `others` may (a weight given new storage), so
        # the sweep over both is rebuilt when they do.
        if self._sweep is None:
            return None
        now = places(others)
        if now != self._other_places:
            self._joint = TensorSweep.build(self.views + list(others), centred=len(self.views))
            self._other_places = now
            self._other_pointers = [pointer for pointer, _ in now]
        return self._joint

    def segment_partials(self) -> tuple[list[float], list[float], list[float], list[float]] | None:
        """Each gradient's (sum, L2 norm, min, max): one pass of C, or four of numpy.

        A statistics step of a small CPU model. The C sweep
        (engine.native_stats) reads every view in one call, in double
        precision. Without it, numpy's `reduceat` reduces every parameter's
        segment in one call a statistic, where torch would take a call per
        parameter (25 us against 54 on the block model's twelve tensors,
        warm); its float32 sums are pairwise, as torch's are. A norm whose
        sum of squares overflowed float32 is torch's own `vector_norm`, as in
        engine.stats.cpu_norm; NaN and inf come through as torch gives them.
        None where the buffer is not a CPU float one.
        """
        if self._sweep is not None:
            sums, norms, lows, highs = self._sweep()
        else:
            array, starts = self._array, self._starts
            if array is None:
                return None
            with np.errstate(all="ignore"):  # NaN and inf are data here
                sums = np.add.reduceat(array, starts).tolist()
                squares = np.add.reduceat(np.square(array, out=self._squares), starts)
                norms = np.sqrt(squares).tolist()
                lows = np.minimum.reduceat(array, starts).tolist()
                highs = np.maximum.reduceat(array, starts).tolist()
        return sums, torch_norms_where_infinite(norms, self.views), lows, highs

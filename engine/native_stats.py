"""Every small CPU tensor's sum, L2 norm, min and max in one pass, in C; and histograms.

A statistics step of a small CPU model is bound by its calls, not its
arithmetic: right after `backward()` the interpreter's and numpy's code is
out of the caches, and each distinct numpy call costs 5-20 us there (four
`reduceat` passes and a square over the block model's gradients took 65-150
us in place, 28 us warm). One C loop over the tensors does it all in one
pass, with double accumulators (closer to the exact sums than float32's).
The same kernel bins an activation step's histograms, all in one call
(`strided_histograms`), where torch takes four operators a histogram.

The kernel is compiled once per machine (engine.native_build, engine.native_kernel):
as a CPython extension module where Python's headers are installed (the
cheapest calls), else as a library called through ctypes. Where there is no
compiler, or the build or load fails, `sweep_kernel()` is None and the
callers keep numpy's way. GRADTUI_NATIVE=0 turns it off.
"""

from __future__ import annotations

import functools
import math
import operator
import threading

import torch

from engine.native_kernel import load_kernel

FLOAT32_MAX = 3.4028234663852886e38
MAX_BINS = 1 << 16  # the kernel's limit on a histogram's bins (engine.native_source)

_lock = threading.Lock()
_kernel: object = None  # the loaded kernel (engine.native_kernel), False if unavailable


def sweep_kernel():
    """The kernel, built and loaded on first use (its `kind`: "module" or "ctypes"); None if unavailable."""
    return _library()


def square_sum(tensor: torch.Tensor):
    """A callable giving the sum of squares of `tensor` (a float, in double), or None.

    For a contiguous CPU float32 tensor that the caller keeps alive and in
    place (the flat gradient buffer): one C call, no torch dispatch.
    """
    kernel = _library()
    if kernel is None or not _suits(tensor):
        return None
    return kernel.summer(tensor.data_ptr(), tensor.numel())


def plain_recorder(summer, where: tuple, spec: tuple):
    """The kernel's plain step record over `summer`'s tensor (engine.native_record), or None.

    `summer` is what `square_sum` gave; None through ctypes or without the kernel.
    """
    kernel = _library()
    return None if kernel is None else kernel.plain_recorder(summer, where, spec)


def strided_histograms(
    tensors: list[torch.Tensor], strides: list[int], bounds: list[tuple[float, float]], bins: int
) -> list[float] | None:
    """Each tensor's bins + 1 counts of every `stride`-th value from lo, `scale` bins a unit.

    One list, tensor after tensor: what engine.histograms' fast_histogram
    counts with torch, bin for bin. None without the kernel, or where a tensor
    is other than contiguous CPU float32 (the caller then counts with torch).
    """
    if not (len(strides) == len(bounds) == len(tensors) and 1 <= bins <= MAX_BINS):
        raise ValueError("strided_histograms: a stride and bounds for each tensor, 1-65536 bins")
    if any(s < 1 for s in strides):
        raise ValueError("strided_histograms: a stride is at least 1")
    kernel = _library()
    if kernel is None or not all(map(_suits, tensors)):
        return None
    where = [(t.data_ptr(), t.numel(), s) for t, s in zip(tensors, strides, strict=True)]
    return kernel.histograms(where, bounds, bins)


def places(tensors: list[torch.Tensor]) -> list[tuple[int, int]]:
    """Where each tensor's memory lies: (address, length), to tell when one moved.

    C-level maps: a Python loop costs ~1 us a tensor right after backward.
    """
    return list(zip(map(_DATA_PTR, tensors), map(_NUMEL, tensors), strict=True))


_DATA_PTR, _NUMEL = torch.Tensor.data_ptr, torch.Tensor.numel
# Tested through C-level maps: a Python frame a tensor costs ~1 us right after backward.
_IS_CONTIGUOUS, _DTYPE = torch.Tensor.is_contiguous, operator.attrgetter("dtype")
_IS_CPU = operator.attrgetter("is_cpu")
_IS_NONE = functools.partial(operator.is_, None)


def _library():
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                try:
                    _kernel = load_kernel() or False
                except Exception:  # a speed-up only: numpy's way stays
                    _kernel = False
    return _kernel or None


def _suits(t: torch.Tensor) -> bool:
    return (
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and t.numel() > 0
    )


class TensorSweep:
    """Sum, L2 norm, min and max of each of several CPU float32 tensors, in one native call.

    The tensors' memory is read where it lies, so they must stay put: the
    caller rebuilds the sweep when one moves (`places` tells). None from
    `build` where the kernel or the tensors do not suit.

    `flat()` gives every number in one list: sums, norms, minima, maxima and
    squared deviations (0.0 past `centred`), row after row, then their sum,
    finite only where every one is; for a caller that keeps the numbers as
    they are (a compact record, engine.compact_stats).
    It is the kernel's own callable, not a method: no Python frame per call.
    A large sweep (a million elements in all, none centred) runs on torch's
    threads where the kernel shares torch's OpenMP runtime (engine.native_kernel).
    """

    __slots__ = ("places", "flat", "_k", "_keep", "_kernel")

    def __init__(self, kernel, tensors: list[torch.Tensor], centred: int = 0) -> None:
        self.places = places(tensors)
        self._k = len(tensors)
        self._kernel = kernel
        # The memory the pointers point into stays alive, even if a parameter
        # is given new storage (`p.data = ...`): then the caller's `places` check
        # finds it moved, and until then the sweep reads old values, never freed memory.
        self._keep = [t.detach() for t in tensors]
        # torch's own thread count, as its reductions here would use (the
        # kernel keeps small sweeps on one thread whatever this says).
        threads = torch.get_num_threads() if kernel.threaded else 1
        self.flat = kernel.sweeper(self.places, centred, threads)

    @staticmethod
    def build(tensors: list[torch.Tensor], centred: int = 0) -> TensorSweep | None:
        """A sweep over `tensors`, or None without the kernel or for other than contiguous CPU float32.

        The first `centred` tensors get their squared deviations summed too
        (`flat`'s fifth row), in a second pass over each.
        """
        kernel = _library()
        if kernel is None or not all(map(_suits, tensors)):
            return None
        return TensorSweep(kernel, tensors, centred)

    def __call__(self) -> list[list[float]]:
        """[sums, norms, minima, maxima], one float per tensor, NaN and inf as they come."""
        return _four_rows(self.flat(), self._k)

    def recorder(self, where: tuple, spec: tuple):
        """The kernel's compact step record over this sweep (engine.native_record), or None.

        None through ctypes. `where` ends with what keeps the swept memory
        alive (this sweep, at the least) while the recorder may read it.
        """
        return self._kernel.recorder(self.flat, where, spec)


class FreshSweep:
    """A TensorSweep over the gradients of fixed parameters, which autograd makes anew each step.

    Built once for the parameters, where a TensorSweep was built for each
    step's gradients: their checks, their addresses and the call's state
    cost 125-170 us right after backward on an 8x1024 MLP, against ~40 here.
    torch's `.grad` setter holds every gradient to its parameter's size and
    device, so each call asks what can still differ: whether a gradient is
    missing, on the CPU (a parameter given new data elsewhere, as
    `module.cuda()` does, keeps its object), float32 (a parameter's grad
    dtype may be set apart), laid out other than contiguously, or of another
    length than when built (new data of another size). One caller at a
    time: through ctypes, a sweep writes into one buffer of its own.
    """

    __slots__ = ("_sweep", "_k", "_threaded", "_float32s", "_lengths")

    def __init__(self, kernel, lengths: list[int]) -> None:
        self._sweep = kernel.repointed(lengths)
        self._k = len(lengths)
        self._lengths = lengths
        self._threaded = kernel.threaded
        self._float32s = [torch.float32] * len(lengths)

    @staticmethod
    def build(params: list[torch.Tensor]) -> FreshSweep | None:
        """The sweep for `params`' gradients; None without the kernel or for other than CPU float32."""
        kernel = _library()
        if kernel is None or not params or not all(map(_suits, params)):
            return None
        return FreshSweep(kernel, list(map(_NUMEL, params)))

    def __call__(self, grads: list[torch.Tensor | None]) -> list[list[float]] | None:
        """[sums, norms, minima, maxima] of `grads` (one per parameter, in order), or None.

        None where one is missing, of another dtype or length, or not
        contiguous: the kernel reads each where it lies, for as many floats
        as it was built for. Read at once: the caller holds `grads` meanwhile.
        """
        if any(map(_IS_NONE, grads)) or list(map(_DTYPE, grads)) != self._float32s:
            return None
        if not all(map(_IS_CPU, grads)):  # a device's address is no host memory
            return None
        if not all(map(_IS_CONTIGUOUS, grads)):  # a sparse gradient is not either
            return None
        if list(map(_NUMEL, grads)) != self._lengths:
            return None
        threads = torch.get_num_threads() if self._threaded else 1
        return _four_rows(self._sweep(list(map(_DATA_PTR, grads)), threads), self._k)


def _four_rows(values: list[float], k: int) -> list[list[float]]:
    # A sweep's sums, norms, minima and maxima of its k tensors, from its flat list.
    return [values[:k], values[k : 2 * k], values[2 * k : 3 * k], values[3 * k : 4 * k]]


def torch_norms_where_infinite(norms: list[float], tensors: list[torch.Tensor]) -> list[float]:
    """`norms` with each infinite one replaced by torch's `vector_norm` of its tensor, in place.

    A float32 sum of squares that overflowed (or an inf inside): the record
    and clipping see torch's own answer, whatever its accumulator.
    """
    if math.inf in norms:
        for i, norm in enumerate(norms):
            if norm == math.inf:
                norms[i] = float(torch.linalg.vector_norm(tensors[i].detach()))
    return norms

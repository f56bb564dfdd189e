"""Every small CPU tensor's sum, L2 norm, min and max in one pass, in C.

A statistics step of a small CPU model is bound by its calls, not its
arithmetic: right after `backward()` the interpreter's and numpy's code is
out of the caches, and each distinct numpy call costs 5-20 us there (four
`reduceat` passes and a square over the block model's gradients took 65-150
us in place, 28 us warm). One C loop over the tensors does it all in one
pass, with double accumulators (closer to the exact sums than float32's).

The kernel is compiled once per machine with the system's C compiler and
kept in the user's cache directory (GRADTUI_CACHE, else $XDG_CACHE_HOME or
~/.cache, then `gradtui/`), named by a hash of its source, flags and CPU, so a
home directory shared by different machines holds one build per CPU. Where
there is no compiler, or the build or load fails, `sweep_kernel()` is None and
the callers keep numpy's way. GRADTUI_NATIVE=0 turns it off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

SOURCE = r"""
#include <math.h>
#include <stdint.h>

#define LANES 16

/* out is [5][k]: per tensor its sum, L2 norm, min, max and, for the first
   `centred` tensors, its sum of squared deviations from the mean (a second
   pass, in double: a standard deviation exact where the one-pass sums cancel).
   A sum of squares above float32's range gives an infinite norm (as torch's
   float32 norm); min and max are NaN where the tensor holds a NaN. */
void tensor_sweep(const float *const *ptrs, const int64_t *lens, int64_t k, int64_t centred,
                  double *out) {
    for (int64_t t = 0; t < k; t++) {
        const float *x = ptrs[t];
        int64_t n = lens[t], i = 0;
        double sum[LANES] = {0}, sq[LANES] = {0};
        float lo[LANES], hi[LANES];
        int nan = 0;
        for (int j = 0; j < LANES; j++) { lo[j] = INFINITY; hi[j] = -INFINITY; }
        for (; i + LANES <= n; i += LANES) {
            for (int j = 0; j < LANES; j++) {
                float v = x[i + j];
                sum[j] += v;
                sq[j] += (double)v * v;
                lo[j] = v < lo[j] ? v : lo[j];
                hi[j] = v > hi[j] ? v : hi[j];
                nan |= v != v;
            }
        }
        double s = 0.0, q = 0.0;
        float l = INFINITY, h = -INFINITY;
        for (; i < n; i++) {
            float v = x[i];
            s += v;
            q += (double)v * v;
            l = v < l ? v : l;
            h = v > h ? v : h;
            nan |= v != v;
        }
        for (int j = 0; j < LANES; j++) {
            s += sum[j];
            q += sq[j];
            l = lo[j] < l ? lo[j] : l;
            h = hi[j] > h ? hi[j] : h;
        }
        out[t] = s;
        out[k + t] = q > 3.4028234663852886e38 ? INFINITY : sqrt(q);
        out[2 * k + t] = nan ? NAN : l;
        out[3 * k + t] = nan ? NAN : h;
        double m2 = 0.0;
        if (t < centred && n > 0) {
            double mean = s / n, dev[LANES] = {0};
            i = 0;
            for (; i + LANES <= n; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    double d = x[i + j] - mean;
                    dev[j] += d * d;
                }
            for (; i < n; i++) m2 += (x[i] - mean) * (x[i] - mean);
            for (int j = 0; j < LANES; j++) m2 += dev[j];
        }
        out[4 * k + t] = m2;
    }
}

/* The sum of squares of x, in double: a sentinel step's gradient norm. */
double sum_squares(const float *x, int64_t n) {
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)x[i + j] * x[i + j];
    double q = 0.0;
    for (; i < n; i++) q += (double)x[i] * x[i];
    for (int j = 0; j < LANES; j++) q += acc[j];
    return q;
}
"""
FLOAT32_MAX = 3.4028234663852886e38
# No -ffast-math: it would drop the NaN tests. -march=native is safe because
# the build is named by the CPU it was made for (_cpu_signature).
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno"]
# A compiler that rejects -march=native (some clang on arm64) builds without it.
PLAIN_FLAGS = [flag for flag in FLAGS if flag != "-march=native"]
COMPILE_SECONDS = 20  # a build takes ~0.3 s; a compiler that hangs costs no more than this

_lock = threading.Lock()
_kernel: object = None  # the loaded library, False once it is known unavailable


def sweep_kernel():
    """The C function `tensor_sweep`, built and loaded on first use; None if unavailable."""
    library = _library()
    return None if library is None else library.tensor_sweep


def square_sum(tensor: torch.Tensor):
    """A callable giving the sum of squares of `tensor` (a float, in double), or None.

    For a contiguous CPU float32 tensor that the caller keeps alive and in
    place (the flat gradient buffer): one C call, no torch dispatch.
    """
    library = _library()
    if library is None or not _suits(tensor):
        return None
    return functools.partial(
        library.sum_squares, ctypes.c_void_p(tensor.data_ptr()), ctypes.c_int64(tensor.numel())
    )


def places(tensors: list[torch.Tensor]) -> list[tuple[int, int]]:
    """Where each tensor's memory lies: (address, length), to tell when one moved.

    C-level maps: a Python loop costs ~1 us a tensor right after backward.
    """
    return list(zip(map(_DATA_PTR, tensors), map(_NUMEL, tensors), strict=True))


_DATA_PTR, _NUMEL = torch.Tensor.data_ptr, torch.Tensor.numel


def _library():
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                try:
                    _kernel = _load() or False
                except Exception:  # a speed-up only: numpy's way stays
                    _kernel = False
    return _kernel or None


def _suits(t: torch.Tensor) -> bool:
    return (
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and t.numel() > 0
    )


def _load():
    if os.environ.get("GRADTUI_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256("\0".join([SOURCE, *FLAGS, _cpu_signature()]).encode()).hexdigest()
    path = _cache_dir() / f"gradtui_stats-{key[:16]}.so"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as work:
            source = Path(work) / "gradtui_stats.c"
            source.write_text(SOURCE)
            built = Path(work) / path.name
            for flags in (FLAGS, PLAIN_FLAGS):
                done = subprocess.run(
                    [compiler, *flags, str(source), "-o", str(built), "-lm"],
                    capture_output=True,
                    timeout=COMPILE_SECONDS,
                )
                if done.returncode == 0:
                    break
            else:
                return None
            os.replace(built, path)  # atomic: a process building beside this one is harmless
    library = ctypes.CDLL(str(path))
    library.tensor_sweep.restype = None
    library.sum_squares.restype = ctypes.c_double
    return library


def _cache_dir() -> Path:
    own = os.environ.get("GRADTUI_CACHE")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradtui"


def _cpu_signature() -> str:
    # What -march=native depends on: the model and its instruction-set flags.
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [x for x in lines if x.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(wanted))
    except OSError:
        return f"{platform.machine()} {platform.processor()} {platform.platform()}"


class TensorSweep:
    """Sum, L2 norm, min and max of each of several CPU float32 tensors, in one native call.

    The tensors' memory is read where it lies, so they must stay put: the
    caller rebuilds the sweep when one moves (`places` tells). None from
    `build` where the kernel or the tensors do not suit.
    """

    __slots__ = ("places", "_call", "_args", "_out", "_rows", "_flat", "_keep")

    def __init__(self, function, tensors: list[torch.Tensor], centred: int = 0) -> None:
        k = len(tensors)
        self.places = places(tensors)
        pointers = (ctypes.c_void_p * k)(*[p for p, _ in self.places])
        lengths = (ctypes.c_int64 * k)(*[n for _, n in self.places])
        self._out = np.empty((5, k))
        self._rows, self._flat = self._out[:4], self._out.reshape(-1)
        # The memory the pointers point into stays alive, even if a parameter
        # is given new storage (`p.data = ...`): then the caller's `places` check
        # finds it moved, and until then the sweep reads old values, never freed memory.
        self._keep = [t.detach() for t in tensors]
        self._call = function
        out = ctypes.c_void_p(self._out.ctypes.data)
        self._args = (pointers, lengths, ctypes.c_int64(k), ctypes.c_int64(centred), out)

    @staticmethod
    def build(tensors: list[torch.Tensor], centred: int = 0) -> TensorSweep | None:
        """A sweep over `tensors`, or None without the kernel or for other than contiguous CPU float32.

        The first `centred` tensors get their squared deviations summed too
        (`flat`'s fifth row), in a second pass over each.
        """
        function = sweep_kernel()
        if function is None or not all(map(_suits, tensors)):
            return None
        return TensorSweep(function, tensors, centred)

    def __call__(self) -> list[list[float]]:
        """[sums, norms, minima, maxima], one float per tensor, NaN and inf as they come."""
        self._call(*self._args)
        return self._rows.tolist()

    def flat(self) -> list[float]:
        """Sums, norms, minima, maxima and squared deviations (0.0 past `centred`), row after row.

        One list for a caller that keeps the numbers as they are (a compact
        record, engine.compact_stats): no list per row.
        """
        self._call(*self._args)
        return self._flat.tolist()


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

"""The statistics kernel in C (engine.native_source), and the two ways Python calls it.

`load_kernel` compiles the kernel (engine.native_build) as a CPython
extension module where this Python's headers are installed, else as a plain
library called through ctypes; either gives an object with `sweeper` and
`summer`, which make the zero-argument callables engine.native_stats hands
out, and `histograms`, which bins strided samples in one call. GRADTUI_NATIVE=0 turns the kernel off; GRADTUI_NATIVE=ctypes skips the
extension module.

The kernel is built with OpenMP where the compiler has it, and a kernel's
`threaded` says whether its large sweeps may use torch's threads: only
where loading it mapped no OpenMP runtime besides the one torch had
already loaded (the same soname, so the same runtime and the same
workers). A second runtime would keep workers of its own spinning beside
torch's, slowing the training it measures.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import importlib.util
import os
import struct

import numpy as np

from engine.native_build import built_library, python_abi, python_headers
from engine.native_record import RECORD_SOURCE
from engine.native_source import MODULE_HEADER, MODULE_SOURCE, MODULE_TABLE, SOURCE

OPENMP = ["-fopenmp"]  # tried first; a compiler without it builds the kernel single-threaded
_RUNTIMES = ("libgomp", "libiomp", "libomp")  # OpenMP runtimes' library names


class ModuleKernel:
    """The kernel as the extension module `gradtui_sweep`: the cheapest calls."""

    kind = "module"

    def __init__(self, module, threaded: bool = False) -> None:
        self._module = module
        self.threaded = threaded and module.openmp()

    def sweeper(self, where: list[tuple[int, int]], centred: int, threads: int = 1):
        """A callable returning the sweep's 5k + 1 numbers over the tensors at `where`.

        `threads` above 1 lets a large sweep (no centred tensors) use that many.
        """
        k = len(where)
        state = struct.pack(
            f"qqq{k}Q{k}q", k, centred, threads, *[p for p, _ in where], *[n for _, n in where]
        )
        return functools.partial(self._module.flat, state)

    def recorder(self, sweeper, where: tuple, spec: tuple):
        """A compact statistics step's whole record in one call, over `sweeper`'s tensors.

        f(loss, eager_devices, step) gives the StepRecord or None
        (engine.native_record: what `where` and `spec` hold). `sweeper` is
        this kernel's own: a TensorSweep asks the kernel that built it.
        """
        return functools.partial(self._module.compact_record, sweeper.args[0], where, spec)

    def plain_recorder(self, summer, where: tuple, spec: tuple):
        """A plain step's whole record in one call, over `summer`'s tensor (a flat buffer).

        f(loss, step, epoch) gives the StepRecord or None (engine.native_record).
        None for a summer of another kernel (one loaded before this one).
        """
        if getattr(summer, "func", None) is not self._module.square_sum:
            return None
        return functools.partial(self._module.plain_record, summer.args[0], where, spec)

    def repointed(self, lengths: list[int]):
        """`sweeper` for tensors of fixed `lengths` whose addresses change: f(pointers, threads).

        Each call packs only the addresses (the lengths are packed once).
        """
        k, flat = len(lengths), self._module.flat
        pack_head, pack_pointers = struct.Struct("qqq").pack, struct.Struct(f"{k}Q").pack
        tail = struct.pack(f"{k}q", *lengths)

        def sweep(pointers: list[int], threads: int) -> list[float]:
            return flat(pack_head(k, 0, threads) + pack_pointers(*pointers) + tail)

        return sweep

    def summer(self, pointer: int, n: int):
        """A callable returning the sum of squares of the n floats at `pointer`."""
        state = struct.pack("qqqQq", 1, 0, 1, pointer, n)
        return functools.partial(self._module.square_sum, state)

    def histograms(
        self, where: list[tuple[int, int, int]], bounds: list[tuple[float, float]], bins: int
    ) -> list[float]:
        """Every histogram's bins + 1 counts, one list: `where` rows of (pointer, n, stride), `bounds` of (lo, scale)."""
        k = len(where)
        state = struct.pack(
            f"qq{3 * k}q{2 * k}d", k, bins, *[v for row in where for v in row],
            *[v for row in bounds for v in row],
        )  # fmt: skip
        return self._module.histograms(state)


class LibraryKernel:
    """The kernel through ctypes, where Python's headers are not installed."""

    kind = "ctypes"

    def __init__(self, library, threaded: bool = False) -> None:
        self._library = library
        self.threaded = threaded and bool(library.sweep_openmp())

    def sweeper(self, where: list[tuple[int, int]], centred: int, threads: int = 1):
        """A callable returning the sweep's 5k + 1 numbers over the tensors at `where`.

        `threads` above 1 lets a large sweep (no centred tensors) use that many.
        """
        k = len(where)
        pointers = (ctypes.c_void_p * k)(*[p for p, _ in where])
        lengths = (ctypes.c_int64 * k)(*[n for _, n in where])
        out = np.empty(5 * k + 1)
        call = functools.partial(
            self._library.tensor_sweep, pointers, lengths, ctypes.c_int64(k),
            ctypes.c_int64(centred), ctypes.c_int64(threads), ctypes.c_void_p(out.ctypes.data),
        )  # fmt: skip

        def flat() -> list[float]:
            call()
            return out.tolist()

        return flat

    def recorder(self, sweeper, where: tuple, spec: tuple) -> None:
        """None: through ctypes, a compact step's record is made in Python (engine.compact_stats)."""
        return None

    def plain_recorder(self, summer, where: tuple, spec: tuple) -> None:
        """None: through ctypes, a plain step's record is made in Python (engine.plain_lane)."""
        return None

    def repointed(self, lengths: list[int]):
        """`sweeper` for tensors of fixed `lengths` whose addresses change: f(pointers, threads)."""
        k, tensor_sweep = len(lengths), self._library.tensor_sweep
        pointer_array = ctypes.c_void_p * k
        lengths_in = (ctypes.c_int64 * k)(*lengths)
        out = np.empty(5 * k + 1)
        into = ctypes.c_void_p(out.ctypes.data)

        def sweep(pointers: list[int], threads: int) -> list[float]:
            tensor_sweep(
                pointer_array(*pointers), lengths_in, ctypes.c_int64(k), ctypes.c_int64(0),
                ctypes.c_int64(threads), into,
            )  # fmt: skip
            return out.tolist()

        return sweep

    def summer(self, pointer: int, n: int):
        """A callable returning the sum of squares of the n floats at `pointer`."""
        return functools.partial(
            self._library.sum_squares, ctypes.c_void_p(pointer), ctypes.c_int64(n)
        )

    def histograms(
        self, where: list[tuple[int, int, int]], bounds: list[tuple[float, float]], bins: int
    ) -> list[float]:
        """Every histogram's bins + 1 counts, one list: `where` rows of (pointer, n, stride), `bounds` of (lo, scale)."""
        k = len(where)
        rows = np.array(where, dtype=np.int64).reshape(-1)
        limits = np.array(bounds, dtype=np.float64).reshape(-1)
        out = np.empty(k * (bins + 1))
        self._library.strided_histograms(
            ctypes.c_void_p(rows.ctypes.data), ctypes.c_void_p(limits.ctypes.data),
            ctypes.c_int64(k), ctypes.c_int64(bins), ctypes.c_void_p(out.ctypes.data),
        )  # fmt: skip
        return out.tolist()


def load_kernel() -> ModuleKernel | LibraryKernel | None:
    """The kernel, compiled or taken from the cache; None where it cannot be built or is off."""
    choice = os.environ.get("GRADTUI_NATIVE", "1")
    if choice == "0":
        return None
    before = openmp_runtimes()
    headers = python_headers() if choice != "ctypes" else None
    if headers is not None:
        path = built_library(
            "gradtui_sweep", MODULE_HEADER + SOURCE + MODULE_SOURCE + RECORD_SOURCE + MODULE_TABLE,
            ["-I", headers],
            python_abi(), optional=OPENMP,
        )  # fmt: skip
        if path is not None:
            try:
                loader = importlib.machinery.ExtensionFileLoader("gradtui_sweep", str(path))
                spec = importlib.util.spec_from_file_location("gradtui_sweep", path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                return ModuleKernel(module, _shares_runtime(before))
            except (ImportError, OSError):
                pass  # a build this Python cannot load: ctypes below
    path = built_library("gradtui_stats", SOURCE, [], optional=OPENMP)
    if path is None:
        return None
    library = ctypes.CDLL(str(path))
    library.tensor_sweep.restype = None
    library.sum_squares.restype = ctypes.c_double
    library.sweep_openmp.restype = ctypes.c_int
    library.strided_histograms.restype = None
    return LibraryKernel(library, _shares_runtime(before))


def openmp_runtimes() -> set[str] | None:
    """The OpenMP runtimes' files mapped into this process; None where that cannot be told."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            found = set()
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if any(name in path.rsplit("/", 1)[-1] for name in _RUNTIMES):
                    found.add(path)
            return found
    except OSError:
        return None


def _shares_runtime(before: set[str] | None) -> bool:
    # Threaded only where torch had one OpenMP runtime loaded and the kernel added none.
    after = openmp_runtimes()
    return bool(before) and len(before) == 1 and after == before

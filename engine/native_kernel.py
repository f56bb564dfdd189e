"""The statistics kernel in C, and the two ways Python calls it.

`load_kernel` compiles the kernel (engine.native_build) as a CPython
extension module where this Python's headers are installed, else as a plain
library called through ctypes; either gives an object with `sweeper` and
`summer`, which make the zero-argument callables engine.native_stats hands
out. GRADTUI_NATIVE=0 turns the kernel off; GRADTUI_NATIVE=ctypes skips the
extension module.
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
        for (int j = 0; j < LANES; j++) { lo[j] = INFINITY; hi[j] = -INFINITY; }
        for (; i + LANES <= n; i += LANES) {
            for (int j = 0; j < LANES; j++) {
                float v = x[i + j];
                sum[j] += v;
                sq[j] += (double)v * v;
                lo[j] = v < lo[j] ? v : lo[j];
                hi[j] = v > hi[j] ? v : hi[j];
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
        }
        for (int j = 0; j < LANES; j++) {
            s += sum[j];
            q += sq[j];
            l = lo[j] < l ? lo[j] : l;
            h = hi[j] > h ? hi[j] : h;
        }
        /* A NaN anywhere makes the sum of squares NaN, and nothing else does
           (inf squares to inf; finite floats square finite in double): the
           main loop tests no element for NaN, a third faster (8.3 against 5.4
           billion elements a second in cache). */
        int nan = q != q;
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
# The kernel as a CPython extension module, where Python's headers are
# installed: a call from Python costs ~0.04 us and the result list is built
# in C, against ~0.9 us through ctypes and numpy's tolist (warm; ~2.8 us less
# right after backward on the regression model's statistics step, ~1.9 us
# less on its sentinel step). A `state` is bytes made by `ModuleKernel`:
# int64 k, centred, then k pointers and k lengths. Python.h comes first in
# the build, before any standard header (MODULE_HEADER).
MODULE_HEADER = "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n"
MODULE_SOURCE = r"""
static const int64_t *state_of(PyObject *state, int64_t per_tensor) {
    if (PyBytes_Check(state) && PyBytes_GET_SIZE(state) >= 16) {
        const int64_t *h = (const int64_t *)PyBytes_AS_STRING(state);
        if (h[0] >= 0 && PyBytes_GET_SIZE(state) == 16 + 8 * per_tensor * h[0]) return h;
    }
    PyErr_SetString(PyExc_TypeError, "not a gradtui sweep state");
    return NULL;
}

/* Every number tensor_sweep writes, as one list of 5k floats. */
static PyObject *flat(PyObject *self, PyObject *state) {
    const int64_t *h = state_of(state, 2);
    if (h == NULL) return NULL;
    int64_t k = h[0], n = 5 * h[0];
    double stack[320];
    double *out = n <= 320 ? stack : PyMem_Malloc(sizeof(double) * (size_t)n);
    if (out == NULL) return PyErr_NoMemory();
    tensor_sweep((const float *const *)(h + 2), h + 2 + k, k, h[1], out);
    PyObject *list = PyList_New(n);
    for (int64_t i = 0; list != NULL && i < n; i++) {
        PyObject *value = PyFloat_FromDouble(out[i]);
        if (value == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, value);
    }
    if (out != stack) PyMem_Free(out);
    return list;
}

/* sum_squares of the one tensor a state names. */
static PyObject *square_sum(PyObject *self, PyObject *state) {
    const int64_t *h = state_of(state, 2);
    if (h == NULL) return NULL;
    if (h[0] != 1) {
        PyErr_SetString(PyExc_TypeError, "square_sum takes a state of one tensor");
        return NULL;
    }
    return PyFloat_FromDouble(sum_squares((const float *)h[2], h[3]));
}

static PyMethodDef methods[] = {
    {"flat", flat, METH_O, "Every number of a sweep, one list."},
    {"square_sum", square_sum, METH_O, "One tensor's sum of squares."},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gradtui_sweep", NULL, -1, methods};
PyMODINIT_FUNC PyInit_gradtui_sweep(void) { return PyModule_Create(&module); }
"""


class ModuleKernel:
    """The kernel as the extension module `gradtui_sweep`: the cheapest calls."""

    kind = "module"

    def __init__(self, module) -> None:
        self._module = module

    def sweeper(self, where: list[tuple[int, int]], centred: int):
        """A callable returning the sweep's 5k numbers over the tensors at `where`."""
        k = len(where)
        state = struct.pack(
            f"qq{k}Q{k}q", k, centred, *[p for p, _ in where], *[n for _, n in where]
        )
        return functools.partial(self._module.flat, state)

    def summer(self, pointer: int, n: int):
        """A callable returning the sum of squares of the n floats at `pointer`."""
        return functools.partial(self._module.square_sum, struct.pack("qqQq", 1, 0, pointer, n))


class LibraryKernel:
    """The kernel through ctypes, where Python's headers are not installed."""

    kind = "ctypes"

    def __init__(self, library) -> None:
        self._library = library

    def sweeper(self, where: list[tuple[int, int]], centred: int):
        """A callable returning the sweep's 5k numbers over the tensors at `where`."""
        k = len(where)
        pointers = (ctypes.c_void_p * k)(*[p for p, _ in where])
        lengths = (ctypes.c_int64 * k)(*[n for _, n in where])
        out = np.empty(5 * k)
        call = functools.partial(
            self._library.tensor_sweep, pointers, lengths, ctypes.c_int64(k),
            ctypes.c_int64(centred), ctypes.c_void_p(out.ctypes.data),
        )  # fmt: skip

        def flat() -> list[float]:
            call()
            return out.tolist()

        return flat

    def summer(self, pointer: int, n: int):
        """A callable returning the sum of squares of the n floats at `pointer`."""
        return functools.partial(
            self._library.sum_squares, ctypes.c_void_p(pointer), ctypes.c_int64(n)
        )


def load_kernel() -> ModuleKernel | LibraryKernel | None:
    """The kernel, compiled or taken from the cache; None where it cannot be built or is off."""
    choice = os.environ.get("GRADTUI_NATIVE", "1")
    if choice == "0":
        return None
    headers = python_headers() if choice != "ctypes" else None
    if headers is not None:
        path = built_library(
            "gradtui_sweep", MODULE_HEADER + SOURCE + MODULE_SOURCE, ["-I", headers], python_abi()
        )
        if path is not None:
            try:
                loader = importlib.machinery.ExtensionFileLoader("gradtui_sweep", str(path))
                spec = importlib.util.spec_from_file_location("gradtui_sweep", path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                return ModuleKernel(module)
            except (ImportError, OSError):
                pass  # a build this Python cannot load: ctypes below
    path = built_library("gradtui_stats", SOURCE, [])
    if path is None:
        return None
    library = ctypes.CDLL(str(path))
    library.tensor_sweep.restype = None
    library.sum_squares.restype = ctypes.c_double
    return LibraryKernel(library)

"""The C source of the statistics kernel (engine.native_kernel builds and calls it).

`tensor_sweep` gives each of several float32 tensors its sum, L2 norm, min,
max and, for the first `centred`, its sum of squared deviations, in one pass
over memory with double accumulators. Above PARALLEL_ABOVE elements in all,
where compiled with OpenMP, the tensors are cut into chunks that `threads`
threads sweep, their partials then combined in chunk order (the same numbers
whatever the number of threads). Why OpenMP and not threads of its own: right
after backward, torch's OpenMP workers spin on the other cores waiting for
work; a thread of the kernel's own then shares a core with one and gains
nothing (2.6 against 2.5 ms over an 8x1024 MLP's 32 MB of gradients on 2
cores), while the same workers, handed the chunks, take 1.2 ms. So the
kernel is only run threaded where it shares torch's own OpenMP runtime
(engine.native_kernel checks).
"""

from __future__ import annotations

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define LANES 16
#define CHUNK (1 << 16)            /* floats a thread takes at a time: 256 KB */
#define PARALLEL_ABOVE (1 << 20)   /* elements in all: below, one thread (no wake-up to pay) */

/* A stretch of floats: its sum, sum of squares (in double), min and max.
   Min and max skip NaN; a NaN shows in the sum of squares (see finish). */
static void sweep_stretch(const float *x, int64_t n, double *s_out, double *q_out,
                          float *l_out, float *h_out) {
    int64_t i = 0;
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
    *s_out = s; *q_out = q; *l_out = l; *h_out = h;
}

/* Tensor t's row entries from its sums. A NaN anywhere makes the sum of
   squares NaN, and nothing else does (inf squares to inf; finite floats
   square finite in double): the main loop tests no element for NaN, a third
   faster (8.3 against 5.4 billion elements a second in cache). A sum of
   squares above float32's range gives an infinite norm, as torch's float32
   norm does. */
static void finish(double s, double q, float l, float h, int64_t t, int64_t k, double *out) {
    int nan = q != q;
    out[t] = s;
    out[k + t] = q > 3.4028234663852886e38 ? INFINITY : sqrt(q);
    out[2 * k + t] = nan ? NAN : l;
    out[3 * k + t] = nan ? NAN : h;
    out[4 * k + t] = 0.0;
}

/* Sum of squared deviations from `mean`, in double: a second pass, a standard
   deviation exact where the one-pass sums cancel. */
static double centred_squares(const float *x, int64_t n, double mean) {
    double dev[LANES] = {0}, m2 = 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double d = x[i + j] - mean;
            dev[j] += d * d;
        }
    for (; i < n; i++) m2 += (x[i] - mean) * (x[i] - mean);
    for (int j = 0; j < LANES; j++) m2 += dev[j];
    return m2;
}

typedef struct { int64_t tensor, start, length; } chunk_t;
typedef struct { double s, q; float l, h; } partial_t;

/* The chunked sweep over `threads` threads; 0 where its memory could not be had. */
static int sweep_chunked(const float *const *ptrs, const int64_t *lens, int64_t k, int threads,
                         double *out) {
    int64_t chunks = 0;
    for (int64_t t = 0; t < k; t++) chunks += (lens[t] + CHUNK - 1) / CHUNK;
    chunk_t *work = malloc(sizeof(chunk_t) * (size_t)chunks);
    partial_t *part = malloc(sizeof(partial_t) * (size_t)chunks);
    if (work == NULL || part == NULL) { free(work); free(part); return 0; }
    int64_t c = 0;
    for (int64_t t = 0; t < k; t++)
        for (int64_t a = 0; a < lens[t]; a += CHUNK, c++) {
            work[c].tensor = t;
            work[c].start = a;
            work[c].length = lens[t] - a < CHUNK ? lens[t] - a : CHUNK;
        }
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < chunks; i++)
        sweep_stretch(ptrs[work[i].tensor] + work[i].start, work[i].length,
                      &part[i].s, &part[i].q, &part[i].l, &part[i].h);
    c = 0;
    for (int64_t t = 0; t < k; t++) {
        double s = 0.0, q = 0.0;
        float l = INFINITY, h = -INFINITY;
        for (; c < chunks && work[c].tensor == t; c++) {
            s += part[c].s;
            q += part[c].q;
            l = part[c].l < l ? part[c].l : l;
            h = part[c].h > h ? part[c].h : h;
        }
        finish(s, q, l, h, t, k, out);
    }
    free(work);
    free(part);
    return 1;
}

/* The sum of the 5k numbers before it: not finite where any of them is (or
   where the sum overflows), one test for a caller that needs all finite. */
static void check_sum(int64_t k, double *out) {
    double all = 0.0;
    for (int64_t i = 0; i < 5 * k; i++) all += out[i];
    out[5 * k] = all;
}

/* out is [5][k] and one more: per tensor its sum, L2 norm, min, max and,
   for the first `centred` tensors, its sum of squared deviations from the
   mean (0.0 past them); min and max are NaN where the tensor holds a NaN;
   then check_sum's number. `threads` above 1 cuts a large sweep without
   centred tensors into chunks (sweep_chunked). */
void tensor_sweep(const float *const *ptrs, const int64_t *lens, int64_t k, int64_t centred,
                  int64_t threads, double *out) {
    int chunked = 0;
    if (threads > 1 && centred == 0) {
        int64_t total = 0;
        for (int64_t t = 0; t < k; t++) total += lens[t];
        chunked = total >= PARALLEL_ABOVE && sweep_chunked(ptrs, lens, k, (int)threads, out);
    }
    for (int64_t t = 0; !chunked && t < k; t++) {
        double s, q;
        float l, h;
        sweep_stretch(ptrs[t], lens[t], &s, &q, &l, &h);
        finish(s, q, l, h, t, k, out);
        if (t < centred && lens[t] > 0) out[4 * k + t] = centred_squares(ptrs[t], lens[t], s / lens[t]);
    }
    check_sum(k, out);
}

/* Whether the chunks can go to threads: built with OpenMP. */
int sweep_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Histograms of evenly strided samples, counted as engine.histograms'
   fast_histogram counts them with torch: every `stride`-th of a tensor's n
   floats goes to bin (x - lo) * scale, in float32, truncated; bins + 1 bins.
   A bin outside 0..bins (torch's slice drops those above; none lies below
   lo) is not counted. `where` is k rows of (pointer, n, stride), `bounds` k
   rows of (lo, scale), `counts` k rows of bins + 1. One call for a step's
   dozens of histograms: torch's four operators each cost ~100 us a histogram. */
void strided_histograms(const int64_t *where, const double *bounds, int64_t k, int64_t bins,
                        double *counts) {
    for (int64_t t = 0; t < k; t++) {
        const float *x = (const float *)where[3 * t];
        int64_t n = where[3 * t + 1], stride = where[3 * t + 2];
        float lo = (float)bounds[2 * t], scale = (float)bounds[2 * t + 1], top = (float)(bins + 1);
        double *row = counts + t * (bins + 1);
        int64_t tally[256] = {0};
        int64_t *c = bins < 256 ? tally : NULL;
        for (int64_t b = 0; b <= bins; b++) row[b] = 0.0;
        for (int64_t i = 0; i < n; i += stride) {
            float p = (x[i] - lo) * scale;
            if (p >= 0.0f && p < top) {
                if (c != NULL) c[(int64_t)p]++;
                else row[(int64_t)p] += 1.0;
            }
        }
        for (int64_t b = 0; c != NULL && b <= bins; b++) row[b] = (double)c[b];
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
# int64 k, centred, threads, then k pointers and k lengths. Python.h comes
# first in the build, before any standard header (MODULE_HEADER).
MODULE_HEADER = "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n"
MODULE_SOURCE = r"""
#define STATE_HEAD 3  /* k, centred, threads */

/* A state's words, checked against its size (k from the size, never the
   other way round: a huge k must not overflow into a size that matches). */
static const int64_t *state_of(PyObject *state, int64_t per_tensor) {
    Py_ssize_t size = PyBytes_Check(state) ? PyBytes_GET_SIZE(state) : -1;
    if (size >= 8 * STATE_HEAD && size % 8 == 0 && (size / 8 - STATE_HEAD) % per_tensor == 0) {
        const int64_t *h = (const int64_t *)PyBytes_AS_STRING(state);
        if (h[0] == (size / 8 - STATE_HEAD) / per_tensor) return h;
    }
    PyErr_SetString(PyExc_TypeError, "not a gradtui sweep state");
    return NULL;
}

/* Every number tensor_sweep writes, as one list of 5k + 1 floats. */
static PyObject *flat(PyObject *self, PyObject *state) {
    const int64_t *h = state_of(state, 2);
    if (h == NULL) return NULL;
    int64_t k = h[0], n = 5 * h[0] + 1;
    double stack[321];
    double *out = n <= 321 ? stack : PyMem_Malloc(sizeof(double) * (size_t)n);
    if (out == NULL) return PyErr_NoMemory();
    tensor_sweep((const float *const *)(h + STATE_HEAD), h + STATE_HEAD + k, k, h[1], h[2], out);
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
    return PyFloat_FromDouble(sum_squares((const float *)h[STATE_HEAD], h[STATE_HEAD + 1]));
}

#define MAX_BINS (1 << 16)

/* strided_histograms over a state of int64 k, bins, then k rows of (pointer,
   n, stride) and k rows of (lo, scale) as doubles: k * (bins + 1) floats.
   Everything but the pointers is checked (a stride below 1 would never end). */
static PyObject *histograms(PyObject *self, PyObject *state) {
    Py_ssize_t size = PyBytes_Check(state) ? PyBytes_GET_SIZE(state) : -1;
    if (size < 16 || (size - 16) % 40 != 0) goto bad;
    const int64_t *h = (const int64_t *)PyBytes_AS_STRING(state);
    int64_t k = h[0], bins = h[1];
    if (k != (size - 16) / 40 || bins < 1 || bins > MAX_BINS) goto bad;
    for (int64_t t = 0; t < k; t++)
        if (h[2 + 3 * t + 1] < 0 || h[2 + 3 * t + 2] < 1) goto bad;
    int64_t n = k * (bins + 1);
    double *out = PyMem_Malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (out == NULL) return PyErr_NoMemory();
    strided_histograms(h + 2, (const double *)(h + 2 + 3 * k), k, bins, out);
    PyObject *list = PyList_New(n);
    for (int64_t i = 0; list != NULL && i < n; i++) {
        PyObject *value = PyFloat_FromDouble(out[i]);
        if (value == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, value);
    }
    PyMem_Free(out);
    return list;
bad:
    PyErr_SetString(PyExc_TypeError, "not a gradtui histogram state");
    return NULL;
}

static PyObject *openmp(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(sweep_openmp());
}
"""

# The module's table, after engine.native_record's RECORD_SOURCE (compact_record).
MODULE_TABLE = r"""
static PyMethodDef methods[] = {
    {"flat", flat, METH_O, "Every number of a sweep, one list."},
    {"square_sum", square_sum, METH_O, "One tensor's sum of squares."},
    {"histograms", histograms, METH_O, "Histograms of strided samples, one list."},
    {"openmp", openmp, METH_NOARGS, "Whether the kernel was built with OpenMP."},
    {"compact_record", (PyCFunction)(void (*)(void))compact_record, METH_FASTCALL,
     "A compact statistics step's record, or None."},
    {"plain_record", (PyCFunction)(void (*)(void))plain_record, METH_FASTCALL,
     "A plain step's record, or None."},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gradtui_sweep", NULL, -1, methods};
PyMODINIT_FUNC PyInit_gradtui_sweep(void) {
    return record_names() ? PyModule_Create(&module) : PyErr_NoMemory();
}
"""

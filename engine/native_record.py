"""The C source of a CPU step's whole record: a compact statistics step's, and a plain step's.

On a small CPU model a statistics step is bound by the interpreter, not by
arithmetic, and not only by its own lines. On the regression model, timed
in place, the probe's calls took ~4.5 us of a ~90 us statistics step and
made the model's own forward, backward and optimizer step ~4.3 us slower
between them: the interpreter's work displaces torch's from the core's
caches and predictors. Building the same record in C, the Python lines
gone, the probe's calls took ~2.4 us and torch's work ~2.2 us more
(benchmarks/RESULTS.md, "Session 27 summary"). So where the kernel is an
extension module, one call does it all: the checks that the sweep still
reads the step's tensors, the sweep, the loss read, the finiteness test,
the total norm and the record.

`compact_record(state, where, spec, loss, eager_devices, step)`:
- `state`: the sweep's (engine.native_kernel.ModuleKernel.sweeper);
- `where`: (device type, the first parameter, its view in the flat buffer,
  the swept weights, their addresses as swept, what keeps the swept memory
  alive); the call gives None unless the device is in `eager_devices`, the
  parameter's `.grad` is still the view and no weight has moved;
- `spec`: (StepRecord, a template of its instance dict, CompactLayers, the
  layout, lr, the number of gradients swept before the weights);
  engine.compact_stats.record_spec makes it;
- None too where the loss or any swept number is not finite: the caller
  then takes the probe's general path, which counts and recomputes.

The record is the one engine.compact_stats.compact_record builds in
Python (a test holds them together), but for the total norm, whose squares
are summed with Neumaier's compensation here and by math.hypot there
(within an ulp of each other). Its epoch is the template's 0: the probe's
`end_step` sets the step's own.

`plain_record(state, where, spec, loss, step, epoch)` does the same for a
plain step (the sentinels only: the loss and the total norm) over the flat
buffer's sum of squares: engine.plain_lane.PlainLane's `read` where the
kernel is an extension module. On the regression model's Trainer it took
the engine step from 1.025-1.035x to 1.008-1.016x of the bare loop (one
Trainer, the lane's read swapped between blocks; "Session 27 summary").
Its record is engine.recording.plain_step_record's, bit for bit.
"""

from __future__ import annotations

RECORD_SOURCE = r"""
static PyObject *name_grad, *name_data_ptr, *name_item, *name_dict, *name_layout,
    *name_values, *name_lr, *name_built, *key_step, *key_epoch, *key_loss, *key_norm,
    *key_clipped, *key_layers, *no_args;

/* The names compact_record looks up, interned once; 0 where memory ran out. */
static int record_names(void) {
    if (no_args != NULL) return 1;  /* a second import of the module */
    static const char *text[] = {"grad", "data_ptr", "item", "__dict__", "_layout", "_values",
                                 "_lr", "_built", "step", "epoch", "loss", "grad_norm",
                                 "grad_norm_clipped", "layers"};
    PyObject **name[] = {&name_grad, &name_data_ptr, &name_item, &name_dict, &name_layout,
                         &name_values, &name_lr, &name_built, &key_step, &key_epoch, &key_loss,
                         &key_norm, &key_clipped, &key_layers};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        if ((*name[i] = PyUnicode_InternFromString(text[i])) == NULL) return 0;
    no_args = PyTuple_New(0);
    return no_args != NULL;
}

/* 1 where `parameter`'s .grad is still `view` (the flat buffer holds the
   gradients), 0 where not, -1 on an error. */
static int holds_view(PyObject *parameter, PyObject *view) {
    PyObject *grad = PyObject_GetAttr(parameter, name_grad);
    if (grad == NULL) return -1;
    Py_DECREF(grad);  /* only its identity is wanted: the view holds it too */
    return grad == view;
}

/* An object of the record class `type` whose instance dict is `fields`, as
   engine.recording.fast_record makes one; NULL on an error. */
static PyObject *record_of(PyTypeObject *type, PyObject *fields) {
    PyObject *record = type->tp_new(type, no_args, NULL);
    if (record != NULL && PyObject_GenericSetAttr(record, name_dict, fields) < 0) Py_CLEAR(record);
    return record;
}

/* The loss tensor's value as its .item() gives it, in `*item`; 1 where
   finite, 0 where not, -1 on an error. */
static int finite_loss(PyObject *loss, PyObject **item) {
    *item = PyObject_CallMethodNoArgs(loss, name_item);
    if (*item == NULL) return -1;
    double value = PyFloat_AsDouble(*item);
    if (value == -1.0 && PyErr_Occurred()) return -1;
    return isfinite(value);
}

/* 1 where the sweep still reads this step's tensors, 0 where not, -1 on an error. */
static int still_in_place(PyObject *where, PyObject *eager_devices) {
    int eager = PySet_Contains(eager_devices, PyTuple_GET_ITEM(where, 0));
    if (eager <= 0) return eager;
    int held = holds_view(PyTuple_GET_ITEM(where, 1), PyTuple_GET_ITEM(where, 2));
    if (held <= 0) return held;
    PyObject *weights = PyTuple_GET_ITEM(where, 3), *addresses = PyTuple_GET_ITEM(where, 4);
    if (!PyTuple_Check(weights) || !PyTuple_Check(addresses)
        || PyTuple_GET_SIZE(weights) != PyTuple_GET_SIZE(addresses)) {
        PyErr_SetString(PyExc_TypeError, "compact_record: weights and addresses, two tuples");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(weights); i++) {
        PyObject *address = PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(weights, i), name_data_ptr);
        if (address == NULL) return -1;
        int same = PyObject_RichCompareBool(address, PyTuple_GET_ITEM(addresses, i), Py_EQ);
        Py_DECREF(address);
        if (same <= 0) return same;
    }
    return 1;
}

/* The layers' and the record's objects, as CompactLayers(layout, values, lr)
   and engine.recording.new_step_record make them; NULL on an error. */
static PyObject *build_record(PyObject *spec, PyObject *step, PyObject *loss, double total,
                              PyObject *values) {
    PyTypeObject *record_type = (PyTypeObject *)PyTuple_GET_ITEM(spec, 0);
    PyTypeObject *layers_type = (PyTypeObject *)PyTuple_GET_ITEM(spec, 2);
    PyObject *template = PyTuple_GET_ITEM(spec, 1);
    PyObject *layers = layers_type->tp_new(layers_type, no_args, NULL);
    PyObject *built = PyDict_New();
    PyObject *norm = PyFloat_FromDouble(total);
    PyObject *fields = PyDict_Copy(template);
    PyObject *record = NULL;
    if (layers == NULL || built == NULL || norm == NULL || fields == NULL) goto done;
    if (PyObject_GenericSetAttr(layers, name_layout, PyTuple_GET_ITEM(spec, 3)) < 0
        || PyObject_GenericSetAttr(layers, name_values, values) < 0
        || PyObject_GenericSetAttr(layers, name_lr, PyTuple_GET_ITEM(spec, 4)) < 0
        || PyObject_GenericSetAttr(layers, name_built, built) < 0)
        goto done;
    if (PyDict_SetItem(fields, key_step, step) < 0 || PyDict_SetItem(fields, key_loss, loss) < 0
        || PyDict_SetItem(fields, key_norm, norm) < 0
        || PyDict_SetItem(fields, key_clipped, norm) < 0  /* nothing clips on this path */
        || PyDict_SetItem(fields, key_layers, layers) < 0)
        goto done;
    record = record_of(record_type, fields);
done:
    Py_XDECREF(layers);
    Py_XDECREF(built);
    Py_XDECREF(norm);
    Py_XDECREF(fields);
    return record;
}

/* Whether `type` is a class whose objects can be made (a type without tp_new cannot). */
static int makes_objects(PyObject *type) {
    return PyType_Check(type) && ((PyTypeObject *)type)->tp_new != NULL;
}

static PyObject *compact_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *where = nargs == 6 ? args[1] : NULL, *spec = nargs == 6 ? args[2] : NULL;
    if (where == NULL || !PyTuple_Check(where) || PyTuple_GET_SIZE(where) != 6
        || !PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 6
        || !makes_objects(PyTuple_GET_ITEM(spec, 0)) || !PyDict_Check(PyTuple_GET_ITEM(spec, 1))
        || !makes_objects(PyTuple_GET_ITEM(spec, 2)) || !PyAnySet_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "compact_record(state, where, spec, loss, eager_devices, step)");
        return NULL;
    }
    const int64_t *h = state_of(args[0], 2);
    if (h == NULL) return NULL;
    Py_ssize_t gradients = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 5));
    if (gradients < 0 || gradients > h[0]) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "compact_record: gradients");
        return NULL;
    }
    int placed = still_in_place(where, args[4]);
    if (placed <= 0) {
        if (placed < 0) return NULL;
        Py_RETURN_NONE;
    }
    int64_t k = h[0], n = 5 * k + 1;
    double stack[321];
    double *out = n <= 321 ? stack : PyMem_Malloc(sizeof(double) * (size_t)n);
    if (out == NULL) return PyErr_NoMemory();
    tensor_sweep((const float *const *)(h + STATE_HEAD), h + STATE_HEAD + k, k, h[1], h[2], out);
    PyObject *loss = NULL, *values = NULL, *record = NULL;
    if (!isfinite(out[n - 1])) goto done;  /* NaN or inf somewhere: the general path counts */
    if (finite_loss(args[3], &loss) <= 0) goto done;
    /* The gradients' total norm: their norms' squares summed with Neumaier's
       compensation (every norm finite here, so no square overflows a double). */
    double sum = 0.0, compensation = 0.0;
    for (int64_t t = 0; t < gradients; t++) {
        double square = out[k + t] * out[k + t], next = sum + square;
        compensation += fabs(sum) >= fabs(square) ? (sum - next) + square : (square - next) + sum;
        sum = next;
    }
    values = PyList_New(n);
    for (int64_t i = 0; values != NULL && i < n; i++) {
        PyObject *value = PyFloat_FromDouble(out[i]);
        if (value == NULL) Py_CLEAR(values);
        else PyList_SET_ITEM(values, i, value);
    }
    if (values != NULL) record = build_record(spec, args[5], loss, sqrt(sum + compensation), values);
done:
    if (out != stack) PyMem_Free(out);
    Py_XDECREF(loss);
    Py_XDECREF(values);
    if (record == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return record;
}

/* plain_record(state, where, spec, loss, step, epoch): a plain step's StepRecord, or None.
   `state` is square_sum's, over the flat buffer; `where` = (the first
   parameter, its view, what keeps the buffer alive); `spec` = (StepRecord,
   a template of its instance dict: the blank layers, nothing captured). None
   where the parameter's .grad is no longer the view, or the loss or the sum
   of squares is not finite (past float32's range: an infinite norm). */
static PyObject *plain_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *where = nargs == 6 ? args[1] : NULL, *spec = nargs == 6 ? args[2] : NULL;
    if (where == NULL || !PyTuple_Check(where) || PyTuple_GET_SIZE(where) != 3
        || !PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2
        || !makes_objects(PyTuple_GET_ITEM(spec, 0)) || !PyDict_Check(PyTuple_GET_ITEM(spec, 1))) {
        PyErr_SetString(PyExc_TypeError, "plain_record(state, where, spec, loss, step, epoch)");
        return NULL;
    }
    const int64_t *h = state_of(args[0], 2);
    if (h == NULL) return NULL;
    if (h[0] != 1) {
        PyErr_SetString(PyExc_TypeError, "plain_record takes a state of one tensor");
        return NULL;
    }
    int held = holds_view(PyTuple_GET_ITEM(where, 0), PyTuple_GET_ITEM(where, 1));
    if (held <= 0) {
        if (held < 0) return NULL;
        Py_RETURN_NONE;
    }
    double q = sum_squares((const float *)h[STATE_HEAD], h[STATE_HEAD + 1]);
    if (!(q <= 3.4028234663852886e38)) Py_RETURN_NONE;  /* NaN fails it too */
    PyObject *loss = NULL, *norm = NULL, *fields = NULL, *record = NULL;
    if (finite_loss(args[3], &loss) <= 0) goto done;
    norm = PyFloat_FromDouble(sqrt(q));
    fields = norm == NULL ? NULL : PyDict_Copy(PyTuple_GET_ITEM(spec, 1));
    if (fields == NULL || PyDict_SetItem(fields, key_step, args[4]) < 0
        || PyDict_SetItem(fields, key_epoch, args[5]) < 0
        || PyDict_SetItem(fields, key_loss, loss) < 0 || PyDict_SetItem(fields, key_norm, norm) < 0
        || PyDict_SetItem(fields, key_clipped, norm) < 0)
        goto done;
    record = record_of((PyTypeObject *)PyTuple_GET_ITEM(spec, 0), fields);
done:
    Py_XDECREF(loss);
    Py_XDECREF(norm);
    Py_XDECREF(fields);
    if (record == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return record;
}
"""

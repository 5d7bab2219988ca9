/*
 * _C.c — the CPython extension of the tensorc package, written on the
 * public C API (include/tensorc.h) and nothing else of the library.
 *
 * Three types:
 *   Context   a tc_context (compiler, kernel cache, thread pool), counters
 *             of what it compiled, and the framework objects the Python
 *             layer hands it (torch.Tensor, torch.empty, numpy.empty, the
 *             dtype objects), so that this file imports nothing itself;
 *   Program   a checked tc_program (optionally specialised by compile-time
 *             constants) with its entries' signatures;
 *   Error     tensorc.Error, a ValueError carrying the tc_error fields.
 *
 * The call path (Program.run) is the package's fast path, so it is C from
 * the argument tuple to the result: each argument is bound to a DLTensor
 * without copying —
 *   torch.Tensor   data_ptr(), shape, stride(), dtype (cheaper than its
 *                  __dlpack__, which is written in Python);
 *   buffer objects numpy arrays and scalars, through the buffer protocol;
 *   __dlpack__     any other producer: the capsule is consumed as the DLPack
 *                  specification says (renamed "used_dltensor", deleter
 *                  called after the run); versioned capsules too;
 *   numbers        Python bool/int/float for a rank-0 parameter, converted
 *                  to its declared type;
 * — output shapes come from tc_infer_shapes, outputs are allocated compact
 * (torch.empty when an input was a torch tensor, else numpy.empty) or
 * checked by tc_run when passed with out=, and the kernel runs with the GIL
 * released.  CUDA tensors run on their device, on PyTorch's current stream
 * there (tc_run_ex), with outputs allocated on that device and numbers for
 * scalar parameters made 0-d tensors there.  run() returns NotImplemented
 * when the call needs PyTorch's dispatcher instead: an input that requires
 * grad, or a tensor subclass
 * (fake tensors, functional tensors...).  The Python layer then goes through
 * the registered operator.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "tensorc.h"

/* DLPack 1.0's versioned managed tensor, declared from the specification. */
typedef struct {
  uint32_t major, minor;
} DLPackVersion;

typedef struct DLManagedTensorVersioned {
  DLPackVersion version;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned *self);
  uint64_t flags;
  DLTensor dl_tensor;
} DLManagedTensorVersioned;

#define DLPACK_FLAG_READ_ONLY ((uint64_t)1 << 0)

static PyObject *ErrorType; /* tensorc.Error; set once at module init */

static const char *const status_names[] = {
#define X(name, text) #name,
    TC_STATUS_LIST(X)
#undef X
};

static const char *const size_op_names[] = {
#define X(name, text) text,
    TC_SIZE_OP_LIST(X)
#undef X
};

/* ================================================================
 * errors
 * ================================================================ */

static int set_attr(PyObject *o, const char *name, PyObject *v) {
  if (!v)
    return -1;
  int rc = PyObject_SetAttrString(o, name, v);
  Py_DECREF(v);
  return rc;
}

/* "TC_ERR_ARGUMENT" -> "argument" */
static PyObject *status_word(tc_status s) {
  const char *n = (unsigned)s < sizeof status_names / sizeof *status_names ? status_names[s]
                                                                          : "TC_ERR_UNKNOWN";
  const char *w = strncmp(n, "TC_ERR_", 7) ? n + 3 : n + 7;
  PyObject *o = PyUnicode_FromString(w);
  if (o) {
    PyObject *low = PyObject_CallMethod(o, "lower", NULL);
    Py_DECREF(o);
    o = low;
  }
  return o;
}

/* Raises tensorc.Error from `e`: str() is the full diagnostic for located
 * errors, the message otherwise. Returns NULL. */
static PyObject *raise_tc(const tc_error *e) {
  const char *text = e->line > 0 ? e->diagnostic : e->message;
  PyObject *exc = PyObject_CallFunction(ErrorType, "s", text[0] ? text : "unknown error");
  if (!exc)
    return NULL;
  if (set_attr(exc, "code", status_word(e->code)) ||
      set_attr(exc, "message", PyUnicode_FromString(e->message)) ||
      set_attr(exc, "line", e->line > 0 ? PyLong_FromLong(e->line) : Py_NewRef(Py_None)) ||
      set_attr(exc, "col", e->line > 0 ? PyLong_FromLong(e->col) : Py_NewRef(Py_None)) ||
      set_attr(exc, "source_line",
               e->line > 0 ? PyUnicode_FromString(e->source_line) : Py_NewRef(Py_None)) ||
      set_attr(exc, "file", e->file[0] ? PyUnicode_FromString(e->file) : Py_NewRef(Py_None)) ||
      set_attr(exc, "diagnostic", PyUnicode_FromString(e->diagnostic))) {
    Py_DECREF(exc);
    return NULL;
  }
  PyErr_SetObject(ErrorType, exc);
  Py_DECREF(exc);
  return NULL;
}

/* Raises tensorc.Error with code `code` and a formatted message. */
static PyObject *raise_msg(tc_status code, const char *fmt, ...) {
  tc_error e;
  memset(&e, 0, sizeof e);
  e.code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  snprintf(e.diagnostic, sizeof e.diagnostic, "error: %s", e.message);
  return raise_tc(&e);
}

/* ================================================================
 * Context
 * ================================================================ */

typedef struct {
  PyObject_HEAD
  tc_context *ctx;
  long long programs;         /* tc_compile successes */
  long long prepares;         /* entries made ready (first use per program) */
  long long kernels_compiled; /* ... by running the C compiler */
  long long kernels_loaded;   /* ... from the disk cache */
  long long kernels_reused;   /* ... from the memory cache */
  /* bound by the Python layer; NULL when absent */
  PyTypeObject *torch_tensor;
  PyObject *torch_empty, *torch_cpu, *torch_grad_enabled;
  PyObject *torch_full;       /* torch.full: numbers made 0-d tensors of a CUDA run */
  PyObject *torch_stream;     /* device index -> the raw current CUDA stream (an int) */
  PyObject *torch_dtypes[TC_NUM_DTYPES];
  PyObject *np_empty;
  PyObject *np_dtypes[TC_NUM_DTYPES];
  PyObject *empty_kwnames;    /* ("dtype", "device") */
} ContextObject;

static PyTypeObject ContextType;

static void Context_dealloc(ContextObject *self) {
  tc_context_free(self->ctx);
  Py_XDECREF(self->torch_tensor);
  Py_XDECREF(self->torch_empty);
  Py_XDECREF(self->torch_cpu);
  Py_XDECREF(self->torch_grad_enabled);
  Py_XDECREF(self->torch_full);
  Py_XDECREF(self->torch_stream);
  Py_XDECREF(self->np_empty);
  Py_XDECREF(self->empty_kwnames);
  for (int i = 0; i < TC_NUM_DTYPES; i++) {
    Py_XDECREF(self->torch_dtypes[i]);
    Py_XDECREF(self->np_dtypes[i]);
  }
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Context_init(ContextObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"cache_dir", "num_threads", "cc", "cflags", "disk_cache", "verbose",
                           NULL};
  const char *cache_dir = NULL, *cc = NULL, *cflags = NULL;
  int num_threads = 0, disk_cache = 1, verbose = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|zizzpp", kwlist, &cache_dir, &num_threads, &cc,
                                   &cflags, &disk_cache, &verbose))
    return -1;
  if (self->ctx) {
    PyErr_SetString(PyExc_RuntimeError, "Context is already initialised");
    return -1;
  }
  tc_context_options o;
  tc_context_options_init(&o);
  o.cache_dir = cache_dir;
  o.cc = cc;
  o.extra_cflags = cflags;
  o.num_threads = num_threads;
  o.disk_cache = disk_cache;
  o.verbose = verbose;
  tc_error err;
  if (tc_context_new(&o, &self->ctx, &err) != TC_OK) {
    raise_tc(&err);
    return -1;
  }
  self->empty_kwnames = Py_BuildValue("(ss)", "dtype", "device");
  return self->empty_kwnames ? 0 : -1;
}

/* Fills `slots` from a tuple of TC_NUM_DTYPES objects (None: absent). */
static int bind_dtypes(PyObject **slots, PyObject *tuple) {
  if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != TC_NUM_DTYPES) {
    PyErr_Format(PyExc_TypeError, "expected a tuple of %d dtypes", TC_NUM_DTYPES);
    return -1;
  }
  for (int i = 0; i < TC_NUM_DTYPES; i++) {
    PyObject *o = PyTuple_GET_ITEM(tuple, i);
    Py_XSETREF(slots[i], o == Py_None ? NULL : Py_NewRef(o));
  }
  return 0;
}

/* bind_torch(torch.Tensor, torch.empty, torch.device("cpu"),
 *            torch.is_grad_enabled, dtypes, torch.full=None, stream=None);
 * stream(device_index) -> the current CUDA stream of that device as an int
 * (needed only for CUDA tensors). */
static PyObject *Context_bind_torch(ContextObject *self, PyObject *args) {
  PyObject *tensor, *empty, *cpu, *grad, *dtypes, *full = Py_None, *stream = Py_None;
  if (!PyArg_ParseTuple(args, "O!OOOO|OO", &PyType_Type, &tensor, &empty, &cpu, &grad, &dtypes,
                        &full, &stream))
    return NULL;
  Py_XSETREF(self->torch_full, full == Py_None ? NULL : Py_NewRef(full));
  Py_XSETREF(self->torch_stream, stream == Py_None ? NULL : Py_NewRef(stream));
  if (bind_dtypes(self->torch_dtypes, dtypes))
    return NULL;
  Py_XSETREF(self->torch_tensor, (PyTypeObject *)Py_NewRef(tensor));
  Py_XSETREF(self->torch_empty, Py_NewRef(empty));
  Py_XSETREF(self->torch_cpu, Py_NewRef(cpu));
  Py_XSETREF(self->torch_grad_enabled, Py_NewRef(grad));
  Py_RETURN_NONE;
}

/* bind_numpy(numpy.empty, dtypes) */
static PyObject *Context_bind_numpy(ContextObject *self, PyObject *args) {
  PyObject *empty, *dtypes;
  if (!PyArg_ParseTuple(args, "OO", &empty, &dtypes))
    return NULL;
  if (bind_dtypes(self->np_dtypes, dtypes))
    return NULL;
  Py_XSETREF(self->np_empty, Py_NewRef(empty));
  Py_RETURN_NONE;
}

static PyObject *Context_stats(ContextObject *self, PyObject *unused) {
  (void)unused;
  return Py_BuildValue("{sLsLsLsLsL}", "programs", self->programs, "prepares", self->prepares,
                       "kernels_compiled", self->kernels_compiled, "kernels_loaded",
                       self->kernels_loaded, "kernels_reused", self->kernels_reused);
}

static PyMethodDef Context_methods[] = {
    {"bind_torch", (PyCFunction)Context_bind_torch, METH_VARARGS,
     "bind_torch(Tensor, empty, cpu_device, is_grad_enabled, dtypes, full=None, "
     "stream=None): the torch objects the call path uses (stream(i): device i's current "
     "CUDA stream as an int)"},
    {"bind_numpy", (PyCFunction)Context_bind_numpy, METH_VARARGS,
     "bind_numpy(empty, dtypes): the numpy objects the call path uses"},
    {"stats", (PyCFunction)Context_stats, METH_NOARGS, "counters of compiles and kernel loads"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorc._C.Context",
    .tp_basicsize = sizeof(ContextObject),
    .tp_dealloc = (destructor)Context_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context(cache_dir=None, num_threads=0, cc=None, cflags=None, disk_cache=True, "
              "verbose=False): None means the environment's (TENSORC_CACHE_DIR, "
              "TENSORC_NUM_THREADS, CC, TENSORC_CFLAGS) or the default",
    .tp_methods = Context_methods,
    .tp_init = (initproc)Context_init,
    .tp_new = PyType_GenericNew,
};

/* ================================================================
 * Program
 * ================================================================ */

typedef struct EntryInfo {
  int nin, nout;
  tc_param_info *in, *out; /* strings owned by the tc_program */
  int prepared;
  uint32_t cuda_prepared; /* bit d: made ready for CUDA device d (d < 32) */
} EntryInfo;

typedef struct {
  PyObject_HEAD
  ContextObject *ctx;
  tc_program *prog;
  int nentries;
  EntryInfo *entries;
} ProgramObject;

static PyTypeObject ProgramType;

static void Program_dealloc(ProgramObject *self) {
  for (int i = 0; self->entries && i < self->nentries; i++) {
    PyMem_Free(self->entries[i].in);
    PyMem_Free(self->entries[i].out);
  }
  PyMem_Free(self->entries);
  tc_program_free(self->prog);
  Py_XDECREF(self->ctx);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Reads each entry's signature once. */
static int load_entries(ProgramObject *self) {
  int n = tc_program_num_entries(self->prog);
  self->entries = PyMem_Calloc((size_t)n + 1, sizeof *self->entries);
  if (!self->entries) {
    PyErr_NoMemory();
    return -1;
  }
  self->nentries = n;
  for (int i = 0; i < n; i++) {
    EntryInfo *e = &self->entries[i];
    e->nin = tc_entry_num_inputs(self->prog, i);
    e->nout = tc_entry_num_outputs(self->prog, i);
    e->in = PyMem_Calloc((size_t)e->nin + 1, sizeof *e->in);
    e->out = PyMem_Calloc((size_t)e->nout + 1, sizeof *e->out);
    if (!e->in || !e->out) {
      PyErr_NoMemory();
      return -1;
    }
    for (int k = 0; k < e->nin; k++)
      tc_entry_input(self->prog, i, k, &e->in[k]);
    for (int k = 0; k < e->nout; k++)
      tc_entry_output(self->prog, i, k, &e->out[k]);
  }
  return 0;
}

/* Reads ((name, is_float, value), ...) into `out` (PyMem, names borrowed
 * from the tuple, which the caller keeps alive). */
static int read_constants(PyObject *seq, tc_constant **out, int *n) {
  *out = NULL;
  *n = 0;
  if (seq == Py_None)
    return 0;
  if (!PyTuple_Check(seq)) {
    PyErr_SetString(PyExc_TypeError, "constants must be a tuple of (name, is_float, value)");
    return -1;
  }
  Py_ssize_t len = PyTuple_GET_SIZE(seq);
  tc_constant *c = PyMem_Calloc((size_t)len + 1, sizeof *c);
  if (!c) {
    PyErr_NoMemory();
    return -1;
  }
  for (Py_ssize_t i = 0; i < len; i++) {
    PyObject *item = PyTuple_GET_ITEM(seq, i);
    PyObject *value;
    int is_float;
    if (!PyArg_ParseTuple(item, "spO", &c[i].name, &is_float, &value))
      goto fail;
    c[i].is_float = is_float;
    if (is_float)
      c[i].f = PyFloat_AsDouble(value);
    else
      c[i].i = PyLong_AsLongLong(value);
    if (PyErr_Occurred())
      goto fail;
  }
  *out = c;
  *n = (int)len;
  return 0;
fail:
  PyMem_Free(c);
  return -1;
}

static int Program_init(ProgramObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"context", "source", "filename", "constants", NULL};
  PyObject *ctx, *constants = Py_None;
  const char *source, *filename = "<tensorc>";
  Py_ssize_t len;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!s#|sO", kwlist, &ContextType, &ctx, &source,
                                   &len, &filename, &constants))
    return -1;
  if (self->prog) {
    PyErr_SetString(PyExc_RuntimeError, "Program is already initialised");
    return -1;
  }
  if (!((ContextObject *)ctx)->ctx) {
    PyErr_SetString(PyExc_ValueError, "the Context is not initialised");
    return -1;
  }
  self->ctx = (ContextObject *)Py_NewRef(ctx);
  tc_error err;
  tc_status st;
  tc_constant *consts;
  int nconsts;
  if (read_constants(constants, &consts, &nconsts))
    return -1;
  st = tc_compile_ex(self->ctx->ctx, filename, source, (size_t)len, consts, nconsts,
                     &self->prog, &err);
  PyMem_Free(consts);
  if (st != TC_OK) {
    raise_tc(&err);
    return -1;
  }
  self->ctx->programs++;
  return load_entries(self);
}

/* The entry index in `o`, checked. */
static int get_entry(ProgramObject *self, PyObject *o) {
  long i = PyLong_AsLong(o);
  if (i == -1 && PyErr_Occurred())
    return -1;
  if (!self->prog || i < 0 || i >= self->nentries) {
    PyErr_Format(PyExc_IndexError, "no entry %ld", i);
    return -1;
  }
  return (int)i;
}

static PyObject *Program_entries(ProgramObject *self, PyObject *unused) {
  (void)unused;
  PyObject *t = PyTuple_New(self->nentries);
  for (int i = 0; t && i < self->nentries; i++) {
    PyObject *s = PyUnicode_FromString(tc_program_entry_name(self->prog, i));
    if (!s) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, i, s);
  }
  return t;
}

/* (name, dtype, rank, dims, typed); dims: a str (size symbol) or an int
 * per dimension, None for outputs declared without dims. */
static PyObject *param_tuple(const tc_param_info *p, bool input) {
  PyObject *dims = PyTuple_New(p->rank);
  for (int k = 0; dims && k < p->rank; k++) {
    PyObject *d = p->dim_names[k]   ? PyUnicode_FromString(p->dim_names[k])
                  : p->dim_values[k] >= 0 ? PyLong_FromLongLong(p->dim_values[k])
                                       : Py_NewRef(Py_None);
    if (!d) {
      Py_CLEAR(dims);
      break;
    }
    PyTuple_SET_ITEM(dims, k, d);
  }
  if (!dims)
    return NULL;
  return Py_BuildValue("(ssiNO)", p->name, tc_dtype_name(p->dtype), p->rank, dims,
                       input || p->typed ? Py_True : Py_False);
}

static PyObject *Program_signature(ProgramObject *self, PyObject *arg) {
  int i = get_entry(self, arg);
  if (i < 0)
    return NULL;
  EntryInfo *e = &self->entries[i];
  PyObject *in = PyTuple_New(e->nin), *out = PyTuple_New(e->nout);
  if (!in || !out)
    goto fail;
  for (int k = 0; k < e->nin; k++) {
    PyObject *t = param_tuple(&e->in[k], true);
    if (!t)
      goto fail;
    PyTuple_SET_ITEM(in, k, t);
  }
  for (int k = 0; k < e->nout; k++) {
    PyObject *t = param_tuple(&e->out[k], false);
    if (!t)
      goto fail;
    PyTuple_SET_ITEM(out, k, t);
  }
  return Py_BuildValue("(NN)", in, out);
fail:
  Py_XDECREF(in);
  Py_XDECREF(out);
  return NULL;
}

/* output_sizes(entry): per output, per dim, a tuple of postfix ops
 * (name, input, dim, value). */
static PyObject *dim_program(ProgramObject *self, int entry, int out, int dim) {
  tc_size_op small[32], *ops = small;
  int n;
  tc_error err;
  tc_status st = tc_output_size(self->prog, entry, out, dim, ops, 32, &n, &err);
  if (st == TC_OK && n > 32) {
    ops = PyMem_Calloc((size_t)n, sizeof *ops);
    if (!ops)
      return PyErr_NoMemory();
    st = tc_output_size(self->prog, entry, out, dim, ops, n, &n, &err);
  }
  PyObject *t = st == TC_OK ? PyTuple_New(n) : raise_tc(&err);
  for (int k = 0; t && k < n; k++) {
    PyObject *op = Py_BuildValue("(siiL)", size_op_names[ops[k].op], ops[k].input, ops[k].dim,
                                 (long long)ops[k].value);
    if (!op) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, k, op);
  }
  if (ops != small)
    PyMem_Free(ops);
  return t;
}

static PyObject *Program_output_sizes(ProgramObject *self, PyObject *arg) {
  int i = get_entry(self, arg);
  if (i < 0)
    return NULL;
  EntryInfo *e = &self->entries[i];
  PyObject *res = PyTuple_New(e->nout);
  for (int o = 0; res && o < e->nout; o++) {
    PyObject *dims = PyTuple_New(e->out[o].rank);
    for (int k = 0; dims && k < e->out[o].rank; k++) {
      PyObject *p = dim_program(self, i, o, k);
      if (!p)
        Py_CLEAR(dims);
      else
        PyTuple_SET_ITEM(dims, k, p);
    }
    if (!dims)
      Py_CLEAR(res);
    else
      PyTuple_SET_ITEM(res, o, dims);
  }
  return res;
}

/* Reads a sequence of shapes (sequences of ints) into `shapes`. */
static int read_shapes(PyObject *seq, tc_shape *shapes, int n, const char *entry) {
  PyObject *fast = PySequence_Fast(seq, "shapes must be a sequence");
  if (!fast)
    return -1;
  if (PySequence_Fast_GET_SIZE(fast) != n) {
    PyErr_Format(PyExc_TypeError, "%s takes %d inputs, got %zd shapes", entry, n,
                 PySequence_Fast_GET_SIZE(fast));
    Py_DECREF(fast);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    PyObject *s = PySequence_Fast(PySequence_Fast_GET_ITEM(fast, i), "a shape is a sequence");
    if (!s) {
      Py_DECREF(fast);
      return -1;
    }
    Py_ssize_t r = PySequence_Fast_GET_SIZE(s);
    if (r > TC_MAX_RANK) {
      PyErr_Format(PyExc_ValueError, "rank %zd exceeds %d", r, TC_MAX_RANK);
      Py_DECREF(s);
      Py_DECREF(fast);
      return -1;
    }
    shapes[i].rank = (int)r;
    for (Py_ssize_t k = 0; k < r; k++)
      shapes[i].dims[k] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(s, k));
    Py_DECREF(s);
    if (PyErr_Occurred()) {
      Py_DECREF(fast);
      return -1;
    }
  }
  Py_DECREF(fast);
  return 0;
}

static PyObject *shape_tuple(const tc_shape *s) {
  PyObject *t = PyTuple_New(s->rank);
  for (int k = 0; t && k < s->rank; k++) {
    PyObject *d = PyLong_FromLongLong(s->dims[k]);
    if (!d) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, k, d);
  }
  return t;
}

/* infer_shapes(entry, input_shapes) -> tuple of output shapes */
static PyObject *Program_infer_shapes(ProgramObject *self, PyObject *args) {
  PyObject *eo, *seq;
  if (!PyArg_ParseTuple(args, "OO", &eo, &seq))
    return NULL;
  int i = get_entry(self, eo);
  if (i < 0)
    return NULL;
  EntryInfo *e = &self->entries[i];
  tc_shape *in = PyMem_Calloc((size_t)e->nin + 1, sizeof *in);
  tc_shape *out = PyMem_Calloc((size_t)e->nout + 1, sizeof *out);
  PyObject *res = NULL;
  tc_error err;
  if (!in || !out)
    PyErr_NoMemory();
  else if (read_shapes(seq, in, e->nin, tc_program_entry_name(self->prog, i)) == 0) {
    if (tc_infer_shapes(self->prog, i, in, e->nin, out, e->nout, &err) != TC_OK)
      raise_tc(&err);
    else if ((res = PyTuple_New(e->nout)))
      for (int k = 0; k < e->nout; k++) {
        PyObject *s = shape_tuple(&out[k]);
        if (!s) {
          Py_CLEAR(res);
          break;
        }
        PyTuple_SET_ITEM(res, k, s);
      }
  }
  PyMem_Free(in);
  PyMem_Free(out);
  return res;
}

/* Makes entry `i`'s kernel ready (compiling it, or loading it from a
 * cache) with the GIL released, and counts how.  Returns 0, or -1 with
 * tensorc.Error set. */
static int prepare_entry(ProgramObject *self, int i, tc_prepare_info *out) {
  tc_prepare_info local, *info = out ? out : &local;
  tc_error err;
  tc_status st;
  Py_BEGIN_ALLOW_THREADS
  st = tc_prepare(self->prog, i, info, &err);
  Py_END_ALLOW_THREADS
  if (st != TC_OK) {
    raise_tc(&err);
    return -1;
  }
  if (!self->entries[i].prepared) {
    self->entries[i].prepared = 1;
    self->ctx->prepares++;
    if (info->source == 0)
      self->ctx->kernels_compiled++;
    else if (info->source == 2)
      self->ctx->kernels_loaded++;
    else
      self->ctx->kernels_reused++;
  }
  return 0;
}

/* prepare_entry for CUDA device `device`: the cubin (NVRTC or the disk
 * cache) and its module.  Devices past 31 are left to tc_run_ex. */
static int prepare_entry_cuda(ProgramObject *self, int i, int device) {
  EntryInfo *e = &self->entries[i];
  if (device < 0 || device >= 32 || (e->cuda_prepared >> device & 1))
    return 0;
  tc_run_options o;
  tc_run_options_init(&o);
  o.target = TC_TARGET_CUDA;
  o.device = device;
  tc_prepare_info info;
  tc_error err;
  tc_status st;
  Py_BEGIN_ALLOW_THREADS
  st = tc_prepare_ex(self->prog, i, &o, &info, &err);
  Py_END_ALLOW_THREADS
  if (st != TC_OK) {
    raise_tc(&err);
    return -1;
  }
  e->cuda_prepared |= 1u << device;
  self->ctx->prepares++;
  if (info.source == 0)
    self->ctx->kernels_compiled++;
  else if (info.source == 2)
    self->ctx->kernels_loaded++;
  else
    self->ctx->kernels_reused++;
  return 0;
}

/* prepare(entry) -> (how, seconds, path); how: "compiled", "memory", "disk" */
static PyObject *Program_prepare(ProgramObject *self, PyObject *arg) {
  int i = get_entry(self, arg);
  if (i < 0)
    return NULL;
  tc_prepare_info info;
  if (prepare_entry(self, i, &info))
    return NULL;
  static const char *const how[] = {"compiled", "memory", "disk"};
  return Py_BuildValue("(sds)", how[info.source >= 0 && info.source <= 2 ? info.source : 0],
                       info.seconds, info.path);
}

/* Text from a tc_* function that returns a malloc'ed string. */
static PyObject *text_result(tc_status st, char *text, const tc_error *err) {
  if (st != TC_OK) {
    tc_free(text);
    return raise_tc(err);
  }
  PyObject *s = PyUnicode_FromString(text ? text : "");
  tc_free(text);
  return s;
}

static PyObject *Program_emit(ProgramObject *self, PyObject *arg) {
  int i = get_entry(self, arg);
  if (i < 0)
    return NULL;
  char *text = NULL;
  tc_error err;
  tc_status st = tc_emit(self->prog, i, TC_TARGET_C, &text, &err);
  return text_result(st, text, &err);
}

/* explain(entry, shapes=None) */
static PyObject *Program_explain(ProgramObject *self, PyObject *args) {
  PyObject *eo, *seq = Py_None;
  if (!PyArg_ParseTuple(args, "O|O", &eo, &seq))
    return NULL;
  int i = get_entry(self, eo);
  if (i < 0)
    return NULL;
  EntryInfo *e = &self->entries[i];
  tc_shape *in = NULL;
  if (seq != Py_None) {
    in = PyMem_Calloc((size_t)e->nin + 1, sizeof *in);
    if (!in)
      return PyErr_NoMemory();
    if (read_shapes(seq, in, e->nin, tc_program_entry_name(self->prog, i))) {
      PyMem_Free(in);
      return NULL;
    }
  }
  char *text = NULL;
  tc_error err;
  tc_status st = tc_explain(self->prog, i, in, in ? e->nin : 0, &text, &err);
  PyMem_Free(in);
  return text_result(st, text, &err);
}

/* gradient(entry, wrt) -> the TC source of the backward definition;
 * wrt: a sequence of booleans, one per input. */
static PyObject *Program_gradient(ProgramObject *self, PyObject *args) {
  PyObject *eo, *wrt;
  if (!PyArg_ParseTuple(args, "OO", &eo, &wrt))
    return NULL;
  int i = get_entry(self, eo);
  if (i < 0)
    return NULL;
  EntryInfo *e = &self->entries[i];
  PyObject *fast = PySequence_Fast(wrt, "wrt must be a sequence of booleans");
  if (!fast)
    return NULL;
  if (PySequence_Fast_GET_SIZE(fast) != e->nin) {
    Py_DECREF(fast);
    return PyErr_Format(PyExc_ValueError, "wrt needs %d flags, got %zd", e->nin,
                        PySequence_Fast_GET_SIZE(fast));
  }
  int *flags = PyMem_Calloc((size_t)e->nin + 1, sizeof *flags);
  if (!flags) {
    Py_DECREF(fast);
    return PyErr_NoMemory();
  }
  for (int k = 0; k < e->nin; k++) {
    int b = PyObject_IsTrue(PySequence_Fast_GET_ITEM(fast, k));
    if (b < 0) {
      Py_DECREF(fast);
      PyMem_Free(flags);
      return NULL;
    }
    flags[k] = b;
  }
  Py_DECREF(fast);
  char *text = NULL;
  tc_error err;
  tc_status st = tc_gradient(self->prog, i, flags, &text, &err);
  PyMem_Free(flags);
  return text_result(st, text, &err);
}

/* ================================================================
 * binding Python objects to DLTensors
 * ================================================================ */

typedef enum { ARG_NONE, ARG_TORCH, ARG_BUFFER, ARG_SCALAR, ARG_DLPACK, ARG_DLPACK_V } ArgKind;

typedef struct Arg {
  DLTensor dl;
  int64_t shape[TC_MAX_RANK], strides[TC_MAX_RANK];
  ArgKind kind;
  Py_buffer view;      /* ARG_BUFFER */
  void *managed;       /* ARG_DLPACK(_V): the consumed managed tensor */
  PyObject *owned;     /* a tensor made for this call (a number on a CUDA device) */
  union {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f;
    double d;
  } scalar;            /* ARG_SCALAR */
} Arg;

static void arg_release(Arg *a) {
  switch (a->kind) {
  case ARG_BUFFER:
    PyBuffer_Release(&a->view);
    break;
  case ARG_DLPACK: {
    DLManagedTensor *m = a->managed;
    if (m->deleter)
      m->deleter(m);
    break;
  }
  case ARG_DLPACK_V: {
    DLManagedTensorVersioned *m = a->managed;
    if (m->deleter)
      m->deleter(m);
    break;
  }
  default:
    break;
  }
  Py_CLEAR(a->owned);
  a->kind = ARG_NONE;
}

/* What a call is about, for messages: "matmul: A". */
typedef struct Site {
  const char *entry;
  const tc_param_info *param;
  bool output;
} Site;

static PyObject *site_error(const Site *s, tc_status code, const char *fmt, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, what);
  return raise_msg(code, "%s: %s%s %s", s->entry, s->output ? "output " : "", s->param->name,
                   msg);
}

static int64_t as_i64(PyObject *o, bool *ok) {
  long long v = o ? PyLong_AsLongLong(o) : -1;
  if (v == -1 && (!o || PyErr_Occurred()))
    *ok = false;
  return v;
}

/* Reads a tuple of ints (a torch.Size or a stride tuple) into dst. */
static int read_int_tuple(PyObject *t, int64_t *dst, int rank) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != rank) {
    PyErr_SetString(PyExc_TypeError, "unexpected shape or stride");
    return -1;
  }
  bool ok = true;
  for (int k = 0; k < rank; k++)
    dst[k] = as_i64(PyTuple_GET_ITEM(t, k), &ok);
  return ok ? 0 : -1;
}

/* The tensorc dtype of a framework dtype object, or -1. */
static int find_dtype(PyObject *const *table, PyObject *dt) {
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if (table[t] == dt)
      return t;
  return -1;
}

static PyObject *s_requires_grad, *s_is_cpu, *s_is_cuda, *s_get_device, *s_dtype, *s_shape,
    *s_stride, *s_data_ptr, *s_device, *s_dlpack, *s_dlpack_device;

/* The CUDA device index of a torch tensor that is not on the CPU: 0 and
 * *idx set, 1 on another device (meta...), -1 error. */
static int torch_cuda_index(PyObject *o, int *idx) {
  PyObject *cuda = PyObject_GetAttr(o, s_is_cuda);
  if (!cuda)
    return -1;
  Py_DECREF(cuda);
  if (cuda != Py_True)
    return 1;
  PyObject *args[2] = {NULL, o};
  PyObject *i = PyObject_VectorcallMethod(s_get_device, args + 1,
                                          1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
  if (!i)
    return -1;
  long v = PyLong_AsLong(i);
  Py_DECREF(i);
  if (v == -1 && PyErr_Occurred())
    return -1;
  *idx = (int)v;
  return 0;
}

/* A torch.Tensor: returns 0 bound, 1 "needs the dispatcher", -1 error. */
static int bind_torch(ContextObject *ctx, const Site *site, PyObject *o, Arg *a,
                      bool check_grad) {
  if (check_grad) {
    PyObject *rg = PyObject_GetAttr(o, s_requires_grad);
    if (!rg)
      return -1;
    Py_DECREF(rg);
    if (rg == Py_True) {
      PyObject *on = PyObject_CallNoArgs(ctx->torch_grad_enabled);
      if (!on)
        return -1;
      Py_DECREF(on);
      if (on == Py_True)
        return 1;
    }
  }
  PyObject *cpu = PyObject_GetAttr(o, s_is_cpu);
  if (!cpu)
    return -1;
  Py_DECREF(cpu);
  DLDevice device = {kDLCPU, 0};
  if (cpu != Py_True) {
    int idx = 0, rc = torch_cuda_index(o, &idx);
    if (rc < 0)
      return -1;
    if (rc == 0) {
      device = (DLDevice){kDLCUDA, idx};
    } else if (check_grad) {
      return 1; /* meta tensors take the fake kernel */
    } else {
      PyObject *dev = PyObject_GetAttr(o, s_device);
      PyObject *ds = dev ? PyObject_Str(dev) : NULL;
      Py_XDECREF(dev);
      const char *d = ds ? PyUnicode_AsUTF8(ds) : NULL;
      if (d)
        site_error(site, TC_ERR_UNSUPPORTED,
                   "is on device %s: only CPU tensors and CUDA tensors are supported", d);
      Py_XDECREF(ds);
      return -1;
    }
  }
  PyObject *dt = PyObject_GetAttr(o, s_dtype);
  if (!dt)
    return -1;
  int t = find_dtype(ctx->torch_dtypes, dt);
  if (t < 0) {
    PyObject *ds = PyObject_Str(dt);
    const char *text = ds ? PyUnicode_AsUTF8(ds) : NULL;
    if (text) {
      char what[256];
      snprintf(what, sizeof what, "%s", strncmp(text, "torch.", 6) ? text : text + 6);
      site_error(site, TC_ERR_ARGUMENT, "has dtype %s, which tensorc does not support", what);
    }
    Py_XDECREF(ds);
    Py_DECREF(dt);
    return -1;
  }
  Py_DECREF(dt);
  PyObject *shape = PyObject_GetAttr(o, s_shape);
  if (!shape)
    return -1;
  Py_ssize_t rank = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : -1;
  if (rank < 0 || rank > TC_MAX_RANK) {
    Py_DECREF(shape);
    if (rank > TC_MAX_RANK)
      raise_msg(TC_ERR_ARGUMENT, "%s: %s has rank %zd, more than tensorc's %d", site->entry,
                site->param->name, rank, TC_MAX_RANK);
    else
      PyErr_SetString(PyExc_TypeError, "torch.Tensor.shape is not a tuple");
    return -1;
  }
  int rc = read_int_tuple(shape, a->shape, (int)rank);
  Py_DECREF(shape);
  if (rc)
    return -1;
  PyObject *args[2] = {NULL, o}; /* args[0]: scratch for the callee (ARGUMENTS_OFFSET) */
  PyObject *strides = PyObject_VectorcallMethod(s_stride, args + 1,
                                                1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
  if (!strides)
    return -1;
  rc = read_int_tuple(strides, a->strides, (int)rank);
  Py_DECREF(strides);
  if (rc)
    return -1;
  PyObject *ptr = PyObject_VectorcallMethod(s_data_ptr, args + 1,
                                            1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
  if (!ptr)
    return -1;
  void *data = PyLong_AsVoidPtr(ptr);
  Py_DECREF(ptr);
  if (!data && PyErr_Occurred())
    return -1;
  a->kind = ARG_TORCH;
  a->dl.data = data;
  a->dl.device = device;
  a->dl.ndim = (int32_t)rank;
  a->dl.dtype = tc_dtype_to_dl((tc_dtype)t);
  a->dl.shape = a->shape;
  a->dl.strides = a->strides;
  a->dl.byte_offset = 0;
  return 0;
}

/* The tensorc dtype of a buffer-protocol format, or -1. */
static int format_dtype(const char *fmt, Py_ssize_t itemsize) {
  if (!fmt)
    return TC_UINT8;
  if (*fmt == '@' || *fmt == '=' || *fmt == '<')
    fmt++;
  else if (*fmt == '>' || *fmt == '!')
    return -1; /* big-endian */
  if (!fmt[0] || fmt[1])
    return -1;
  static const tc_dtype sints[] = {TC_INT8, TC_INT16, 0, TC_INT32, 0, 0, 0, TC_INT64};
  static const tc_dtype uints[] = {TC_UINT8, TC_UINT16, 0, TC_UINT32, 0, 0, 0, TC_UINT64};
  if (itemsize < 1 || itemsize > 8)
    return -1;
  switch (*fmt) {
  case '?':
    return itemsize == 1 ? TC_BOOL : -1;
  case 'b': case 'h': case 'i': case 'l': case 'q': case 'n':
    return itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8
               ? (int)sints[itemsize - 1] : -1;
  case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N':
    return itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8
               ? (int)uints[itemsize - 1] : -1;
  case 'e':
    return itemsize == 2 ? TC_FLOAT16 : -1;
  case 'f':
    return itemsize == 4 ? TC_FLOAT32 : -1;
  case 'd':
    return itemsize == 8 ? TC_FLOAT64 : -1;
  default:
    return -1;
  }
}

/* A buffer-protocol object (numpy arrays and scalars). */
static int bind_buffer(const Site *site, PyObject *o, Arg *a) {
  int flags = site->output ? PyBUF_RECORDS : PyBUF_RECORDS_RO;
  if (PyObject_GetBuffer(o, &a->view, flags)) {
    if (site->output && (PyErr_ExceptionMatches(PyExc_BufferError) ||
                         PyErr_ExceptionMatches(PyExc_ValueError))) { /* numpy: read-only */
      PyErr_Clear();
      site_error(site, TC_ERR_ARGUMENT, "%s", "is not writable");
    }
    return -1;
  }
  a->kind = ARG_BUFFER;
  Py_buffer *v = &a->view;
  int t = format_dtype(v->format, v->itemsize);
  if (t < 0) {
    site_error(site, TC_ERR_ARGUMENT, "has element format '%s', which tensorc does not support",
               v->format ? v->format : "?");
    return -1;
  }
  if (v->ndim > TC_MAX_RANK) {
    raise_msg(TC_ERR_ARGUMENT, "%s: %s has rank %d, more than tensorc's %d", site->entry,
              site->param->name, v->ndim, TC_MAX_RANK);
    return -1;
  }
  for (int k = 0; k < v->ndim; k++) {
    a->shape[k] = v->shape[k];
    Py_ssize_t s = v->strides ? v->strides[k] : 0;
    if (s % v->itemsize) {
      site_error(site, TC_ERR_ARGUMENT, "%s", "has strides that are not a multiple of its "
                 "element size");
      return -1;
    }
    a->strides[k] = s / v->itemsize;
  }
  if (!v->strides) { /* C-contiguous */
    int64_t st = 1;
    for (int k = v->ndim - 1; k >= 0; k--) {
      a->strides[k] = st;
      st *= a->shape[k] ? a->shape[k] : 1;
    }
  }
  a->dl.data = v->buf;
  a->dl.device = (DLDevice){kDLCPU, 0};
  a->dl.ndim = v->ndim;
  a->dl.dtype = tc_dtype_to_dl((tc_dtype)t);
  a->dl.shape = a->shape;
  a->dl.strides = a->strides;
  a->dl.byte_offset = 0;
  return 0;
}

/* An object with __dlpack__: the capsule is consumed. */
static int bind_dlpack(const Site *site, PyObject *o, Arg *a) {
  PyObject *dev = PyObject_CallMethodNoArgs(o, s_dlpack_device);
  if (!dev)
    return -1;
  long type = PyTuple_Check(dev) && PyTuple_GET_SIZE(dev) == 2
                  ? PyLong_AsLong(PyTuple_GET_ITEM(dev, 0)) : -1;
  Py_DECREF(dev);
  if (type == -1 && PyErr_Occurred())
    return -1;
  if (type == kDLCUDA || type == kDLCUDAManaged) {
    site_error(site, TC_ERR_UNSUPPORTED, "%s",
               "is a CUDA array from DLPack: pass CUDA data as torch tensors "
               "(torch.from_dlpack)");
    return -1;
  }
  if (type != kDLCPU && type != kDLCUDAHost) {
    char what[32];
    snprintf(what, sizeof what, "%ld", type);
    site_error(site, TC_ERR_UNSUPPORTED, "is on DLPack device type %s: only CPU arrays are "
               "supported", what);
    return -1;
  }
  PyObject *cap = PyObject_CallMethodNoArgs(o, s_dlpack);
  if (!cap)
    return -1;
  DLTensor *t = NULL;
  if (PyCapsule_IsValid(cap, "dltensor")) {
    DLManagedTensor *m = PyCapsule_GetPointer(cap, "dltensor");
    if (m && PyCapsule_SetName(cap, "used_dltensor") == 0) {
      a->kind = ARG_DLPACK;
      a->managed = m;
      t = &m->dl_tensor;
    }
  } else if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    DLManagedTensorVersioned *m = PyCapsule_GetPointer(cap, "dltensor_versioned");
    if (m && PyCapsule_SetName(cap, "used_dltensor_versioned") == 0) {
      a->kind = ARG_DLPACK_V;
      a->managed = m;
      t = &m->dl_tensor;
      if (m->version.major != 1) {
        arg_release(a);
        t = NULL;
        site_error(site, TC_ERR_UNSUPPORTED, "%s", "is a DLPack tensor of an unknown major "
                   "version");
      } else if (site->output && (m->flags & DLPACK_FLAG_READ_ONLY)) {
        arg_release(a);
        t = NULL;
        site_error(site, TC_ERR_ARGUMENT, "%s", "is read-only");
      }
    }
  } else {
    site_error(site, TC_ERR_ARGUMENT, "%s", "gave a __dlpack__ result that is no DLPack "
               "capsule");
  }
  Py_DECREF(cap);
  if (!t) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_RuntimeError, "could not consume the DLPack capsule");
    return -1;
  }
  if (t->ndim < 0 || t->ndim > TC_MAX_RANK) {
    raise_msg(TC_ERR_ARGUMENT, "%s: %s has rank %d, more than tensorc's %d", site->entry,
              site->param->name, (int)t->ndim, TC_MAX_RANK);
    return -1;
  }
  a->dl = *t;
  for (int k = 0; k < t->ndim; k++)
    a->shape[k] = t->shape[k];
  a->dl.shape = a->shape;
  return 0;
}

/* float -> IEEE half, round to nearest even. */
static uint16_t f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, man = x & 0x7fffff;
  if (exp == 0xff)
    return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
  int e = (int)exp - 127 + 15;
  if (e >= 0x1f)
    return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10)
      return (uint16_t)sign;
    man |= 0x800000;
    int shift = 14 - e;
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (h & 1)))
      h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
    h++;
  return (uint16_t)h;
}

/* float -> bfloat16, round to nearest even. */
static uint16_t f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffff) > 0x7f800000)
    return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

/* A Python bool/int/float for a rank-0 parameter, converted to its type. */
static int bind_number(const Site *site, PyObject *o, Arg *a) {
  tc_dtype t = site->param->dtype;
  DLDataType dl = tc_dtype_to_dl(t);
  memset(&a->scalar, 0, sizeof a->scalar);
  if (t == TC_BOOL) {
    if (PyFloat_Check(o)) {
      site_error(site, TC_ERR_ARGUMENT, "%s", "is bool; got a float");
      return -1;
    }
    int b = PyObject_IsTrue(o);
    if (b < 0)
      return -1;
    a->scalar.u8 = (uint8_t)b;
  } else if (dl.code == kDLInt || dl.code == kDLUInt) {
    if (PyFloat_Check(o)) {
      site_error(site, TC_ERR_ARGUMENT, "is %s; got a float", tc_dtype_name(t));
      return -1;
    }
    int bits = dl.bits, overflow = 0;
    unsigned long long uv;
    bool fits;
    if (t == TC_UINT64) {
      uv = PyLong_AsUnsignedLongLong(o);
      fits = !(uv == (unsigned long long)-1 && PyErr_Occurred());
      if (!fits && !PyErr_ExceptionMatches(PyExc_OverflowError))
        return -1;
      PyErr_Clear();
    } else {
      long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
      if (v == -1 && PyErr_Occurred())
        return -1;
      uv = (unsigned long long)v;
      fits = !overflow;
      if (fits && dl.code == kDLInt && bits < 64)
        fits = v >= -(1LL << (bits - 1)) && v < (1LL << (bits - 1));
      if (fits && dl.code == kDLUInt)
        fits = v >= 0 && v < (1LL << bits);
    }
    if (!fits) {
      PyObject *r = PyObject_Repr(o);
      if (r)
        raise_msg(TC_ERR_ARGUMENT, "%s: %s = %s does not fit %s", site->entry,
                  site->param->name, PyUnicode_AsUTF8(r), tc_dtype_name(t));
      Py_XDECREF(r);
      return -1;
    }
    switch (bits) {
    case 8: a->scalar.u8 = (uint8_t)uv; break;
    case 16: a->scalar.u16 = (uint16_t)uv; break;
    case 32: a->scalar.u32 = (uint32_t)uv; break;
    default: a->scalar.u64 = uv; break;
    }
  } else {
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred())
      return -1;
    switch (t) {
    case TC_FLOAT16: a->scalar.u16 = f32_to_f16((float)d); break;
    case TC_BFLOAT16: a->scalar.u16 = f32_to_bf16((float)d); break;
    case TC_FLOAT32: a->scalar.f = (float)d; break;
    default: a->scalar.d = d; break;
    }
  }
  a->kind = ARG_SCALAR;
  a->dl.data = &a->scalar;
  a->dl.device = (DLDevice){kDLCPU, 0};
  a->dl.ndim = 0;
  a->dl.dtype = dl;
  a->dl.shape = a->shape;
  a->dl.strides = NULL;
  a->dl.byte_offset = 0;
  return 0;
}

/* Binds one argument. Returns 0, 1 (needs the dispatcher) or -1. */
static int bind_arg(ContextObject *ctx, const Site *site, PyObject *o, Arg *a,
                    bool check_grad) {
  a->kind = ARG_NONE;
  PyTypeObject *tt = ctx->torch_tensor;
  if (tt && Py_IS_TYPE(o, tt))
    return bind_torch(ctx, site, o, a, check_grad);
  if (tt && PyObject_TypeCheck(o, tt))
    return check_grad ? 1 : bind_torch(ctx, site, o, a, false);
  if (!site->output && (PyLong_Check(o) || PyFloat_Check(o))) {
    if (site->param->rank != 0) {
      char what[64];
      snprintf(what, sizeof what, "must be a tensor of rank %d, got a %s", site->param->rank,
               Py_TYPE(o)->tp_name);
      site_error(site, TC_ERR_ARGUMENT, "%s", what);
      return -1;
    }
    return bind_number(site, o, a);
  }
  if (PyObject_CheckBuffer(o))
    return bind_buffer(site, o, a);
  if (PyObject_HasAttr(o, s_dlpack))
    return bind_dlpack(site, o, a);
  PyErr_Format(PyExc_TypeError, "%s: %s%s must be a tensor or an array%s, got %s", site->entry,
               site->output ? "output " : "", site->param->name,
               site->param->rank == 0 && !site->output ? " or a number" : "", Py_TYPE(o)->tp_name);
  return -1;
}

/* ================================================================
 * running
 * ================================================================ */

#define SMALL_ARGS 12

/* A new compact output of `shape`: torch.empty or numpy.empty. */
static PyObject *new_output(ContextObject *ctx, bool torch, PyObject *device, DLDevice dl_dev,
                            const Site *site, const tc_shape *shape, Arg *a) {
  tc_dtype t = site->param->dtype;
  PyObject *dims = shape_tuple(shape);
  if (!dims)
    return NULL;
  PyObject *res = NULL;
  if (torch && !ctx->torch_dtypes[t]) {
    raise_msg(TC_ERR_UNSUPPORTED, "%s: output %s is %s, which this torch lacks", site->entry,
              site->param->name, tc_dtype_name(t));
  } else if (torch) {
    PyObject *args[4] = {NULL, dims, ctx->torch_dtypes[t], device ? device : ctx->torch_cpu};
    res = PyObject_Vectorcall(ctx->torch_empty, args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                              ctx->empty_kwnames);
  } else if (!ctx->np_dtypes[t]) {
    raise_msg(TC_ERR_UNSUPPORTED, "%s: output %s is %s, which numpy cannot hold: pass torch "
              "tensors", site->entry, site->param->name, tc_dtype_name(t));
  } else {
    PyObject *args[3] = {NULL, dims, ctx->np_dtypes[t]};
    res = PyObject_Vectorcall(ctx->np_empty, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
  }
  Py_DECREF(dims);
  if (!res)
    return NULL;
  if (torch) {
    PyObject *args[2] = {NULL, res};
    PyObject *ptr = PyObject_VectorcallMethod(s_data_ptr, args + 1,
                                              1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!ptr) {
      Py_DECREF(res);
      return NULL;
    }
    a->dl.data = PyLong_AsVoidPtr(ptr);
    Py_DECREF(ptr);
    a->kind = ARG_TORCH;
  } else if (bind_buffer(site, res, a)) {
    Py_DECREF(res);
    return NULL;
  }
  int64_t st = 1;
  for (int k = shape->rank - 1; k >= 0; k--) {
    a->shape[k] = shape->dims[k];
    a->strides[k] = st;
    st *= shape->dims[k] ? shape->dims[k] : 1;
  }
  a->dl.device = torch ? dl_dev : (DLDevice){kDLCPU, 0};
  a->dl.ndim = shape->rank;
  a->dl.dtype = tc_dtype_to_dl(t);
  a->dl.shape = a->shape;
  a->dl.strides = a->strides;
  a->dl.byte_offset = 0;
  return res;
}

/* The objects given with out=: one, or a tuple/list of nout. */
static PyObject *out_items(PyObject *out, int nout, const char *entry) {
  if (PyTuple_Check(out) || PyList_Check(out)) {
    PyObject *fast = PySequence_Fast(out, "out");
    if (fast && PySequence_Fast_GET_SIZE(fast) != nout) {
      PyErr_Format(PyExc_TypeError, "%s has %d output%s, got %zd in out=", entry, nout,
                   nout == 1 ? "" : "s", PySequence_Fast_GET_SIZE(fast));
      Py_CLEAR(fast);
    }
    return fast;
  }
  if (nout != 1)
    return PyErr_Format(PyExc_TypeError, "%s has %d outputs: out= takes a tuple of them",
                        entry, nout);
  return PyTuple_Pack(1, out);
}

/* "matmul takes 2 inputs (A, B), got 3" */
static PyObject *arity_error(const char *name, const EntryInfo *e, Py_ssize_t got) {
  char names[512];
  size_t len = 0;
  names[0] = '\0';
  for (int i = 0; i < e->nin && len < sizeof names; i++)
    len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                            e->in[i].name);
  return PyErr_Format(PyExc_TypeError, "%s takes %d input%s (%s), got %zd", name, e->nin,
                      e->nin == 1 ? "" : "s", names, got);
}

/* run(entry, args, out, check_grad): the call path.  Returns the output
 * (one) or a tuple of them, `out` itself when given, or NotImplemented
 * when check_grad is true and the call needs PyTorch's dispatcher. */
static PyObject *call_entry(ProgramObject *self, int ei, PyObject *args, PyObject *out,
                            bool check_grad, int repeat);

static PyObject *Program_run(ProgramObject *self, PyObject *const *argv, Py_ssize_t argc) {
  if (argc != 4) {
    PyErr_SetString(PyExc_TypeError, "run(entry, args, out, check_grad)");
    return NULL;
  }
  int ei = get_entry(self, argv[0]);
  if (ei < 0)
    return NULL;
  if (!PyTuple_Check(argv[1])) {
    PyErr_SetString(PyExc_TypeError, "run: args must be a tuple");
    return NULL;
  }
  return call_entry(self, ei, argv[1], argv[2], argv[3] == Py_True, 0);
}

/* time_kernel(entry, args, out, n) -> a list of n durations (seconds) of
 * tc_run alone on the bound tensors: the kernel's time, for measuring the
 * call overhead above it. */
static PyObject *Program_time_kernel(ProgramObject *self, PyObject *args) {
  PyObject *eo, *ins, *out;
  int n;
  if (!PyArg_ParseTuple(args, "OO!Oi", &eo, &PyTuple_Type, &ins, &out, &n))
    return NULL;
  int ei = get_entry(self, eo);
  if (ei < 0)
    return NULL;
  if (out == Py_None || n < 1) {
    PyErr_SetString(PyExc_ValueError, "time_kernel needs out= and n >= 1");
    return NULL;
  }
  return call_entry(self, ei, ins, out, false, n);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The CUDA device of a run: that of its first CUDA tensor among a[0..n),
 * or -1 (a CPU run). */
static int run_device(const Arg *a, int n) {
  for (int i = 0; i < n; i++)
    if (a[i].kind != ARG_NONE && a[i].dl.device.device_type == kDLCUDA)
      return a[i].dl.device.device_id;
  return -1;
}

/* A number given for a rank-0 input of a CUDA run becomes a 0-d tensor on
 * the run's device (torch.full, queued on the current stream): the kernels
 * read every parameter from device memory. */
static int number_to_device(ContextObject *ctx, const Site *site, PyObject *num,
                            PyObject *device, Arg *a) {
  tc_dtype t = site->param->dtype;
  if (!ctx->torch_full || !ctx->torch_dtypes[t]) {
    site_error(site, TC_ERR_UNSUPPORTED, "is a number and the tensors are on a CUDA device, "
               "but this torch cannot make a %s tensor there", tc_dtype_name(t));
    return -1;
  }
  PyObject *shape = PyTuple_New(0);
  if (!shape)
    return -1;
  PyObject *argv[5] = {NULL, shape, num, ctx->torch_dtypes[t], device};
  PyObject *tensor = PyObject_Vectorcall(ctx->torch_full, argv + 1,
                                         2 | PY_VECTORCALL_ARGUMENTS_OFFSET, ctx->empty_kwnames);
  Py_DECREF(shape);
  if (!tensor)
    return -1;
  arg_release(a);
  if (bind_torch(ctx, site, tensor, a, false)) {
    Py_DECREF(tensor);
    return -1;
  }
  a->owned = tensor;
  return 0;
}

/* The current CUDA stream of `device` in PyTorch (NULL: none bound, the
 * legacy default stream).  Returns 0, or -1 with an exception set. */
static int current_stream(ContextObject *ctx, int device, void **stream) {
  *stream = NULL;
  if (!ctx->torch_stream)
    return 0;
  PyObject *i = PyLong_FromLong(device);
  PyObject *r = i ? PyObject_CallOneArg(ctx->torch_stream, i) : NULL;
  Py_XDECREF(i);
  if (!r)
    return -1;
  unsigned long long v = PyLong_AsUnsignedLongLong(r);
  Py_DECREF(r);
  if (v == (unsigned long long)-1 && PyErr_Occurred())
    return -1;
  *stream = (void *)(uintptr_t)v;
  return 0;
}

/* The call path: binds, allocates (out is None), runs.  With repeat > 0,
 * runs the kernel `repeat` times and returns their durations instead.
 * CUDA tensors run on their device, on PyTorch's current stream there;
 * outputs are allocated on that device. */
static PyObject *call_entry(ProgramObject *self, int ei, PyObject *args, PyObject *out,
                            bool check_grad, int repeat) {
  EntryInfo *e = &self->entries[ei];
  ContextObject *ctx = self->ctx;
  const char *name = tc_program_entry_name(self->prog, ei);
  Py_ssize_t nargs = PyTuple_GET_SIZE(args);
  if (nargs != e->nin)
    return arity_error(name, e, nargs);

  int n = e->nin + e->nout;
  Arg small[SMALL_ARGS], *a = small;
  DLTensor *ptrs_small[SMALL_ARGS], **ptrs = ptrs_small;
  tc_shape shapes_small[SMALL_ARGS], *shapes = shapes_small;
  if (n > SMALL_ARGS) {
    a = PyMem_Calloc((size_t)n, sizeof *a);
    ptrs = PyMem_Calloc((size_t)n, sizeof *ptrs);
    shapes = PyMem_Calloc((size_t)n, sizeof *shapes);
    if (!a || !ptrs || !shapes) {
      PyMem_Free(a);
      PyMem_Free(ptrs);
      PyMem_Free(shapes);
      return PyErr_NoMemory();
    }
  }
  for (int i = 0; i < n; i++) {
    a[i].kind = ARG_NONE;
    a[i].owned = NULL;
  }
  PyObject *result = NULL, *outs = NULL, *items = NULL, *device = NULL;
  bool any_torch = false;
  int rc = 0, dev = -1;
  tc_run_options opts;
  tc_run_options_init(&opts);
  for (int i = 0; i < e->nin && rc == 0; i++) {
    Site site = {name, &e->in[i], false};
    rc = bind_arg(ctx, &site, PyTuple_GET_ITEM(args, i), &a[i], check_grad);
    any_torch |= a[i].kind == ARG_TORCH;
    ptrs[i] = &a[i].dl;
  }
  if (rc)
    goto done;
  dev = run_device(a, e->nin);
  if (dev >= 0) { /* a CUDA run: the device object of its first CUDA input */
    for (int i = 0; i < e->nin && !device; i++)
      if (a[i].kind == ARG_TORCH && a[i].dl.device.device_type == kDLCUDA)
        device = PyObject_GetAttr(PyTuple_GET_ITEM(args, i), s_device);
    rc = device ? 0 : -1;
    for (int i = 0; i < e->nin && rc == 0; i++)
      if (a[i].kind == ARG_SCALAR) {
        Site site = {name, &e->in[i], false};
        rc = number_to_device(ctx, &site, PyTuple_GET_ITEM(args, i), device, &a[i]);
      }
    if (rc == 0)
      rc = current_stream(ctx, dev, &opts.stream);
    if (rc == 0)
      rc = prepare_entry_cuda(self, ei, dev);
  } else if (!e->prepared) {
    rc = prepare_entry(self, ei, NULL);
  }
  if (rc)
    goto done;
  if (out != Py_None) {
    items = out_items(out, e->nout, name);
    if (!items) {
      rc = -1;
      goto done;
    }
    for (int j = 0; j < e->nout && rc == 0; j++) {
      Site site = {name, &e->out[j], true};
      rc = bind_arg(ctx, &site, PySequence_Fast_GET_ITEM(items, j), &a[e->nin + j], check_grad);
      ptrs[e->nin + j] = &a[e->nin + j].dl;
    }
    if (rc)
      goto done;
  } else {
    tc_error err;
    for (int i = 0; i < e->nin; i++) {
      shapes[i].rank = a[i].dl.ndim;
      memcpy(shapes[i].dims, a[i].shape, sizeof a[i].shape);
    }
    if (tc_infer_shapes(self->prog, ei, shapes, e->nin, shapes + e->nin, e->nout, &err)) {
      raise_tc(&err);
      rc = -1;
      goto done;
    }
    bool torch = any_torch || !ctx->np_empty;
    if (torch && !ctx->torch_empty) {
      raise_msg(TC_ERR_UNSUPPORTED, "%s: neither torch nor numpy is available to hold outputs",
                name);
      rc = -1;
      goto done;
    }
    outs = PyTuple_New(e->nout);
    int made = 0;
    for (int j = 0; outs && j < e->nout; j++, made++) {
      Site site = {name, &e->out[j], true};
      PyObject *o = new_output(ctx, torch, device,
                               (DLDevice){dev >= 0 ? kDLCUDA : kDLCPU, dev >= 0 ? dev : 0},
                               &site, &shapes[e->nin + j], &a[e->nin + j]);
      if (!o)
        break;
      PyTuple_SET_ITEM(outs, j, o);
      ptrs[e->nin + j] = &a[e->nin + j].dl;
    }
    if (!outs || made < e->nout) {
      rc = -1;
      goto done;
    }
  }
  {
    tc_error err;
    tc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tc_run_ex(self->prog, ei, ptrs, e->nin, ptrs + e->nin, e->nout, &opts, &err);
    Py_END_ALLOW_THREADS
    if (st != TC_OK) {
      raise_tc(&err);
      rc = -1;
      goto done;
    }
  }
  if (repeat > 0) {
    result = PyList_New(repeat);
    for (int r = 0; result && r < repeat; r++) {
      tc_error err;
      tc_status st;
      double t0, t1;
      Py_BEGIN_ALLOW_THREADS
      t0 = now_seconds();
      st = tc_run_ex(self->prog, ei, ptrs, e->nin, ptrs + e->nin, e->nout, &opts, &err);
      t1 = now_seconds();
      Py_END_ALLOW_THREADS
      PyObject *d = st == TC_OK ? PyFloat_FromDouble(t1 - t0) : raise_tc(&err);
      if (!d) {
        Py_CLEAR(result);
        rc = -1;
        break;
      }
      PyList_SET_ITEM(result, r, d);
    }
  } else if (out != Py_None)
    result = Py_NewRef(out);
  else if (e->nout == 1)
    result = Py_NewRef(PyTuple_GET_ITEM(outs, 0));
  else
    result = Py_NewRef(outs);
done:
  for (int i = 0; i < n; i++)
    arg_release(&a[i]);
  Py_XDECREF(outs);
  Py_XDECREF(items);
  Py_XDECREF(device);
  if (a != small) {
    PyMem_Free(a);
    PyMem_Free(ptrs);
    PyMem_Free(shapes);
  }
  if (rc == 1)
    Py_RETURN_NOTIMPLEMENTED;
  return result;
}

static PyObject *Program_get_context(ProgramObject *self, void *unused) {
  (void)unused;
  return Py_NewRef((PyObject *)self->ctx);
}

static PyMethodDef Program_methods[] = {
    {"entries", (PyCFunction)Program_entries, METH_NOARGS, "the entry (def) names, in order"},
    {"signature", (PyCFunction)Program_signature, METH_O,
     "signature(entry) -> (inputs, outputs), each (name, dtype, rank, dims, typed)"},
    {"output_sizes", (PyCFunction)Program_output_sizes, METH_O,
     "output_sizes(entry): per output, per dim, the extent as postfix ops "
     "(op, input, dim, value) over the input dims"},
    {"infer_shapes", (PyCFunction)Program_infer_shapes, METH_VARARGS,
     "infer_shapes(entry, input_shapes) -> output shapes"},
    {"prepare", (PyCFunction)Program_prepare, METH_O,
     "prepare(entry) -> (how, seconds, path): compile or load the kernel"},
    {"run", (PyCFunction)(void (*)(void))Program_run, METH_FASTCALL,
     "run(entry, args, out, check_grad): run the kernel on tensors/arrays/numbers"},
    {"time_kernel", (PyCFunction)Program_time_kernel, METH_VARARGS,
     "time_kernel(entry, args, out, n) -> n durations of the kernel alone (tc_run)"},
    {"emit", (PyCFunction)Program_emit, METH_O, "emit(entry) -> the generated C source"},
    {"explain", (PyCFunction)Program_explain, METH_VARARGS,
     "explain(entry, shapes=None) -> ranges, shapes and the loop nest"},
    {"gradient", (PyCFunction)Program_gradient, METH_VARARGS,
     "gradient(entry, wrt) -> TC source of the derived backward definition"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Program_getset[] = {
    {"context", (getter)Program_get_context, NULL, "the Context", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorc._C.Program",
    .tp_basicsize = sizeof(ProgramObject),
    .tp_dealloc = (destructor)Program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Program(context, source, filename='<tensorc>', constants=None): a checked TC "
              "source",
    .tp_methods = Program_methods,
    .tp_getset = Program_getset,
    .tp_init = (initproc)Program_init,
    .tp_new = PyType_GenericNew,
};

/* ================================================================
 * the module
 * ================================================================ */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tensorc._C", "tensorc's C extension: see tensorc/__init__.py", -1,
    NULL, NULL, NULL, NULL, NULL,
};

static int intern(PyObject **slot, const char *s) {
  *slot = PyUnicode_InternFromString(s);
  return *slot ? 0 : -1;
}

PyMODINIT_FUNC PyInit__C(void); /* the one exported symbol */
PyMODINIT_FUNC PyInit__C(void) {
  if (intern(&s_requires_grad, "requires_grad") || intern(&s_is_cpu, "is_cpu") ||
      intern(&s_is_cuda, "is_cuda") || intern(&s_get_device, "get_device") ||
      intern(&s_dtype, "dtype") || intern(&s_shape, "shape") || intern(&s_stride, "stride") ||
      intern(&s_data_ptr, "data_ptr") || intern(&s_device, "device") ||
      intern(&s_dlpack, "__dlpack__") || intern(&s_dlpack_device, "__dlpack_device__"))
    return NULL;
  if (PyType_Ready(&ContextType) < 0 || PyType_Ready(&ProgramType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&module);
  if (!m)
    return NULL;
  if (!ErrorType) {
    ErrorType = PyErr_NewExceptionWithDoc(
        "tensorc.Error",
        "An error from tensorc: a located program error (line, col, source_line), a bad "
        "argument, a run-time failure, a C compiler failure...  str() is the full diagnostic.",
        PyExc_ValueError, NULL);
    if (!ErrorType)
      goto fail;
  }
  PyObject *dtypes = PyTuple_New(TC_NUM_DTYPES);
  for (int t = 0; dtypes && t < TC_NUM_DTYPES; t++)
    PyTuple_SET_ITEM(dtypes, t, PyUnicode_FromString(tc_dtype_name((tc_dtype)t)));
  int bad = PyModule_AddObjectRef(m, "Error", ErrorType) ||
      PyModule_AddObjectRef(m, "Context", (PyObject *)&ContextType) ||
      PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) ||
      !dtypes || PyModule_AddObjectRef(m, "DTYPES", dtypes) ||
      PyModule_AddStringConstant(m, "VERSION", TC_VERSION) ||
      PyModule_AddIntConstant(m, "MAX_RANK", TC_MAX_RANK);
  Py_XDECREF(dtypes);
  if (bad)
    goto fail;
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}

"""The Python API: define() -> Definition, one Op per def, specialisations.

An Op call takes one of two paths:

  direct   Program.run in C: binds tensors/arrays/numbers without copies,
           infers and allocates the outputs, runs the kernel with the GIL
           released.  Taken when no keyword constant is given and the call
           needs nothing from PyTorch's dispatcher.
  torch    the registered operator torch.ops.tensorc.<name> (see _torch.py):
           when an input requires grad, under torch.compile, for tensor
           subclasses (fake tensors...), or when the C path declines.

A _Spec is one compiled program entry: the def as written (no constants),
or the def specialised by keyword constants, cached per value in
Op._specs: (("stride", 2),) -> _Spec.  Each _Spec is registered as its own
torch operator.
"""
import numbers
import operator
import re
import threading

from . import _C

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a dependency
    np = None

try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    _compiling = torch.compiler.is_compiling
    _assume_constant = torch.compiler.assume_constant_result
else:
    def _compiling():
        return False

    def _assume_constant(fn):
        return fn

FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64,
             "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}

_lock = threading.RLock()
_default = None
_counters = {"specializations": 0, "gradients": 0}


# ---- contexts ----

def _bind(ctx):
    """Hands the framework objects the C call path uses to a new Context."""
    if np is not None:
        ctx.bind_numpy(np.empty, tuple(None if n == "bfloat16" else np.dtype(n)
                                       for n in _C.DTYPES))
    if torch is not None:
        ctx.bind_torch(torch.Tensor, torch.empty, torch.device("cpu"), torch.is_grad_enabled,
                       tuple(getattr(torch, n, None) for n in _C.DTYPES), torch.full,
                       _current_stream)
    return ctx


def _current_stream(device):
    """PyTorch's current CUDA stream on `device` (an index), as an int: CUDA
    runs are queued on it."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw(device)
    return torch.cuda.current_stream(device).cuda_stream


def context():
    """The default context (made on first use: it reads CC, TENSORC_CACHE_DIR,
    TENSORC_CFLAGS and TENSORC_NUM_THREADS then)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = _bind(_C.Context())
    return _default


_default_context = context


def set_context(cache_dir=None, num_threads=0, cc=None, cflags=None, disk_cache=True,
                verbose=False):
    """Replaces the default context for definitions made after this call and
    returns it.  cache_dir: the kernel cache on disk (disk_cache=False: memory
    only); num_threads: the kernels' thread pool (0: the core count); cc: the
    C compiler; cflags: flags appended to its command; verbose: print each
    compiler command.  Left as None, each comes from the environment (CC,
    TENSORC_CACHE_DIR, TENSORC_CFLAGS, TENSORC_NUM_THREADS) or its default."""
    global _default
    ctx = _bind(_C.Context(cache_dir=cache_dir, num_threads=num_threads, cc=cc, cflags=cflags,
                           disk_cache=disk_cache, verbose=verbose))
    with _lock:
        _default = ctx
    return ctx


def stats(ctx=None):
    """Counters: programs (sources checked), prepares (kernels made ready, once
    per compiled program entry), kernels_compiled (the C compiler ran),
    kernels_loaded (from the disk cache), kernels_reused (from the memory
    cache), specializations (programs compiled for keyword constants),
    gradients (backward programs derived)."""
    s = dict((ctx or context()).stats())
    s.update(_counters)
    return s


# ---- signatures ----

class Param:
    """One parameter of a def: name, dtype (TC spelling), rank, dims (a size
    symbol name or an int per dim; None for an untyped output)."""
    __slots__ = ("index", "name", "dtype", "rank", "dims", "typed")

    def __init__(self, index, name, dtype, rank, dims, typed):
        self.index, self.name, self.dtype, self.rank = index, name, dtype, rank
        self.dims, self.typed = dims, typed

    @property
    def is_float(self):
        return self.dtype in FLOATS

    def __repr__(self):
        if self.rank == 0:
            return f"{self.dtype} {self.name}"
        dims = ", ".join("?" if d is None else str(d) for d in self.dims)
        return f"{self.dtype}({dims}) {self.name}"


def _is_number(v):
    if isinstance(v, (bool, int, float)):
        return True
    return np is not None and isinstance(v, np.generic) and isinstance(v, numbers.Number)


def _constant(op_name, p, v):
    """(name, is_float, value) for a keyword constant, normalised to p's type."""
    if p.dtype in FLOATS:
        # .hex() makes torch.compile specialise a float it traces symbolically
        # (a function argument): a constant must be known when compiling
        return (p.name, True, float.fromhex(float(v).hex()))
    if isinstance(v, float) or (np is not None and isinstance(v, np.floating)):
        raise TypeError(f"{op_name}: {p.name} is {p.dtype}; got the float {v!r}")
    iv = operator.index(v)  # specialises a symbolic int under torch.compile, too
    if p.dtype == "bool":
        if iv not in (0, 1):
            raise _arg_error(f"{op_name}: {p.name} is bool; got {v!r}")
        return (p.name, False, int(iv))
    bits = _INT_BITS[p.dtype]
    lo, hi = (0, 2 ** bits) if p.dtype.startswith("u") else (-2 ** (bits - 1), 2 ** (bits - 1))
    if not lo <= iv < hi:
        raise _arg_error(f"{op_name}: {p.name} = {iv} does not fit {p.dtype}")
    if p.dtype == "uint64" and iv >= 2 ** 63:
        iv -= 2 ** 64  # the C API takes an int64: same bits
    return (p.name, False, iv)


def _arg_error(message):
    """A tensorc.Error for a bad argument found in Python."""
    e = _C.Error(message)
    e.code, e.message, e.line, e.col = "argument", message, None, None
    e.source_line, e.file, e.diagnostic = None, None, "error: " + message
    return e


def _arity_error(name, inputs, got):
    n = len(inputs)
    return TypeError(f"{name} takes {n} input{'s' if n != 1 else ''} "
                     f"({', '.join(p.name for p in inputs)}), got {got}")


def _arrange(name, inputs, args, named):
    """The inputs in declaration order from positional and named arguments."""
    if not named:
        if len(args) != len(inputs):
            raise _arity_error(name, inputs, len(args))
        return args
    names = {p.name for p in inputs}
    for k in named:
        if k not in names:
            raise TypeError(f"{name}: {k} is no input here (inputs: "
                            f"{', '.join(p.name for p in inputs)})")
    ins, pos = [], 0
    for p in inputs:
        if p.name in named:
            ins.append(named[p.name])
        elif pos < len(args):
            ins.append(args[pos])
            pos += 1
        else:
            raise TypeError(f"{name}: missing input {p.name}")
    if pos != len(args):
        raise _arity_error(name, inputs, len(args) + len(named))
    return tuple(ins)


# ---- one compiled program entry ----

class _Spec:
    """A program entry ready to run: signature, C program, torch operator."""

    def __init__(self, op, program, entry, constants, backward_entry, source):
        self.op = op                      # the Op it belongs to
        self.program = program
        self.source = source              # the TC text (operator names hash it)
        self.entry = entry
        self.run = program.run
        self.name = program.entries()[entry]
        self.constants = constants        # ((name, is_float, value), ...)
        self.backward_entry = backward_entry
        ins, outs = program.signature(entry)
        self.inputs = tuple(Param(i, *p) for i, p in enumerate(ins))
        self.outputs = tuple(Param(i, *p) for i, p in enumerate(outs))
        self._by_name = {p.name: p for p in self.inputs}
        self._torch = None                # _torch.Registered, made on first need
        self._grads = {}                  # wrt mask -> (_Spec, input index per output)

    def arrange(self, args, named):
        """The inputs in declaration order from positional and named args."""
        return _arrange(self.name, self.inputs, args, named)

    def arity_error(self, got):
        return _arity_error(self.name, self.inputs, got)

    def prepare(self):
        return self.program.prepare(self.entry)

    # torch: see _torch.py
    @property
    def torch(self):
        """The registered operator (_torch.Registered), made on first need.
        Not for traced code: see Op._call_traced."""
        if self._torch is None:
            if torch is None:
                raise RuntimeError(f"{self.name}: this call needs PyTorch, which is not "
                                   f"installed")
            from . import _torch
            with _lock:
                if self._torch is None:
                    self._torch = _torch.register(self)
        return self._torch

    def call_torch(self, ins, out):
        return call_op(self.torch.op, self.name, self.inputs, self.outputs, ins, out)

    def gradient(self, need):
        """The backward _Spec for inputs flagged in `need` (a tuple of bools),
        and the forward input index of each of its outputs."""
        g = self._grads.get(need)
        if g is not None:
            return g
        with _lock:
            g = self._grads.get(need)
            if g is None:
                g = self._make_gradient(need)
                self._grads[need] = g
        return g

    def _make_gradient(self, need):
        if self.backward_entry is not None:
            bw = _Spec(self.op, self.program, self.backward_entry, self.constants, None,
                       self.source)
            index = {"d_" + p.name: p.index for p in self.inputs}
            return bw, tuple(index[p.name] for p in bw.outputs)
        src = self.program.gradient(self.entry, list(need))
        prog = _C.Program(self.program.context, src, f"<gradient of {self.name}>")
        _counters["gradients"] += 1
        names = prog.entries()
        entry = names.index(self.name + "_grad") if self.name + "_grad" in names else 0
        bw = _Spec(self.op, prog, entry, (), None, src)
        return bw, tuple(i for i, w in enumerate(need) if w)


# ---- the user-facing objects ----

def _spec_for(op, key):
    """op's _Spec for constants `key`, compiled on first use."""
    spec = op._specs.get(key)
    if spec is None:
        with _lock:
            spec = op._specs.get(key)
            if spec is None:
                spec = op._specs[key] = op._specialize(key)
    return spec


def _traced_namers(op):
    """Two functions of op for its calls under torch.compile, which run at
    trace time (assume_constant_result: their results, strs, are constants
    of the graph, so traced code never sees the objects they create):

      op_name(key)          the name of the torch operator of op's _Spec for
                            constants `key`, compiled and registered on
                            first use;
      grad_name(key, need)  registers the backward operator for inputs
                            `need` of that _Spec: a compiled graph loaded
                            from PyTorch's caches names it without running
                            the backward formula that would register it.

    op is in their closure, not an argument: their arguments are tuples of
    constants only, which every torch version's Dynamo converts."""
    def op_name(key):
        return _spec_for(op, key).torch.name

    def grad_name(key, need):
        bw, _ = _spec_for(op, key).gradient(need)
        return bw.torch.name

    return _assume_constant(op_name), _assume_constant(grad_name)


def call_op(opov, name, inputs, outputs, ins, out):
    """Calls a torch operator (an OpOverload) from the Python API: numbers and
    arrays become tensors (numbers on the device of the tensor inputs); out=
    is filled by copies."""
    device = next((x.device for x in ins if isinstance(x, torch.Tensor)), None)
    args = tuple(_as_tensor(name, p, x, device) for p, x in zip(inputs, ins))
    res = opov(*args)
    if out is None:
        return res
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    res_t = res if isinstance(res, tuple) else (res,)
    if len(outs) != len(res_t):
        raise TypeError(f"{name} has {len(res_t)} outputs, got {len(outs)} in out=")
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        raise RuntimeError(f"{name}: out= does not support automatic differentiation "
                           f"(an input requires grad)")
    for p, o, r in zip(outputs, outs, res_t):
        if not isinstance(o, torch.Tensor):
            raise TypeError(f"{name}: output {p.name} must be a torch.Tensor here")
        if o.dtype != r.dtype:
            raise _arg_error(f"{name}: output {p.name} has dtype "
                         f"{str(o.dtype).replace('torch.', '')}, expected {p.dtype}")
        if o.device != r.device:
            raise _arg_error(f"{name}: output {p.name} is on {o.device}, expected {r.device} "
                             f"(the inputs' device)")
        if o.dim() != r.dim():
            raise _arg_error(f"{name}: output {p.name} has rank {o.dim()}, expected {r.dim()}")
        for k in range(r.dim()):
            if isinstance(o.shape[k], int) and isinstance(r.shape[k], int) and \
                    o.shape[k] != r.shape[k]:
                raise _arg_error(f"{name}: output {p.name} has size {o.shape[k]} in dim {k}, "
                             f"expected {r.shape[k]} (inferred)")
        o.copy_(r)
    return out


def _as_tensor(name, p, x, device=None):
    if isinstance(x, torch.Tensor):
        return x
    if _is_number(x):
        if p.rank:
            raise _arg_error(f"{name}: {p.name} must be a tensor of rank {p.rank}, got a "
                         f"{type(x).__name__}")
        if not p.is_float and isinstance(x, float):
            raise _arg_error(f"{name}: {p.name} is {p.dtype}; got a float")
        return torch.tensor(x, dtype=getattr(torch, p.dtype), device=device)
    if np is not None and isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x)
    raise TypeError(f"{name}: {p.name} must be a tensor or an array, got {type(x).__name__}")


class _Deferred:
    """The base of a def whose ranges depend on scalar parameters: it checks
    only with those given as keyword constants.  Holds the signature (from a
    probe compile) and the error of the unspecialised def."""

    def __init__(self, name, inputs, outputs, error, needs):
        self.name, self.inputs, self.outputs = name, inputs, outputs
        self._by_name = {p.name: p for p in inputs}
        self.entry = 0
        self.error = error
        self.needs = needs  # the scalar parameters probed

    def fail(self):
        e = self.error
        hint = (f"{self.name} needs compile-time constants for range inference: pass "
                f"{', '.join(n + '=...' for n in self.needs)} by keyword")
        err = _C.Error(f"{e}\n{hint}")
        for k in ("code", "message", "line", "col", "source_line", "file", "diagnostic"):
            setattr(err, k, getattr(e, k, None))
        err.hint = hint
        return err

    def run(self, entry, args, out, check):
        raise self.fail()


class Op:
    """One def: call it with tensors, arrays or numbers.

        op(A, B)                  outputs allocated, returned in declared order
        op(A, B, out=C)           into preallocated outputs (a tuple for several)
        op(X, W, stride=2)        a keyword scalar is a compile-time constant
        op(alpha, X)              a positional scalar is a run-time value
    """

    def __init__(self, definition, base, source, ctx):
        self.definition = definition
        self._base = base             # a _Spec, or a _Deferred
        self._source = source         # what specialisations compile
        self._ctx = ctx
        self._specs = {} if isinstance(base, _Deferred) else {(): base}
        self._run = base.run
        self._entry = base.entry
        self.__name__ = self.name = base.name
        self.__qualname__ = base.name
        self.__doc__ = f"tensorc op {self.signature}"
        self._op_name, self._grad_name = _traced_namers(self)

    @property
    def signature(self):
        s = self._base
        ins = ", ".join(repr(p) for p in s.inputs)
        outs = ", ".join(repr(p) if p.typed else p.name for p in s.outputs)
        return f"{s.name}({ins}) -> ({outs})"

    @property
    def inputs(self):
        return self._base.inputs

    @property
    def outputs(self):
        return self._base.outputs

    def __repr__(self):
        return f"<tensorc.Op {self.signature}>"

    def __call__(self, *args, out=None, **kwargs):
        if not kwargs and not _compiling():
            r = self._run(self._entry, args, out, True)
            if r is not NotImplemented:
                return r
        return self._call(args, out, kwargs)

    def _call(self, args, out, kwargs):
        key, named = self._split(kwargs) if kwargs else ((), None)
        if torch is not None and _compiling():
            return self._call_traced(key, args, named, out)
        spec = _spec_for(self, key)
        ins = spec.arrange(args, named)
        r = spec.run(spec.entry, ins, out, True)
        if r is NotImplemented:
            return spec.call_torch(ins, out)
        return r

    def _call_traced(self, key, args, named, out):
        """The call under torch.compile: only the operator, found by name."""
        name = self._op_name(key)
        fixed = {c[0] for c in key}
        inputs = tuple(p for p in self._base.inputs if p.name not in fixed)
        ins = _arrange(self.name, inputs, args, named)
        if torch.is_grad_enabled():
            need = tuple(p.is_float and isinstance(x, torch.Tensor) and x.requires_grad
                         for p, x in zip(inputs, ins))
            if any(need):
                self._grad_name(key, need)
        opov = getattr(torch.ops.tensorc, name).default
        return call_op(opov, self.name, inputs, self._base.outputs, ins, out)

    def _split(self, kwargs):
        """(constants key, named run-time inputs) from the keyword arguments."""
        by_name = self._base._by_name
        for k in kwargs:
            if k not in by_name:
                raise TypeError(f"{self.name}: {k} is no input of this definition (inputs: "
                                f"{', '.join(q.name for q in self._base.inputs)})")
        consts, named = [], {}
        for p in self._base.inputs:  # in declaration order: one key per set of values
            if p.name in kwargs:
                v = kwargs[p.name]
                if p.rank == 0 and _is_number(v):
                    consts.append(_constant(self.name, p, v))
                else:
                    named[p.name] = v
        return tuple(consts), named

    def _specialize(self, key):
        """A _Spec for the def compiled with constants `key`."""
        if not key and isinstance(self._base, _Deferred):
            raise self._base.fail()
        prog = _C.Program(self._ctx, self._source, self.definition.filename, key)
        _counters["specializations"] += 1
        names = prog.entries()
        bw = self.definition._backward.get(self.name)
        return _Spec(self, prog, names.index(self.name), key,
                     names.index(bw) if bw is not None else None, self._source)

    def specialize(self, **constants):
        """This def with keyword constants fixed, as an Op of its own (whose
        torch_op is the specialised operator)."""
        key, named = self._split(constants)
        if named:
            raise TypeError(f"{self.name}: specialize() takes scalar constants, not "
                            f"{', '.join(named)}")
        return Op(self.definition, _spec_for(self, key), self._source, self._ctx)

    def _spec(self):
        if isinstance(self._base, _Deferred):
            raise self._base.fail()
        return self._base

    @property
    def torch_op(self):
        """The registered operator (an OpOverload, torch.ops.tensorc.<name>)."""
        if torch is not None and _compiling():
            return getattr(torch.ops.tensorc, self._op_name(())).default
        return self._spec().torch.op

    def prepare(self):
        """Compiles (or loads) the kernel now: (how, seconds, path)."""
        return self._spec().prepare()

    def gradient_source(self, *wrt):
        """The TC source of the backward definition derived for the inputs
        named (default: every floating-point input)."""
        spec = self._spec()
        for n in wrt:
            if n not in spec._by_name:
                raise ValueError(f"{self.name}: no input {n!r}")
        need = [p.is_float and (not wrt or p.name in wrt) for p in spec.inputs]
        return spec.program.gradient(spec.entry, need)

    def emit(self):
        """The generated C source."""
        return self._spec().program.emit(self._entry)

    def explain(self, *shapes):
        """Ranges, output shapes (for input shapes, when given) and the loop nest."""
        return self._spec().program.explain(self._entry, [tuple(s) for s in shapes] or None)

    def infer_shapes(self, *shapes):
        """The output shapes for these input shapes."""
        return self._spec().program.infer_shapes(self._entry, [tuple(s) for s in shapes])


class Definition:
    """A checked TC source: one Op per def, as attributes (ops.matmul) or
    items (ops["matmul"]).

    A source that checks as a whole is one program.  One that does not may
    still be valid: a def whose ranges depend on a scalar parameter
    (`I(n, c, s*h + kh, ...)`) checks only once that parameter is a
    compile-time constant.  Then each def is checked on its own (the other
    defs blanked out, so positions in messages hold); a def that fails alone
    but checks with its integer scalars set (to 1) is deferred: calls must
    give those as keyword constants.  Anything else raises its error now."""

    def __init__(self, source, filename="<tensorc>", backward=None, context=None,
                 schedule=None):
        if not isinstance(source, str):
            raise TypeError(f"define: the source must be a str, got {type(source).__name__}")
        source = _with_schedule(source, schedule)
        self.source = source
        self.filename = filename
        ctx = context or _default_context()
        self._ops = {}
        self._backward_arg = backward
        try:
            program = _C.Program(ctx, source, filename)
        except _C.Error as e:
            if e.code != "program":
                raise
            self.program = None
            self._define_each(ctx, e)
            return
        self.program = program
        self._backward = _backward_map(backward, program.entries())
        self._add_ops(ctx, program, source, program.entries())

    def _add_ops(self, ctx, program, source, only):
        names = program.entries()
        for i, name in enumerate(names):
            if name not in only:
                continue
            bw = self._backward.get(name)
            spec = _Spec(None, program, i, (), names.index(bw) if bw is not None else None,
                         source)
            _check_backward(program, spec, bw)
            op = Op(self, spec, source, ctx)
            spec.op = op
            self._ops[name] = op

    def _define_each(self, ctx, whole_error):
        defs = _split_defs(self.source)
        if not defs:
            raise whole_error
        self._backward = _backward_map(self._backward_arg, [d[0] for d in defs])
        of = {b: f for f, b in self._backward.items()}
        spans = {d[0]: (d[1], d[2]) for d in defs}
        for name, _, _, params in defs:
            if name in of:
                continue  # checked with its forward def
            keep = [spans[name]] + ([spans[self._backward[name]]] if name in self._backward
                                    else [])
            sub = _keep_only(self.source, keep)
            try:
                program = _C.Program(ctx, sub, self.filename)
            except _C.Error as e:
                if e.code != "program":
                    raise
                self._define_deferred(ctx, name, sub, params, e)
                continue
            self._add_ops(ctx, program, sub, [name, self._backward.get(name)])
        self._ops = {d[0]: self._ops[d[0]] for d in defs if d[0] in self._ops}

    def _define_deferred(self, ctx, name, sub, params, error):
        ints = [(n, t) for n, t, scalar in params if scalar and (t in _INT_BITS or t == "bool")]
        if not ints:
            raise error
        try:
            probe = _C.Program(ctx, sub, self.filename,
                               tuple((n, False, 1) for n, _ in ints))
        except _C.Error:
            raise error from None
        entry = probe.entries().index(name)
        pins, pouts = probe.signature(entry)
        by_name = {p[0]: p for p in pins}
        probed = dict(ints)
        inputs = []
        for n, t, scalar in params:
            if n in probed:
                inputs.append(Param(len(inputs), n, t, 0, (), True))
            elif n in by_name:
                inputs.append(Param(len(inputs), *by_name[n]))
        if len(inputs) != len(pins) + len(ints):
            raise error  # the header did not read as expected
        outputs = tuple(Param(i, *p) for i, p in enumerate(pouts))
        base = _Deferred(name, tuple(inputs), outputs, error, [n for n, _ in ints])
        self._ops[name] = Op(self, base, sub, ctx)
        bw = self._backward.get(name)
        if bw is not None:
            bentry = probe.entries().index(bw)
            bins, bouts = probe.signature(bentry)
            bbase = _Deferred(bw, tuple(Param(i, *p) for i, p in enumerate(bins)),
                              tuple(Param(i, *p) for i, p in enumerate(bouts)), error,
                              [n for n, _ in ints])
            self._ops[bw] = Op(self, bbase, sub, ctx)

    @property
    def names(self):
        return tuple(self._ops)

    def __getattr__(self, name):
        ops = self.__dict__.get("_ops", {})
        if name in ops:
            return ops[name]
        raise AttributeError(f"the definition has no def {name!r} (defs: {', '.join(ops)})")

    def __getitem__(self, name):
        try:
            return self._ops[name]
        except KeyError:
            raise KeyError(f"no def {name!r} (defs: {', '.join(self._ops)})") from None

    def __iter__(self):
        return iter(self._ops.values())

    def __len__(self):
        return len(self._ops)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._ops))

    def __repr__(self):
        return f"<tensorc.Definition {', '.join(self._ops)}>"


# ---- sources read in Python (only to split a source into its defs) ----

_DEF_HEAD = re.compile(r"\bdef\s+(\w+)\s*\(")
_TYPE_ALIASES = {"float": "float32", "double": "float64"}


def _split_top(s):
    """Splits at commas outside parentheses and brackets."""
    parts, depth, cur = [], 0, []
    for ch in s:
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def _split_defs(source):
    """[(name, start, end, params)]: each def's span in the source and its
    parameters (name, dtype if a scalar, is_scalar)."""
    text = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), source)
    heads = list(_DEF_HEAD.finditer(text))
    defs = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        j, depth = m.end(), 1
        while j < end and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        params = []
        for p in _split_top(text[m.end():j - 1]):
            sm = re.fullmatch(r"\s*(\w+)\s+(\w+)\s*", p)
            if sm:
                t = _TYPE_ALIASES.get(sm.group(1), sm.group(1))
                params.append((sm.group(2), t, True))
            else:
                tm = re.match(r"\s*\w+\s*(?:\([^)]*\))?\s*(\w+)", p)
                params.append((tm.group(1) if tm else None, None, False))
        defs.append((m.group(1), m.start(), end, params))
    return defs


def _with_schedule(source, schedule):
    """The source with a schedule (docs/language.md, "Schedules") after it:
    `schedule NAME { ... }` blocks as they are, or bare directive chains
    (`O.split(y, yo, yi, 64).parallel(yo)`) for the source's only def."""
    if schedule is None:
        return source
    if not isinstance(schedule, str):
        raise TypeError(f"define: schedule must be a str, got {type(schedule).__name__}")
    text = re.sub(r"#[^\n]*", "", schedule)
    if not re.match(r"\s*schedule\s+\w+\s*\{", text) and text.strip():
        defs = _split_defs(source)
        if len(defs) != 1:
            raise ValueError("define: directive chains as schedule= need a source of one def; "
                             "write `schedule NAME { ... }` blocks for several")
        schedule = f"schedule {defs[0][0]} {{\n{schedule}\n}}"
    return source.rstrip("\n") + "\n" + schedule + "\n"


def _keep_only(source, spans):
    """The source with everything outside `spans` blanked, newlines kept, so
    that lines and columns in messages stay those of the source."""
    keep = [False] * len(source)
    for a, b in spans:
        keep[a:b] = [True] * (b - a)
    return "".join(c if k or c == "\n" else " " for c, k in zip(source, keep))


def _backward_map(backward, names):
    if backward is None:
        return {}
    if isinstance(backward, str):
        if len(names) != 2 or backward not in names:
            raise ValueError("backward='NAME' needs a source of two defs, the forward and "
                             "NAME; use backward={'forward': 'backward'} otherwise")
        return {next(n for n in names if n != backward): backward}
    out = dict(backward)
    for f, b in out.items():
        for n in (f, b):
            if n not in names:
                raise ValueError(f"backward: no def {n!r} in the source (defs: "
                                 f"{', '.join(names)})")
    return out


def _check_backward(program, spec, bw):
    """A hand-written backward takes the forward's inputs then d_<output> per
    output, and returns d_<input> for inputs of its choice."""
    if bw is None:
        return
    ins, outs = program.signature(program.entries().index(bw))
    want = [p.name for p in spec.inputs] + ["d_" + p.name for p in spec.outputs]
    got = [p[0] for p in ins]
    if got != want:
        raise ValueError(f"backward {bw} of {spec.name} must take ({', '.join(want)}), "
                         f"takes ({', '.join(got)})")
    allowed = {"d_" + p.name for p in spec.inputs}
    for p in outs:
        if p[0] not in allowed:
            raise ValueError(f"backward {bw}: output {p[0]} names no input of {spec.name} "
                             f"(expected d_<input>)")


def _from_function(fn, backward=None, context=None, schedule=None):
    """@tensorc.define on a function whose docstring is the TC source: the Op
    named like the function (or the source's only def)."""
    import inspect
    src = inspect.getdoc(fn)
    if not src:
        raise ValueError(f"@tensorc.define: {fn.__name__} has no docstring with a TC source")
    defn = Definition(src, f"<{fn.__qualname__}>", backward, context, schedule)
    if fn.__name__ in defn.names:
        return defn[fn.__name__]
    if len(defn) == 1:
        return next(iter(defn))
    raise ValueError(f"@tensorc.define: the docstring of {fn.__name__} defines "
                     f"{', '.join(defn.names)}, none called {fn.__name__}")


def define(source=None, *, filename="<tensorc>", backward=None, context=None, schedule=None):
    """Parses and checks a TC source now; returns a Definition with one Op
    per def.  Raises tensorc.Error (a ValueError; .line, .col, .source_line)
    on a malformed program.

    backward: a hand-written backward def for a def of the source, as
    {"forward": "backward"} (or "backward" in a source of two defs).  It
    takes the forward's inputs, then d_<output> per output, and returns
    d_<input> for inputs of its choice (TC's convention).  Without it,
    backward definitions are derived from the program.

    schedule: the CPU schedule, as the text of `schedule NAME { ... }` blocks
    or, for a source of one def, its directive chains (docs/language.md,
    "Schedules"); it is checked with the source.

    Also a decorator: @tensorc.define on a function whose docstring holds the
    source gives the Op named like the function."""
    if callable(source):
        return _from_function(source, backward, context, schedule)
    if source is None:
        return lambda fn: _from_function(fn, backward, context, schedule)
    return Definition(source, filename, backward, context, schedule)

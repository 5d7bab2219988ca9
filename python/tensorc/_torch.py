"""PyTorch integration: every compiled program entry (_api._Spec) becomes an
operator torch.ops.tensorc.<def>_<hash>, registered through torch.library:

  CPU (and CUDA) kernel   the C call path (Program.run), outputs allocated
  fake kernel             output shapes from the entry's size programs: the
                          extents range inference found, as postfix programs
                          over the input dims (tc_output_size), evaluated
                          here on ints or SymInts, so torch.compile traces
                          with dynamic shapes; size symbols shared by several
                          input dims become torch._check()s
  autograd                backward = another registered operator: the
                          backward def derived by tc_gradient for the inputs
                          that need a gradient (cached per mask), or the
                          user's hand-written one

The name hashes the source, the entry, the constants and the backward
choice, so identical definitions share one operator and different ones
never collide.
"""
import hashlib
import operator

import torch

from . import _api

_LIB = torch.library.Library("tensorc", "FRAGMENT")
_REGISTERED = {}  # operator name -> Registered

# argument names the schema parser or torch treat specially
_RESERVED = {"out", "self", "Tensor", "dtype", "device", "layout", "memory_format",
             "pin_memory", "int", "float", "bool", "str", "Scalar", "None", "True", "False"}


def _arg_names(params):
    """Schema argument names: the TC names, unless torch reserves them."""
    names = []
    for p in params:
        n = f"{p.name}_" if p.name in _RESERVED else p.name
        names.append(n if n not in names else f"arg{p.index}_")
    return names


def _op_name(spec):
    h = hashlib.sha256()
    for part in (spec.source, spec.name, repr(spec.constants),
                 "" if spec.backward_entry is None
                 else spec.program.entries()[spec.backward_entry]):
        h.update(part.encode())
        h.update(b"\0")
    return f"{spec.name}_{h.hexdigest()[:16]}"


def register(spec):
    """The Registered operator of a _Spec (made once per distinct name)."""
    name = _op_name(spec)
    r = _REGISTERED.get(name)
    if r is None:
        r = Registered(spec, name)
        _REGISTERED[name] = r
    return r


# ---- size programs over ints and SymInts ----

def _as_int(x):
    if isinstance(x, (bool, torch.SymBool)):
        return torch.sym_ite(x, 1, 0) if isinstance(x, torch.SymBool) else int(x)
    return x


def _as_bool(x):
    if isinstance(x, (bool, torch.SymBool)):
        return x
    return x != 0


def _div(a, b):
    if isinstance(b, int) and b == 0:
        return 0
    return a // b


def _mod(a, b):
    if isinstance(b, int) and b == 0:
        return 0
    return a % b


_BINARY = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div, "%": _mod,
    "min": lambda a, b: torch.sym_min(a, b), "max": lambda a, b: torch.sym_max(a, b),
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}


def eval_size(prog, shapes):
    """Runs a size program (tuples (op, input, dim, value)) on input shapes."""
    st = []
    for op, i, d, v in prog:
        if op == "const":
            st.append(v)
        elif op == "dim":
            st.append(shapes[i][d])
        elif op == "neg":
            st.append(-_as_int(st.pop()))
        elif op == "!":
            st.append(torch.sym_not(_as_bool(st.pop())))
        elif op == "?:":
            c = st.pop()
            b = st.pop()
            a = _as_bool(st.pop())
            st.append(torch.sym_ite(a, _as_int(b), _as_int(c)) if isinstance(a, torch.SymBool)
                      else (b if a else c))
        elif op in ("&&", "||"):
            b, a = _as_bool(st.pop()), _as_bool(st.pop())
            st.append((a & b) if op == "&&" else (a | b))
        else:
            b, a = _as_int(st.pop()), _as_int(st.pop())
            st.append(_BINARY[op](a, b))
    return _as_int(st[-1])


def _is_concrete(*xs):
    return all(isinstance(x, int) for x in xs)


class Registered:
    """One operator: its OpOverload and its kernels."""

    def __init__(self, spec, name):
        self.spec = spec
        self.name = name
        s = spec
        self.in_dtypes = tuple(getattr(torch, p.dtype) for p in s.inputs)
        self.out_dtypes = tuple(getattr(torch, p.dtype) for p in s.outputs)
        self.sizes = s.program.output_sizes(s.entry)  # [output][dim] -> postfix ops
        self.binds = self._bindings()
        args = ", ".join(f"Tensor {n}" for n in _arg_names(s.inputs))
        rets = "Tensor" if len(s.outputs) == 1 else \
            "(" + ", ".join("Tensor" for _ in s.outputs) + ")"
        _LIB.define(f"{name}({args}) -> {rets}", tags=(torch.Tag.pt2_compliant_tag,))
        qual = f"tensorc::{name}"
        _LIB.impl(name, self._impl, "CPU")
        _LIB.impl(name, self._impl, "CUDA")
        torch.library.register_fake(qual, self._fake, lib=_LIB)
        torch.library.register_autograd(qual, self._backward, setup_context=self._setup,
                                        lib=_LIB)
        self.op = getattr(torch.ops.tensorc, name).default

    def _bindings(self):
        """(input, dim, kind, what): kind "const" (what = the declared value)
        or "same" (what = (symbol, input, dim) of the first dim using it)."""
        first, binds = {}, []
        for p in self.spec.inputs:
            for k, d in enumerate(p.dims):
                if isinstance(d, int):
                    binds.append((p.index, k, "const", d))
                elif d in first:
                    binds.append((p.index, k, "same", (d,) + first[d]))
                elif d is not None:
                    first[d] = (p.index, k)
        return binds

    # -- kernels --

    def _impl(self, *args):
        return self.spec.run(self.spec.entry, args, None, False)

    def _check(self, args):
        """The fake kernel's checks: what tc_run checks, on metadata only."""
        s = self.spec
        if len(args) != len(s.inputs):
            raise s.arity_error(len(args))
        for p, a, dt in zip(s.inputs, args, self.in_dtypes):
            if a.dim() != p.rank:
                raise _api._arg_error(f"{s.name}: {p.name} has rank {a.dim()}, expected {p.rank}")
            if a.dtype != dt:
                raise _api._arg_error(f"{s.name}: {p.name} has dtype "
                                  f"{str(a.dtype).replace('torch.', '')}, expected {p.dtype}")
        for p, a in zip(s.inputs[1:], args[1:]):
            if a.device != args[0].device:
                raise _api._arg_error(f"{s.name}: {p.name} is on {a.device} but "
                                      f"{s.inputs[0].name} is on {args[0].device} (the "
                                      f"tensors of a run must be on one device)")
        shapes = [a.shape for a in args]
        for i, k, kind, what in self.binds:
            n = shapes[i][k]
            pname = s.inputs[i].name
            if kind == "const":
                msg = (f"{s.name}: {pname} has size {n} in dim {k}, but the definition "
                       f"declares {what}")
                if _is_concrete(n):
                    if n != what:
                        raise _api._arg_error(msg)
                else:
                    torch._check(n == what, lambda msg=msg: msg)
                continue
            sym, j, d = what
            m = shapes[j][d]
            msg = (f"{s.name}: {pname} has size {n} in dim {k}, but {sym} = {m} "
                   f"(from {s.inputs[j].name} dim {d})")
            if _is_concrete(n, m):
                if n != m:
                    raise _api._arg_error(msg)
            else:
                torch._check(n == m, lambda msg=msg: msg)
        return shapes

    def output_shapes(self, shapes):
        """Output shapes from input shapes (ints or SymInts)."""
        s = self.spec
        res = []
        for p, dims in zip(s.outputs, self.sizes):
            shape = []
            for k, prog in enumerate(dims):
                v = eval_size(prog, shapes)
                msg = (f"{s.name}: inferred size of {p.name} dim {k} is {v} (shapes too small "
                       f"for the ranges of this definition)")
                if _is_concrete(v):
                    if v < 0:
                        raise _api._arg_error(msg)
                else:
                    torch._check(v >= 0, lambda msg=msg: msg)
                shape.append(v)
            res.append(shape)
        return res

    def _fake(self, *args):
        shapes = self._check(args)
        device = args[0].device if args else torch.device("cpu")
        outs = tuple(torch.empty(shape, dtype=dt, device=device)
                     for shape, dt in zip(self.output_shapes(shapes), self.out_dtypes))
        return outs[0] if len(outs) == 1 else outs

    # -- autograd --

    def _setup(self, ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        outs = output if isinstance(output, tuple) else (output,)
        ctx.out_meta = tuple((o.shape, o.dtype, o.device) for o in outs)
        nondiff = [o for o, p in zip(outs, self.spec.outputs) if not p.is_float]
        if nondiff:
            ctx.mark_non_differentiable(*nondiff)

    def _backward(self, ctx, *grads):
        s = self.spec
        ins = ctx.saved_tensors
        n = len(ins)
        need = tuple(bool(ctx.needs_input_grad[i]) and p.is_float
                     for i, p in enumerate(s.inputs))
        result = [None] * n
        if any(need):
            bw, where = s.gradient(need)
            gs = []
            for g, (shape, dt, dev), p in zip(grads, ctx.out_meta, bw.inputs[n:]):
                want = getattr(torch, p.dtype)
                if g is None:
                    g = torch.zeros(shape, dtype=want, device=dev)
                elif g.dtype != want:
                    g = g.to(want)
                gs.append(g)
            res = bw.torch.op(*ins, *gs)
            res = res if isinstance(res, tuple) else (res,)
            for r, i in zip(res, where):
                if need[i]:
                    result[i] = r
        return tuple(result) if n != 1 else result[0]

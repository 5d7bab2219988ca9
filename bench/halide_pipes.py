"""The workloads as Halide pipelines (Halide's Python API), for the Halide
driver to autoschedule and JIT-compile.

Each builder takes the input shapes (numpy order) and returns a Pipe: the
ImageParams by TC input name and the output Func.  Halide's dimension 0 is
the innermost, so a numpy array X[n, d] is read as X[d, n] here (hl.Buffer of
a C-ordered array reverses the axes).  Extents come from the ImageParams, not
from constants: like a tensorc kernel, one pipeline serves every shape, and
the autoscheduler sees the benchmark's shapes only as estimates.  No
schedules are written here: the autoscheduler makes them all.

`halide` is imported inside the builders, so the harness runs (and skips
Halide with a note) where the package is missing.
"""

from dataclasses import dataclass
from typing import Any, Dict


@dataclass
class Pipe:
    params: Dict[str, Any]   # TC input name -> hl.ImageParam
    out: Any                 # hl.Func: the output


def _hl():
    import halide
    return halide


def _params(hl, shapes):
    return {n: hl.ImageParam(hl.Float(32), len(s), n) for n, s in shapes.items()}


def _vars(hl, *names):
    return [hl.Var(n) for n in names]


def gelu(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    (i,) = _vars(hl, "i")
    x, y, z = p["X"][i], p["Y"][i], p["Z"][i]
    o = hl.Func("gelu_mul_add")
    o[i] = hl.f32(0.5) * x * (hl.f32(1) + hl.erf(x * hl.f32(0.70710678118654752))) * y + z
    return Pipe(p, o)


def softmax(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    X = p["X"]
    d, n = _vars(hl, "d", "n")
    r = hl.RDom([(0, X.dim(0).extent())])
    mx, e, s, o = hl.Func("mx"), hl.Func("e"), hl.Func("s"), hl.Func("softmax")
    mx[n] = hl.maximum(X[r.x, n])
    e[d, n] = hl.exp(X[d, n] - mx[n])
    s[n] = hl.sum(e[r.x, n])
    o[d, n] = e[d, n] / s[n]
    return Pipe(p, o)


def layernorm(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    X, g, b = p["X"], p["gamma"], p["beta"]
    d, n = _vars(hl, "d", "n")
    D = X.dim(0).extent()
    r = hl.RDom([(0, D)])
    mean, xc, var, o = hl.Func("mean"), hl.Func("xc"), hl.Func("var"), hl.Func("layernorm")
    mean[n] = hl.sum(X[r.x, n]) / hl.f32(D)
    xc[d, n] = X[d, n] - mean[n]
    var[n] = hl.sum(xc[r.x, n] * xc[r.x, n]) / hl.f32(D)
    o[d, n] = xc[d, n] / hl.sqrt(var[n] + hl.f32(1e-5)) * g[d] + b[d]
    return Pipe(p, o)


def _product(hl, name, a_at, b_at, extent, dims, init=None):
    """A contraction in Halide's usual form: a pure definition (zero or a
    bias), then an update summing over an RDom."""
    f = hl.Func(name)
    r = hl.RDom([(0, extent)])
    dims = tuple(dims)
    f[dims] = init if init is not None else hl.f32(0)
    f[dims] += a_at(r.x) * b_at(r.x)
    return f


def matmul(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    A, B = p["A"], p["B"]
    j, i = _vars(hl, "j", "i")
    c = _product(hl, "matmul", lambda k: A[k, i], lambda k: B[j, k], A.dim(0).extent(), [j, i])
    return Pipe(p, c)


def matmul_nt(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    A, B = p["A"], p["B"]
    j, i = _vars(hl, "j", "i")
    c = _product(hl, "matmul_nt", lambda k: A[k, i], lambda k: B[k, j], A.dim(0).extent(), [j, i])
    return Pipe(p, c)


def bmm(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    A, B = p["A"], p["B"]
    j, i, b = _vars(hl, "j", "i", "b")
    c = _product(hl, "bmm", lambda k: A[k, i, b], lambda k: B[j, k, b], A.dim(0).extent(),
                 [j, i, b])
    return Pipe(p, c)


def _zero_padded(hl, img, ndims):
    """img with 0 outside [0, extent) in its two innermost dims (W and H)."""
    bounds = [hl.Range(0, img.dim(0).extent()), hl.Range(0, img.dim(1).extent())]
    bounds += [hl.Range(img.dim(k).min(), img.dim(k).extent()) for k in range(2, ndims)]
    return hl.BoundaryConditions.constant_exterior(img, hl.f32(0), bounds)


def conv(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    I, Wt = p["I"], p["Wt"]           # I[w,h,c,n], Wt[kx,ky,c,f]
    x, y, f, n = _vars(hl, "x", "y", "f", "n")
    pad = _zero_padded(hl, I, 4)
    r = hl.RDom([(0, 3), (0, 3), (0, I.dim(2).extent())])
    o = hl.Func("conv3x3")
    o[x, y, f, n] = hl.f32(0)
    o[x, y, f, n] += pad[x + r.x - 1, y + r.y - 1, r.z, n] * Wt[r.x, r.y, r.z, f]
    return Pipe(p, o)


def group_conv(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    I, Wt = p["I"], p["Wt"]           # I[w,h,c,g,n], Wt[kx,ky,c,f,g]
    x, y, f, g, n = _vars(hl, "x", "y", "f", "g", "n")
    pad = _zero_padded(hl, I, 5)
    r = hl.RDom([(0, 3), (0, 3), (0, I.dim(2).extent())])
    o = hl.Func("group_conv3x3")
    o[x, y, f, g, n] = hl.f32(0)
    o[x, y, f, g, n] += pad[x + r.x - 1, y + r.y - 1, r.z, g, n] * Wt[r.x, r.y, r.z, f, g]
    return Pipe(p, o)


def blur(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    x, y = _vars(hl, "x", "y")
    third = hl.f32(0.33333334)
    ic = hl.BoundaryConditions.repeat_edge(p["I"])
    bx, by = hl.Func("blur_x"), hl.Func("blur3x3")
    bx[x, y] = (ic[x - 1, y] + ic[x, y] + ic[x + 1, y]) * third
    by[x, y] = (bx[x, y - 1] + bx[x, y] + bx[x, y + 1]) * third
    return Pipe(p, by)


def mlp(shapes):
    hl = _hl()
    p = _params(hl, shapes)
    X, W1, B1, W2, B2 = (p[k] for k in ("X", "W1", "B1", "W2", "B2"))
    h, o, b = _vars(hl, "h", "o", "b")
    hd = _product(hl, "hidden", lambda k: W1[k, h], lambda k: X[k, b], X.dim(0).extent(), [h, b],
                  init=B1[h])
    relu = hl.Func("relu")
    relu[h, b] = hl.max(hd[h, b], hl.f32(0))
    y = _product(hl, "mlp2", lambda k: W2[k, o], lambda k: relu[k, b], W2.dim(0).extent(), [o, b],
                 init=B2[o])
    return Pipe(p, y)

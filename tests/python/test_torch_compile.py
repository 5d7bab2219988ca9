"""The operators under PyTorch's tools: torch.library.opcheck on every test
program (schema, fake kernel against the real one, autograd registration,
AOT dispatch with static and dynamic shapes), and torch.compile(fullgraph=
True) with and without dynamic shapes on representative programs, with the
recompile counters of Dynamo and of tensorc.

opcheck runs on every entry: on its float64 version with inputs that require
grad when it has floating-point inputs and outputs (the kernels are those
test_torch_autograd.py compiled), else as written; and as written too when
it uses 16-bit floats, which its float64 version does not show.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tensorc  # noqa: E402
import test_programs as tp  # noqa: E402
import test_torch_autograd as tgrad  # noqa: E402
import test_torch_programs as tprog  # noqa: E402
from test_torch_autograd import float64_inputs, grad_params  # noqa: E402
from test_torch_programs import _context, load, to_torch  # noqa: E402,F401


@pytest.fixture(scope="module", autouse=True)
def _prepared():
    """The kernels, compiled a few at a time (or found ready)."""
    tprog.prepare_all()
    tgrad.prepare_all()

ALL = ("test_schema", "test_autograd_registration", "test_faketensor",
       "test_aot_dispatch_static", "test_aot_dispatch_dynamic")


def first_case(entry):
    """The smallest case that runs."""
    cases = [(i, c) for i, c in enumerate(entry["cases"]) if not c["error"]]
    if not cases:
        return None
    return min(cases, key=lambda ic: sum(int(np.prod(s)) for s in ic[1]["shapes"].values()))


def opcheck_params():
    return [pytest.param(f, e, s, id=f"{f}:{e['entry']}") for f, e, s in tp.CORPUS
            if first_case(e)]


GRAD_ENTRIES = {(p.values[0], p.values[1]["entry"]) for p in grad_params()}


def uses_half(fname, sig):
    return any(t in ("float16", "bfloat16") for _, t, _ in sig["inputs"]) or \
        "float16" in (tp.PROGRAMS / fname).read_text()


@pytest.mark.parametrize("fname,entry,sig", opcheck_params())
def test_opcheck(fname, entry, sig):
    checked = False
    if (fname, entry["entry"]) in GRAD_ENTRIES:
        op, xs = float64_inputs(fname, entry)
        if any(p.dtype == "float64" for p in op.outputs):
            torch.library.opcheck(op.torch_op, tuple(xs), test_utils=ALL)
            checked = True
    if checked and not uses_half(fname, sig):
        return
    op = load(fname)[entry["entry"]]
    idx, case = first_case(entry)
    # opcheck compares with ==: inputs that give no NaN
    nonan = tgrad.VALUES.get(f"{fname}:{entry['entry']}", {})
    entry = dict(entry, values=dict(entry["values"], **nonan))
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    dtypes = {n: t for n, t, _ in sig["inputs"]}
    args = tuple(to_torch(a, dtypes[n], 0) for n, a in inputs.items())
    torch.library.opcheck(op.torch_op, args, test_utils=ALL)


# ---- torch.compile ----

SOURCES = {
    "matmul.tc": "matmul",
    "conv2d.tc": "convolution",
    "softmax.tc": None,
    "layernorm.tc": None,
    "pooling.tc": None,
    "scalars.tc": "axpy",
    "tc_batchnorm.tc": "spatial_batch_norm",
}


def representative():
    out = []
    for f, e, s in tp.CORPUS:
        want = SOURCES.get(f, 0)
        if want == 0 or (want is not None and e["entry"] != want):
            continue
        if want is None and any(x[0] == f for x in out):
            continue
        out.append((f, e, s))
    return out


def sized_inputs(fname, entry, sig, idx):
    case = entry["cases"][idx]
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    dtypes = {n: t for n, t, _ in sig["inputs"]}
    return [to_torch(a, dtypes[n], 0) for n, a in inputs.items()]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("fname,entry,sig", [pytest.param(*x, id=f"{x[0]}:{x[1]['entry']}")
                                             for x in representative()])
def test_compile(fname, entry, sig, dynamic):
    from torch._dynamo.testing import CompileCounter

    op = load(fname)[entry["entry"]]

    def f(*args):
        res = op(*args)
        res = res if isinstance(res, tuple) else (res,)
        return [r * 2 for r in res]

    # sizes 0 and 1 are specialised even under dynamic shapes: not those
    cases = [i for i, c in enumerate(entry["cases"])
             if not c["error"] and all(n >= 2 for sh in c["shapes"].values() for n in sh)]
    assert len(cases) >= 2
    want = {i: f(*sized_inputs(fname, entry, sig, i)) for i in cases}
    torch._dynamo.reset()
    counter = CompileCounter()
    cf = torch.compile(f, backend=counter, fullgraph=True, dynamic=dynamic)
    prepares = tensorc.stats()["prepares"]
    # no duck shaping: equal sizes in one case are not assumed equal later
    with torch.fx.experimental._config.patch(use_duck_shape=False):
        for idx in cases:
            for got, w in zip(cf(*sized_inputs(fname, entry, sig, idx)), want[idx]):
                torch.testing.assert_close(got, w, equal_nan=True)
    if dynamic:
        # one graph for every size, and no kernel compiled for a new size
        assert counter.frame_count == 1
    assert tensorc.stats()["prepares"] == prepares
    assert counter.op_count >= 1


def test_compile_default_backend():
    """Inductor around a tensorc operator, dynamic shapes, with a backward."""
    ops = tensorc.define("""
    def gelu_mul(float(N,M) X, float(N,M) G) -> (Y) {
        Y(i, j) = 0.5 * X(i, j) * (1.0 + erf(X(i, j) * 0.70710678)) * G(i, j)
    }""")

    def f(x, g):
        return (ops.gelu_mul(x.relu(), g) + 1).sum(dim=1)

    cf = torch.compile(f, fullgraph=True, dynamic=True)
    for n in (5, 9):
        x = torch.randn(n, 7, requires_grad=True)
        g = torch.randn(n, 7)
        torch.testing.assert_close(cf(x, g), f(x, g))
        (gx,) = torch.autograd.grad(cf(x, g).sum(), x)
        (wx,) = torch.autograd.grad(f(x, g).sum(), x)
        torch.testing.assert_close(gx, wx)


def test_compile_constants_and_out():
    """Keyword constants specialise inside a compiled function (one
    operator per value); out= is a copy in the graph."""
    ops = tensorc.define("""
    def conv(float(N,C,H,W) I, float(F,C,KH,KW) Wt, int32 s) -> (O) {
        O(n,f,h,w) +=! I(n,c,s*h+kh,s*w+kw) * Wt(f,c,kh,kw)
    }""")

    def f(x, w, o):
        a = ops.conv(x, w, s=2)
        ops.conv(x, w, s=1, out=o)
        return a, o

    cf = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    for h in (9, 12):
        x, w = torch.randn(2, 3, h, h + 1), torch.randn(4, 3, 3, 2)
        o = torch.empty(2, 4, h - 2, h)
        a, o2 = cf(x, w, o)
        assert o2 is o
        torch.testing.assert_close(a, torch.nn.functional.conv2d(x, w, stride=2))
        torch.testing.assert_close(o, torch.nn.functional.conv2d(x, w))


def test_compile_shape_error():
    """A size mismatch is found while tracing (the fake kernel's check)."""
    op = load("matmul.tc").matmul
    cf = torch.compile(lambda a, b: op(a, b), fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match=r"matmul: B has size 5 in dim 0, but K = 4 "
                                        r"\(from A dim 1\)"):
        cf(torch.randn(3, 4), torch.randn(5, 2))


def test_compile_numpy_result_matches():
    op = load("softmax.tc").softmax
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    want = op(x)
    cf = torch.compile(lambda t: op(t), fullgraph=True, backend="aot_eager")
    np.testing.assert_allclose(cf(torch.from_numpy(x)).numpy(), want, rtol=1e-5)


GROUP_NORM = """
def group_norm(float(N,G,D,S) X, float(G,D) gamma, float(G,D) beta, float eps) -> (Y) {
    mean(n, g) +=! X(n, g, d, s) / float(D * S)
    xc(n, g, d, s) = X(n, g, d, s) - mean(n, g)
    var(n, g) +=! xc(n, g, d, s) * xc(n, g, d, s) / float(D * S)
    Y(n, g, d, s) = xc(n, g, d, s) * rsqrt(var(n, g) + eps) * gamma(g, d) + beta(g, d)
}
"""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_norm(dtype):
    """The worked example of docs/python.md."""
    src = GROUP_NORM if dtype == torch.float32 else \
        GROUP_NORM.replace("float(", "double(").replace("float eps", "double eps")
    gn = tensorc.define(src).group_norm

    def group_norm(x, groups, weight, bias, eps=1e-5):
        n, c, h, w = x.shape
        y = gn(x.reshape(n, groups, c // groups, h * w),
               weight.reshape(groups, -1), bias.reshape(groups, -1), eps=eps)
        return y.reshape(n, c, h, w)

    ref = torch.nn.functional.group_norm
    x = torch.randn(2, 6, 5, 4, dtype=dtype, requires_grad=True)
    w = torch.randn(6, dtype=dtype, requires_grad=True)
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    torch.testing.assert_close(group_norm(x, 3, w, b), ref(x, 3, w, b))
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(lambda *a: group_norm(a[0], 3, a[1], a[2]), (x, w, b))
        return
    cf = torch.compile(group_norm, fullgraph=True, dynamic=True, backend="aot_eager")
    for shape, groups in (((2, 6, 5, 4), 3), ((3, 8, 7, 2), 2)):
        x = torch.randn(*shape, requires_grad=True)
        w = torch.randn(shape[1], requires_grad=True)
        b = torch.randn(shape[1], requires_grad=True)
        got = torch.autograd.grad(cf(x, groups, w, b).square().sum(), (x, w, b))
        want = torch.autograd.grad(ref(x, groups, w, b).square().sum(), (x, w, b))
        for g, r in zip(got, want):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)

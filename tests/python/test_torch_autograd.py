"""Gradients: the backward of every differentiable test program, derived by
tc_gradient and registered as an operator, checked by
torch.autograd.gradcheck in float64; hand-written backward definitions;
which gradients are computed; gradients under torch.compile.

The programs run in float64 by rewriting their float types (float, float16,
bfloat16, float32) to double; inputs come from the directives' smallest
case without empty dimensions (test_programs.make_inputs).
"""
import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tensorc  # noqa: E402
import test_programs as tp  # noqa: E402
from test_torch_programs import _context  # noqa: E402,F401  (the tests' context)

FLOAT_TYPES = re.compile(r"\b(float|float16|bfloat16|float32)\b")

# NaN has no derivative: inputs that keep these programs finite
VALUES = {
    "nan_minmax.tc:nan_prop": {"X": ("0.1", "2")},
    "nan_minmax.tc:nan_reduce": {"X": ("0.1", "1")},
    "split_reduce.tc:nan_rows": {"X": ("0.1", "1")},
}

# programs with no derivative to check, and why
NO_DERIVATIVE = {
    "split_reduce.tc:zero_divisor": "divides by zero on purpose",
}


@functools.lru_cache(maxsize=None)
def load64(fname):
    """The program in float64: (Definition, signatures)."""
    text = FLOAT_TYPES.sub("double", (tp.PROGRAMS / fname).read_text())
    return tensorc.define(text, filename=fname + " (float64)"), tp.parse_defs(text)


def smallest_case(entry):
    cases = [(i, c) for i, c in enumerate(entry["cases"])
             if not c["error"] and all(n > 0 for s in c["shapes"].values() for n in s)]
    if not cases:
        return None
    return min(cases, key=lambda ic: sum(int(np.prod(s)) for s in ic[1]["shapes"].values()))


def grad_params():
    out = []
    for fname, entry, _ in tp.CORPUS:
        key = f"{fname}:{entry['entry']}"
        sig = tp.parse_defs(FLOAT_TYPES.sub("double", (tp.PROGRAMS / fname).read_text()))
        sig = sig[entry["entry"]]
        floats_in = any(t == "float64" for _, t, _ in sig["inputs"])
        if floats_in and smallest_case(entry) and key not in NO_DERIVATIVE:
            out.append(pytest.param(fname, entry, id=key))
    return out


def float64_inputs(fname, entry):
    defn, sigs = load64(fname)
    sig = sigs[entry["entry"]]
    idx, case = smallest_case(entry)
    e = dict(entry, values=dict(entry["values"], **VALUES.get(f"{fname}:{entry['entry']}", {})))
    inputs = tp.make_inputs(fname, e, idx, case, sig)
    xs = [torch.tensor(np.array(a)) for a in inputs.values()]
    for x in xs:
        x.requires_grad_(x.dtype == torch.float64)
    return defn[entry["entry"]], xs


def prepare_all():
    """Compiles the float64 forward and backward kernels of every entry, a
    few at a time (test_torch_compile.py reuses them)."""
    def prepare(fname, entry):
        op, xs = float64_inputs(fname, entry)
        op.prepare()
        need = tuple(x.requires_grad for x in xs)
        if any(p.dtype == "float64" for p in op.outputs):
            bw, _ = op._spec().gradient(need)
            bw.prepare()

    with ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as ex:
        jobs = [ex.submit(prepare, *p.values) for p in grad_params()]
        for j in jobs:
            try:
                j.result()
            except tensorc.Error:
                pass  # the entry's test reports it


@pytest.fixture(scope="module", autouse=True)
def _prepared():
    prepare_all()


@pytest.mark.parametrize("fname,entry", grad_params())
def test_gradcheck(fname, entry):
    op, xs = float64_inputs(fname, entry)
    floats = [i for i, p in enumerate(op.outputs) if p.dtype == "float64"]
    if not floats:
        pytest.skip("no floating-point output")

    def f(*args):
        res = op(*args)
        res = res if isinstance(res, tuple) else (res,)
        return tuple(res[i] for i in floats)

    n = sum(x.numel() for x in xs if x.requires_grad)
    assert torch.autograd.gradcheck(f, xs, fast_mode=n > 200)
    # integer and bool inputs get no gradient; every float input gets one
    outs = f(*xs)
    grads = torch.autograd.grad([o.sum() for o in outs], [x for x in xs if x.requires_grad],
                                allow_unused=True)
    assert all(g is None or g.dtype == torch.float64 for g in grads)


MATMUL = """
def matmul(double(M,K) A, double(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
def matmul_grad(double(M,K) A, double(K,N) B, double(M,N) d_C) -> (d_A, d_B) {
    d_A(m, k) +=! d_C(m, r_n) * B(k, r_n)
    d_B(k, n) +=! d_C(r_m, n) * A(r_m, k)
}
"""


def rand(*shape, grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=grad)


def test_only_needed_gradients_are_derived():
    ops = tensorc.define(MATMUL.split("def matmul_grad")[0])
    op = ops.matmul
    A, B = rand(3, 4), rand(4, 5, grad=False)
    before = tensorc.stats()["gradients"]
    op(A, B).sum().backward()
    assert A.grad is not None and B.grad is None
    assert set(op._spec()._grads) == {(True, False)}
    # a second backward with the same mask derives nothing new, another mask does
    op(A, B).sum().backward()
    B.requires_grad_(True)
    op(A, B).sum().backward()
    assert set(op._spec()._grads) == {(True, False), (True, True)}
    assert tensorc.stats()["gradients"] == before + 2
    torch.testing.assert_close(B.grad, A.detach().t() @ torch.ones(3, 5, dtype=torch.float64))
    src = op.gradient_source("B")
    assert "-> (float64(K, N) d_B)" in src and "d_A" not in src


def test_hand_written_backward():
    ops = tensorc.define(MATMUL, backward={"matmul": "matmul_grad"})
    A, B = rand(5, 3), rand(3, 4)
    before = tensorc.stats()["gradients"]
    assert torch.autograd.gradcheck(ops.matmul, (A, B))
    assert tensorc.stats()["gradients"] == before  # nothing derived
    # it is also a def of its own
    dA, dB = ops.matmul_grad(A.detach(), B.detach(), torch.ones(5, 4, dtype=torch.float64))
    torch.testing.assert_close(dA, torch.ones(5, 4, dtype=torch.float64) @ B.detach().t())


def test_hand_written_backward_by_name_and_checked():
    ops = tensorc.define(MATMUL, backward="matmul_grad")
    assert torch.autograd.gradcheck(ops.matmul, (rand(2, 3), rand(3, 2)))
    bad = MATMUL.replace("d_C", "d_X")
    with pytest.raises(ValueError, match="must take"):
        tensorc.define(bad, backward={"matmul": "matmul_grad"})
    bad = MATMUL.replace("-> (d_A, d_B)", "-> (d_A, d_Q)").replace("d_B(k, n)", "d_Q(k, n)")
    with pytest.raises(ValueError, match="d_Q names no input"):
        tensorc.define(bad, backward={"matmul": "matmul_grad"})
    with pytest.raises(ValueError, match="no def"):
        tensorc.define(MATMUL, backward={"matmul": "nope"})


def test_integer_inputs_and_outputs():
    ops = tensorc.define("""
    def scale(double(N) X, int32(N) K) -> (S, int32(N) T) {
        S(i) = X(i) * double(K(i))
        T(i) = K(i) + 1
    }""")
    X = rand(6)
    K = torch.randint(-3, 4, (6,), dtype=torch.int32)
    S, T = ops.scale(X, K)
    assert S.requires_grad and not T.requires_grad
    S.sum().backward()
    torch.testing.assert_close(X.grad, K.double())
    assert ops.scale._spec()._grads.keys() == {(True, False)}


def test_constants_and_gradients():
    ops = tensorc.define("""
    def conv(double(N,C,H,W) I, double(F,C,KH,KW) Wt, int32 s) -> (O) {
        O(n,f,h,w) +=! I(n,c,s*h+kh,s*w+kw) * Wt(f,c,kh,kw)
    }""")
    X, W = rand(1, 2, 7, 6), rand(3, 2, 3, 2)
    assert torch.autograd.gradcheck(lambda x, w: ops.conv(x, w, s=2), (X, W))
    y = ops.conv(X, W, s=2)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(X, W, stride=2))


@pytest.mark.parametrize("dynamic", [False, True])
def test_backward_under_compile(dynamic):
    ops = tensorc.define("""
    def layer(double(B,I) X, double(O,I) W, double(O) b) -> (Y) {
        T(n, o) +=! X(n, i) * W(o, i)
        Y(n, o) = tanh(T(n, o) + b(o))
    }""")

    def f(x, w, b):
        return (ops.layer(x, w, b) ** 2).sum()

    cf = torch.compile(f, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (4, 7):
        args = [rand(n, 5), rand(3, 5), rand(3)]
        want = torch.autograd.grad(f(*args), args)
        got = torch.autograd.grad(cf(*args), args)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)

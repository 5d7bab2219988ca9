"""The Python API: define(), calls, outputs, out=, constants, errors, layouts,
numpy and DLPack inputs, the compile counter, threads."""
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tensorc  # noqa: E402
from test_torch_programs import _context  # noqa: E402,F401  (the tests' context)

MATMUL = """
def matmul(float(M,K) A, float(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
"""

MULTI = """
# two outputs, one typed
def stats(float(N,M) X) -> (S, int32(N) P) {
    S(i) +=! X(i, j)
    P(i) +=! X(i, j) > 0.0 ? 1 : 0
}
def axpy(float alpha, float(N) X, float(N) Y) -> (O) {
    O(i) = alpha * X(i) + Y(i)
}
def scale(int32 k, int32(N) A) -> (O) {
    O(i) = A(i) * k
}
"""

CONV = """
def conv(float(N,C,H,W) I, float(F,C,KH,KW) Wt, int32 stride) -> (O) {
    O(n,f,h,w) +=! I(n,c,stride*h+kh,stride*w+kw) * Wt(f,c,kh,kw)
}
def relu(float(N) X) -> (Y) {
    Y(i) = fmax(X(i), 0.0)
}
"""


@pytest.fixture(scope="module")
def mm():
    return tensorc.define(MATMUL).matmul


@pytest.fixture(scope="module")
def multi():
    return tensorc.define(MULTI)


# ---- define ----

def test_define_checks_now():
    with pytest.raises(tensorc.Error) as ei:
        tensorc.define("def f(float(N) A) -> (B) {\n    B(i) = A(i) + C(i)\n}\n",
                       filename="bad.tc")
    e = ei.value
    assert isinstance(e, ValueError)
    assert (e.line, e.col, e.code) == (2, 19, "program")
    assert e.source_line == "    B(i) = A(i) + C(i)"
    assert str(e).startswith("bad.tc:2:19: error: ")
    assert str(e).endswith("    B(i) = A(i) + C(i)\n                  ^")
    assert "C" in e.message


def test_definition_lookup(multi):
    assert multi.names == ("stats", "axpy", "scale")
    assert multi["axpy"] is multi.axpy
    assert [op.name for op in multi] == ["stats", "axpy", "scale"]
    with pytest.raises(AttributeError, match="no def 'nope'.*stats, axpy, scale"):
        multi.nope
    assert multi.axpy.signature == "axpy(float32 alpha, float32(N) X, float32(N) Y) -> (O)"
    assert "int32(N) P" in multi.stats.signature


def test_decorator():
    @tensorc.define
    def add(a, b):
        """def add(float(N) A, float(N) B) -> (C) { C(i) = A(i) + B(i) }"""

    assert isinstance(add, tensorc.Op)
    x = torch.arange(4.0)
    torch.testing.assert_close(add(x, x), 2 * x)


# ---- outputs ----

def test_outputs_in_declared_order(multi):
    X = torch.randn(5, 7)
    S, P = multi.stats(X)
    torch.testing.assert_close(S, X.sum(1))
    assert P.dtype == torch.int32
    assert torch.equal(P, (X > 0).sum(1).int())
    assert S.is_contiguous() and P.is_contiguous()


def test_single_output_is_a_tensor(mm):
    A, B = torch.randn(3, 4), torch.randn(4, 5)
    C = mm(A, B)
    assert isinstance(C, torch.Tensor)
    torch.testing.assert_close(C, A @ B)


def test_out(mm, multi):
    A, B = torch.randn(3, 4), torch.randn(4, 5)
    C = torch.full((3, 5), float("nan"))
    assert mm(A, B, out=C) is C
    torch.testing.assert_close(C, A @ B)
    # a transposed output view
    Ct = torch.empty(5, 3).t()
    mm(A, B, out=Ct)
    torch.testing.assert_close(Ct, A @ B)
    # several outputs
    X = torch.randn(4, 6)
    outs = (torch.empty(4), torch.empty(4, dtype=torch.int32))
    assert multi.stats(X, out=outs) is outs
    torch.testing.assert_close(outs[0], X.sum(1))


def test_out_errors(mm, multi):
    A, B = torch.randn(3, 4), torch.randn(4, 5)
    with pytest.raises(tensorc.Error, match=r"matmul: output C has size 4 in dim 1, "
                                            r"expected 5 \(inferred\)"):
        mm(A, B, out=torch.empty(3, 4))
    with pytest.raises(tensorc.Error, match="matmul: C has dtype float64, expected float32"):
        mm(A, B, out=torch.empty(3, 5, dtype=torch.float64))
    with pytest.raises(tensorc.Error, match="output C overlaps input A"):
        big = torch.randn(3, 5)
        mm(big[:, :4], B, out=big)
    with pytest.raises(TypeError, match="stats has 2 outputs"):
        multi.stats(torch.randn(2, 2), out=torch.empty(2))
    ro = np.empty((3, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(tensorc.Error, match="output C is not writable"):
        mm(A.numpy(), B.numpy(), out=ro)


# ---- errors name the parameter and the dimension ----

def test_size_mismatch(mm):
    with pytest.raises(tensorc.Error) as ei:
        mm(torch.randn(8, 37), torch.randn(53, 4))
    assert str(ei.value) == "matmul: B has size 53 in dim 0, but K = 37 (from A dim 1)"
    assert ei.value.code == "argument" and ei.value.line is None


def test_dtype_rank_device(mm):
    with pytest.raises(tensorc.Error, match="matmul: A has dtype float64, expected float32"):
        mm(torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2))
    with pytest.raises(tensorc.Error, match="matmul: B has rank 1, expected 2"):
        mm(torch.randn(2, 2), torch.randn(2))
    with pytest.raises(tensorc.Error, match="matmul: A has dtype complex64, which tensorc "
                                            "does not support"):
        mm(torch.randn(2, 2, dtype=torch.complex64), torch.randn(2, 2))
    with pytest.raises(tensorc.Error, match="matmul: A is on device meta: only CPU tensors"):
        # the kernel itself (the operator's CPU implementation)
        mm._spec().run(0, (torch.empty(2, 2, device="meta"), torch.randn(2, 2)), None, False)
    # meta tensors take the operator's fake kernel: shapes without data
    C = mm(torch.empty(7, 3, device="meta"), torch.empty(3, 5, device="meta"))
    assert C.device.type == "meta" and C.shape == (7, 5)


class CudaArray:
    """A DLPack producer on a CUDA device."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kw):
        raise AssertionError("must not be exported")


def test_cuda_is_a_clear_error(mm):
    with pytest.raises(tensorc.Error, match=r"matmul: A is a CUDA array from DLPack: pass CUDA "
                                            r"data as torch tensors \(torch.from_dlpack\)"):
        mm(CudaArray(), torch.randn(2, 2))


def test_argument_count_and_names(mm, multi):
    with pytest.raises(TypeError, match=r"matmul takes 2 inputs \(A, B\), got 3"):
        mm(torch.randn(2, 2), torch.randn(2, 2), torch.randn(2, 2))
    with pytest.raises(TypeError, match=r"matmul: Q is no input of this definition "
                                        r"\(inputs: A, B\)"):
        mm(torch.randn(2, 2), Q=1)
    with pytest.raises(TypeError, match="matmul: A must be a tensor or an array, got str"):
        mm("x", torch.randn(2, 2))
    with pytest.raises(tensorc.Error, match="matmul: A must be a tensor of rank 2, got a "
                                            "float"):
        mm(1.5, torch.randn(2, 2))
    with pytest.raises(tensorc.Error, match="scale: k is int32; got a float"):
        multi.scale(2.5, torch.arange(3, dtype=torch.int32))
    with pytest.raises(tensorc.Error, match=r"scale: k = 4294967296 does not fit int32"):
        multi.scale(2 ** 32, torch.arange(3, dtype=torch.int32))


def test_runtime_error_is_located():
    ops = tensorc.define("def gather(float(N) E, int32(M) I) -> (O) { O(i) = E(I(i)) }",
                         filename="g.tc")
    with pytest.raises(tensorc.Error) as ei:
        ops.gather(torch.randn(4), torch.tensor([0, 9], dtype=torch.int32))
    e = ei.value
    assert e.code == "runtime" and e.line == 1
    assert "index 9 is out of range for E dim 0 (size 4)" in str(e)


def test_failed_compile_raises():
    """The C compiler failing is an error, not a crash."""
    ctx = tensorc._api._bind(tensorc._C.Context(cc="false", disk_cache=False))
    ops = tensorc.define(MATMUL, context=ctx)
    with pytest.raises(tensorc.Error) as ei:
        ops.matmul(torch.randn(2, 2), torch.randn(2, 2))
    assert ei.value.code == "compiler"


# ---- layouts, numpy, DLPack ----

def test_non_contiguous_inputs(mm):
    A, B = torch.randn(6, 5), torch.randn(5, 4)
    want = A @ B
    torch.testing.assert_close(mm(A.t().contiguous().t(), B), want)        # column-major
    big = torch.randn(12, 15)
    big[::2, ::3] = A
    torch.testing.assert_close(mm(big[::2, ::3], B), want)                 # sliced
    row = torch.randn(1, 5)
    torch.testing.assert_close(mm(row.expand(6, 5), B), row.expand(6, 5) @ B)  # stride 0
    An = A.numpy()
    torch.testing.assert_close(torch.from_numpy(mm(An[::-1], B.numpy())),
                               torch.from_numpy(An[::-1].copy()) @ B)      # negative strides


def test_numpy_in_numpy_out(multi):
    X = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    S, P = multi.stats(X)
    assert isinstance(S, np.ndarray) and S.dtype == np.float32
    np.testing.assert_allclose(S, X.sum(1), rtol=1e-5)
    assert P.dtype == np.int32


class DLPackOnly:
    """Exposes a torch tensor through DLPack only."""

    def __init__(self, t):
        self.t = t

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()

    def __dlpack__(self, **kw):
        return self.t.__dlpack__(**kw)


def test_dlpack_inputs_and_outputs_zero_copy(mm):
    A, B = torch.randn(3, 4), torch.randn(4, 5)
    C = torch.zeros(3, 5)
    mm(DLPackOnly(A.t().contiguous().t()), DLPackOnly(B), out=DLPackOnly(C))
    torch.testing.assert_close(C, A @ B)  # written in place: no copy


# ---- scalars: run-time and compile-time ----

def test_runtime_scalars_share_one_kernel(multi):
    X, Y = torch.randn(5), torch.randn(5)
    before = tensorc.stats()
    for alpha in (0.5, 2.0, torch.tensor(-1.0)):
        torch.testing.assert_close(multi.axpy(alpha, X, Y), alpha * X + Y)
    after = tensorc.stats()
    assert after["specializations"] == before["specializations"]
    assert after["prepares"] - before["prepares"] <= 1


def test_keyword_constants_specialise_once_per_value(multi):
    X, Y = torch.randn(5), torch.randn(5)
    before = tensorc.stats()
    for alpha in (3.0, 3.0, 4.0, 3.0):
        torch.testing.assert_close(multi.axpy(X, Y, alpha=alpha), alpha * X + Y)
    after = tensorc.stats()
    assert after["specializations"] - before["specializations"] == 2
    assert after["prepares"] - before["prepares"] == 2
    # the constant is gone from the specialised signature
    assert multi.axpy.specialize(alpha=3.0).signature == \
        "axpy(float32(N) X, float32(N) Y) -> (O)"
    # tensors may be passed by keyword too
    torch.testing.assert_close(multi.axpy(X=X, Y=Y, alpha=1.0), X + Y)


def test_constants_make_ranges_inferable():
    ops = tensorc.define(CONV)
    X, W = torch.randn(2, 3, 11, 9), torch.randn(4, 3, 3, 2)
    for s in (1, 2, 3):
        torch.testing.assert_close(ops.conv(X, W, stride=s),
                                   torch.nn.functional.conv2d(X, W, stride=s),
                                   rtol=1e-4, atol=1e-5)
    # the other def of the source works as usual
    torch.testing.assert_close(ops.relu(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))
    with pytest.raises(tensorc.Error) as ei:
        ops.conv(X, W, 2)
    assert "cannot infer the range of index 'h'" in str(ei.value)
    assert "pass stride=... by keyword" in str(ei.value)
    assert ei.value.line == 3


def test_bad_constants(multi):
    with pytest.raises(TypeError, match="scale: k is int32; got the float 2.5"):
        multi.scale(torch.arange(3, dtype=torch.int32), k=2.5)
    with pytest.raises(tensorc.Error, match="k = 2147483648 does not fit int32"):
        multi.scale(torch.arange(3, dtype=torch.int32), k=2 ** 31)


# ---- compiled once per program and constants ----

def test_compile_counter():
    ops = tensorc.define("def twice(float(N,M) X) -> (Y) { Y(i,j) = X(i,j) * 2.0 }")
    s0 = tensorc.stats()
    ops.twice(torch.randn(3, 4))
    s1 = tensorc.stats()
    assert s1["prepares"] == s0["prepares"] + 1
    assert s1["kernels_compiled"] + s1["kernels_loaded"] + s1["kernels_reused"] == \
        s0["kernels_compiled"] + s0["kernels_loaded"] + s0["kernels_reused"] + 1
    for shape in [(3, 4), (17, 2), (1, 1), (0, 5), (64, 33)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(ops.twice(x), 2 * x)
        torch.testing.assert_close(ops.twice(x.t()), 2 * x.t())
    ops.twice(np.ones((2, 2), np.float32))
    assert tensorc.stats() == s1  # nothing compiled for new sizes or layouts
    # the same source defined again: loaded from the memory cache, not compiled
    tensorc.define("def twice(float(N,M) X) -> (Y) { Y(i,j) = X(i,j) * 2.0 }").twice(x)
    s2 = tensorc.stats()
    assert s2["kernels_compiled"] == s1["kernels_compiled"]
    assert s2["kernels_reused"] == s1["kernels_reused"] + 1


# ---- the torch path and threads ----

def test_requires_grad_takes_the_operator(mm):
    A = torch.randn(3, 4, requires_grad=True)
    C = mm(A, torch.randn(4, 2))
    assert C.grad_fn is not None
    with torch.no_grad():
        assert mm(A, torch.randn(4, 2)).grad_fn is None


def test_releases_the_gil():
    """While one thread runs long kernels, another runs Python: the longest
    pause it sees is far shorter than one kernel call."""
    ops = tensorc.define("""
    def slow(double(N) X) -> (Y) {
        Y(i) +=! sin(X(j) * X(i))
    }""")
    n = 2000
    while True:
        x = torch.randn(n, dtype=torch.float64)
        t = time.perf_counter()
        ops.slow(x)
        call = time.perf_counter() - t
        if call > 0.1 or n > 64000:
            break
        n *= 2
    done = threading.Event()

    def run():
        t = time.perf_counter()
        while time.perf_counter() - t < 4 * call:
            ops.slow(x)
        done.set()

    th = threading.Thread(target=run)
    ticks = [time.perf_counter()]
    th.start()
    while not done.is_set():
        time.sleep(0.001)
        ticks.append(time.perf_counter())
    th.join()
    longest = max(b - a for a, b in zip(ticks, ticks[1:]))
    assert longest < call / 2, (longest, call)


def test_concurrent_calls(mm):
    A = [torch.randn(20, 30) for _ in range(8)]
    B = torch.randn(30, 10)
    res = [None] * 8

    def work(i):
        for _ in range(20):
            res[i] = mm(A[i], B)

    ths = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    for a, r in zip(A, res):
        torch.testing.assert_close(r, a @ B)


def test_inspection(mm):
    assert "tc_kernel" in mm.emit()
    assert "output C: float32(M, N) = (8, 4)" in mm.explain((8, 37), (37, 4))
    assert mm.infer_shapes((8, 37), (37, 4)) == ((8, 4),)
    how, seconds, path = mm.prepare()
    assert how in ("compiled", "memory", "disk") and seconds >= 0


def test_decorator_docs_example():
    @tensorc.define
    def rms(x):
        """
        def rms(float(N,D) X) -> (R) {
            R(n) +=! X(n, d) * X(n, d) / float(D)
            R(n) = sqrt(R(n))
        }
        """

    x = torch.randn(4, 9)
    torch.testing.assert_close(rms(x), x.square().mean(1).sqrt())

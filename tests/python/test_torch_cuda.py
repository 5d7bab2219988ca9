"""The Python package on PyTorch CUDA tensors (issue 3 and 4): every entry
of tests/programs/*.tc on the GPU against the numpy references, gradients
(gradcheck in float64 on CUDA), opcheck, torch.compile(fullgraph=True) with
static and dynamic shapes, views, streams, a second device and the errors
of mixed devices.

Skipped without a CUDA device (CI has none); tests/gpu/run.sh runs it on
the GPU machine.  CUDA runs compile with NVRTC: no C compiler is involved.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import refs  # noqa: E402
import tensorc  # noqa: E402
import test_programs as tp  # noqa: E402
import test_torch_autograd as tgrad  # noqa: E402
from test_torch_compile import ALL, first_case, representative, sized_inputs  # noqa: E402
from test_torch_programs import _context, check_outputs, load, to_numpy, to_torch  # noqa: E402,F401

CUDA = torch.device("cuda")


def to_cuda(a, dtype, layout):
    """A numpy input as a CUDA tensor of its TC dtype: 0 contiguous,
    1 column-major storage, 2 every other element of a larger tensor."""
    t = to_torch(a, dtype, 0)
    if layout == 1 and t.dim() >= 2:
        r = tuple(reversed(range(t.dim())))
        return t.permute(*r).contiguous().to(CUDA).permute(*r)
    if layout == 2 and t.dim() >= 1:
        big = torch.zeros([2 * n + 1 for n in t.shape], dtype=t.dtype, device=CUDA)
        v = big[tuple(slice(1, None, 2) for _ in t.shape)]
        v.copy_(t)
        return v
    return t.to(CUDA)


def to_host(x):
    if isinstance(x, tuple):
        return tuple(to_host(y) for y in x)
    assert x.device.type == "cuda", f"an output on {x.device}"
    assert x.is_contiguous()
    return x.cpu()


@pytest.mark.parametrize("fname,entry,sig,idx,case", tp.case_params())
def test_program(fname, entry, sig, idx, case):
    """Every case on CUDA tensors in one of three layouts, against the numpy
    reference (or the CPU kernel where a program has none); rank-0 inputs
    as Python numbers in every third case (0-d tensors made on the
    device)."""
    key = f"{fname}:{entry['entry']}"
    op = load(fname)[entry["entry"]]
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    dtypes = {n: t for n, t, _ in sig["inputs"]}
    layout = idx % 3
    args = [a.item() if layout == 1 and a.ndim == 0 else to_cuda(a, dtypes[n], layout)
            for n, a in inputs.items()]
    if case["error"]:
        with pytest.raises(tensorc.Error) as ei:
            op(*args)
            torch.cuda.synchronize()
        assert ei.value.code in ("runtime", "argument"), str(ei.value)
        return
    if key in refs.REFS:
        want = tp.normalize_outputs(refs.REFS[key](**inputs), sig["outputs"])
    else:  # a program without a numpy reference: the CPU kernel's result
        res = op(*[to_torch(a, dtypes[n], 0) for n, a in inputs.items()])
        want = [to_numpy(r) for r in (res if isinstance(res, tuple) else (res,))]
    got = op(*args)
    torch.cuda.synchronize()
    check_outputs(f"{key} [cuda layout {layout}]", sig, to_host(got), want, entry["tol"])


GRAD_FILES = ("matmul.tc", "softmax.tc", "layernorm.tc", "conv2d.tc", "pooling.tc",
              "gather.tc", "tc_batchnorm.tc", "attention.tc", "blur_clamp.tc")


def grad_cuda_params():
    return [p for p in tgrad.grad_params() if p.values[0] in GRAD_FILES]


@pytest.mark.parametrize("fname,entry", grad_cuda_params())
def test_gradcheck(fname, entry):
    op, xs = tgrad.float64_inputs(fname, entry)
    xs = [x.detach().to(CUDA).requires_grad_(x.requires_grad) for x in xs]
    floats = [i for i, p in enumerate(op.outputs) if p.dtype == "float64"]
    if not floats:
        pytest.skip("no floating-point output")

    def f(*args):
        res = op(*args)
        res = res if isinstance(res, tuple) else (res,)
        return tuple(res[i] for i in floats)

    n = sum(x.numel() for x in xs if x.requires_grad)
    assert torch.autograd.gradcheck(f, xs, fast_mode=n > 200)
    outs = f(*xs)
    assert all(o.device.type == "cuda" for o in outs)
    grads = torch.autograd.grad([o.sum() for o in outs], [x for x in xs if x.requires_grad],
                                allow_unused=True)
    assert all(g is None or g.device.type == "cuda" for g in grads)


def opcheck_cuda_params():
    return [pytest.param(f, e, s, id=f"{f}:{e['entry']}") for f, e, s in tp.CORPUS
            if f in GRAD_FILES + ("scalars.tc", "dtypes.tc") and first_case(e)]


@pytest.mark.parametrize("fname,entry,sig", opcheck_cuda_params())
def test_opcheck(fname, entry, sig):
    op = load(fname)[entry["entry"]]
    idx, case = first_case(entry)
    nonan = tgrad.VALUES.get(f"{fname}:{entry['entry']}", {})
    entry = dict(entry, values=dict(entry["values"], **nonan))
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    dtypes = {n: t for n, t, _ in sig["inputs"]}
    args = tuple(to_cuda(a, dtypes[n], 0) for n, a in inputs.items())
    torch.library.opcheck(op.torch_op, args, test_utils=ALL)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("fname,entry,sig", [pytest.param(*x, id=f"{x[0]}:{x[1]['entry']}")
                                             for x in representative()])
def test_compile(fname, entry, sig, dynamic):
    """torch.compile(fullgraph=True) with Inductor around the operator on
    CUDA tensors: same results as eager, one graph for every size when
    dynamic, no kernel prepared again for a new size."""
    op = load(fname)[entry["entry"]]

    def f(*args):
        res = op(*args)
        res = res if isinstance(res, tuple) else (res,)
        return [r * 2 for r in res]

    cases = [i for i, c in enumerate(entry["cases"])
             if not c["error"] and all(n >= 2 for sh in c["shapes"].values() for n in sh)]
    inputs = {i: [x.to(CUDA) for x in sized_inputs(fname, entry, sig, i)] for i in cases}
    want = {i: f(*inputs[i]) for i in cases}
    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, dynamic=dynamic)
    with torch.fx.experimental._config.patch(use_duck_shape=False):
        for i in cases:
            cf(*inputs[i])  # compiles the graph
        prepares = tensorc.stats()["prepares"]
        for i in cases:
            for got, w in zip(cf(*inputs[i]), want[i]):
                assert got.device.type == "cuda"
                torch.testing.assert_close(got, w, equal_nan=True)
    assert tensorc.stats()["prepares"] == prepares


# ---- the things a user meets on the GPU ----

SRC = """
def matmul(float(M,K) A, float(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
def softmax(float(N,D) X) -> (O) {
    mx(n) max=! X(n,d)
    e(n,d) = exp(X(n,d) - mx(n))
    s(n) +=! e(n,d)
    O(n,d) = e(n,d) / s(n)
}
def axpy(float a, float(N) X, float(N) Y) -> (Z) {
    Z(i) = a * X(i) + Y(i)
}
def gather(float(V,D) E, int64(B) Idx) -> (O) {
    O(b,d) = E(Idx(b), d)
}
"""


@pytest.fixture(scope="module")
def ops():
    return tensorc.define(SRC, filename="cuda_api.tc")


def test_outputs_on_the_inputs_device_and_views(ops):
    a = torch.randn(64, 48, device=CUDA).t()        # transposed
    b = torch.randn(64, 100, device=CUDA)[:, ::2]   # every other column
    c = ops.matmul(a, b)
    assert c.device == a.device and c.is_contiguous() and c.shape == (48, 50)
    torch.testing.assert_close(c, (a.double() @ b.double()).float(), rtol=1e-4, atol=1e-4)
    big = torch.zeros(48, 100, device=CUDA)
    r = ops.matmul(a, b, out=big[:, 1::2])          # a strided output view
    torch.testing.assert_close(big[:, 1::2], c, rtol=0, atol=0)
    assert torch.all(big[:, 0::2] == 0) and r is not None


def test_numbers_and_keyword_constants(ops):
    x, y = torch.randn(1000, device=CUDA), torch.randn(1000, device=CUDA)
    torch.testing.assert_close(ops.axpy(2.5, x, y), 2.5 * x + y)
    torch.testing.assert_close(ops.axpy(x, y, a=-1.0), y - x)   # a compile-time constant
    torch.testing.assert_close(ops.axpy(torch.tensor(3.0, device=CUDA), x, y), 3 * x + y)


def test_mixed_devices_are_named_errors(ops):
    x = torch.randn(100, device=CUDA)
    with pytest.raises(tensorc.Error, match="one device"):
        ops.axpy(1.0, x, x.cpu())
    with pytest.raises(tensorc.Error, match="one device"):
        ops.axpy(1.0, x, x, out=torch.empty(100))
    with pytest.raises(tensorc.Error, match="one device"):    # through the operator
        ops.axpy.torch_op(torch.tensor(1.0, device=CUDA), x, x.cpu())
    xg = x.clone().requires_grad_()
    with pytest.raises(tensorc.Error, match="one device"):    # through autograd
        ops.axpy(1.0, xg, x.cpu())


def test_index_out_of_range_on_the_gpu(ops):
    e = torch.randn(10, 4, device=CUDA)
    torch.testing.assert_close(ops.gather(e, torch.tensor([0, 9, 3], device=CUDA)),
                               e[[0, 9, 3]])
    with pytest.raises(tensorc.Error, match="10"):
        ops.gather(e, torch.tensor([0, 10, 3], device=CUDA))


def test_current_stream(ops):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x = torch.randn(512, 4096, device=CUDA)
        out = ops.softmax(x)        # queued on s, after x's creation
        want = torch.softmax(x, -1)
    s.synchronize()
    torch.testing.assert_close(out, want)


def test_autograd_on_cuda(ops):
    a = torch.randn(30, 20, device=CUDA, requires_grad=True)
    b = torch.randn(20, 10, device=CUDA, requires_grad=True)
    g = torch.randn(30, 10, device=CUDA)
    (ga, gb) = torch.autograd.grad(ops.matmul(a, b), (a, b), g)
    (wa, wb) = torch.autograd.grad(a @ b, (a, b), g)
    assert ga.device.type == "cuda"
    torch.testing.assert_close(ga, wa, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb, wb, rtol=1e-4, atol=1e-4)


def test_no_recompile_for_new_sizes(ops):
    ops.softmax(torch.randn(3, 7, device=CUDA))
    before = tensorc.stats()
    for shape in ((5, 9), (100, 3000), (1, 1)):
        x = torch.randn(*shape, device=CUDA)
        torch.testing.assert_close(ops.softmax(x), torch.softmax(x, -1))
    after = tensorc.stats()
    assert after["prepares"] == before["prepares"]
    assert after["kernels_compiled"] == before["kernels_compiled"]


def test_compile_inductor_with_backward(ops):
    def f(x, w):
        return (ops.matmul(x.relu(), w) + 1).sum(dim=1)

    cf = torch.compile(f, fullgraph=True, dynamic=True)
    w = torch.randn(16, 8, device=CUDA)
    for n in (5, 9):
        x = torch.randn(n, 16, device=CUDA, requires_grad=True)
        torch.testing.assert_close(cf(x, w), f(x, w), rtol=1e-4, atol=1e-4)
        (gx,) = torch.autograd.grad(cf(x, w).sum(), x)
        (wx,) = torch.autograd.grad(f(x, w).sum(), x)
        torch.testing.assert_close(gx, wx, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU: no cuda:1")
def test_second_device(ops):
    x = torch.randn(100, 300, device="cuda:1")
    out = ops.softmax(x)            # the current device is still cuda:0
    assert out.device == x.device
    torch.testing.assert_close(out, torch.softmax(x, -1))
    with pytest.raises(tensorc.Error, match="one device"):
        ops.matmul(torch.randn(4, 4, device="cuda:0"), torch.randn(4, 4, device="cuda:1"))


def test_numpy_scalars_do_not_leak_to_the_gpu(ops):
    """A numpy array with a CUDA tensor is a device mix, named."""
    x = torch.randn(8, device=CUDA)
    with pytest.raises(tensorc.Error, match="one device"):
        ops.axpy(1.0, x, np.ones(8, dtype=np.float32))


def test_offsets_past_int32_take_the_wide_kernels():
    """A view whose offsets do not fit in int32 (2^31 + 1 columns, expanded
    from one element: no memory) runs the kernels' 64-bit variant; the
    other tests run the 32-bit one."""
    rowsum = tensorc.define("def rowsum(double(N,M) A) -> (S) { S(i) +=! A(i, j) }").rowsum
    n = 2 ** 31 + 1
    a = torch.full((1, 1), 0.5, dtype=torch.float64, device=CUDA).expand(3, n)
    assert rowsum(a).tolist() == [0.5 * n] * 3
    b = torch.full((3, 5), 0.5, dtype=torch.float64, device=CUDA)
    assert rowsum(b).tolist() == [2.5] * 3

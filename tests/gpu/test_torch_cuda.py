"""TC programs on PyTorch CUDA tensors through libtensorc's C API (DLPack
structs, PyTorch's current stream): results against PyTorch, views, a second
device, streams and the errors a user can hit.  Run by tests/gpu/run.sh on a
GPU machine; skipped without CUDA."""

import pytest
import torch

from tc_ctypes import TARGET_CUDA, Lib, TensorcError

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SRC = """
def softmax(float(N,D) X) -> (O) {
    mx(n) max=! X(n,d)
    e(n,d) = exp(X(n,d) - mx(n))
    s(n) +=! e(n,d)
    O(n,d) = e(n,d) / s(n)
}
def layernorm(float(N,D) X, float(D) gamma, float(D) beta) -> (Y) {
    mean(n) +=! X(n,d) / float(D)
    xc(n,d) = X(n,d) - mean(n)
    var(n) +=! xc(n,d) * xc(n,d) / float(D)
    Y(n,d) = xc(n,d) * rsqrt(var(n) + 1e-5) * gamma(d) + beta(d)
}
def matmul(float(M,K) A, float(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
def matmul_bf16(bfloat16(M,K) A, bfloat16(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
def gather(float(V,D) E, int64(B) Idx) -> (O) {
    O(b,d) = E(Idx(b), d)
}
def total(float(N) A) -> (s) {
    s +=! A(i)
}
def add(float(N) A, float(N) B) -> (C) {
    C(i) = A(i) + B(i)
}
"""


@pytest.fixture(scope="module")
def prog():
    lib = Lib()
    p = lib.compile(SRC, "test_torch_cuda.tc")
    yield p
    del p
    lib.close()


def close(a, b, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(a.float().cpu(), b.float().cpu(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(3, 5), (64, 1000), (7, 8192), (3, 50000)])  # last: row not staged
def test_softmax(prog, shape):
    x = torch.randn(shape, device="cuda") * 4
    (out,) = prog.run("softmax", [x])
    close(out, torch.softmax(x, -1))


def test_layernorm(prog):
    x = torch.randn(300, 1024, device="cuda")
    g, b = torch.randn(1024, device="cuda"), torch.randn(1024, device="cuda")
    (out,) = prog.run("layernorm", [x, g, b])
    close(out, torch.nn.functional.layer_norm(x, (1024,), g, b, eps=1e-5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mnk", [(1, 1, 1), (33, 65, 17), (256, 128, 512)])
def test_matmul(prog, mnk):
    m, n, k = mnk
    a, b = torch.randn(m, k, device="cuda"), torch.randn(k, n, device="cuda")
    (out,) = prog.run("matmul", [a, b])
    close(out, (a.double() @ b.double()).float(), rtol=1e-4, atol=1e-4)


def test_matmul_bf16(prog):
    a = torch.randn(96, 200, device="cuda").bfloat16()
    b = torch.randn(200, 72, device="cuda").bfloat16()
    (out,) = prog.run("matmul_bf16", [a, b])
    assert out.dtype == torch.bfloat16
    close(out, (a.double() @ b.double()), rtol=2e-2, atol=2e-2)


def test_views_in_and_out(prog):
    a = torch.randn(64, 48, device="cuda").t()       # transposed: strides (1, 48)
    b = torch.randn(64, 100, device="cuda")[:, ::2]  # every other column
    big = torch.zeros(48, 100, device="cuda")
    out = big[:, 1::2]                               # a strided output view
    prog.run("matmul", [a, b], [out])
    close(out, (a.double() @ b.double()).float(), rtol=1e-4, atol=1e-4)
    assert torch.all(big[:, 0::2] == 0)              # nothing outside it written


def test_full_reduction(prog):
    a = torch.rand(1 << 20, device="cuda")
    (s,) = prog.run("total", [a])
    close(s, a.double().sum(), rtol=1e-5, atol=1e-3)


def test_gather_and_its_error(prog):
    e = torch.randn(10, 4, device="cuda")
    idx = torch.tensor([0, 9, 3], device="cuda")
    (out,) = prog.run("gather", [e, idx])
    close(out, e[idx])
    bad = torch.tensor([0, 10, 3], device="cuda")
    with pytest.raises(TensorcError, match="index 10 is out of range for E dim 0"):
        prog.run("gather", [e, bad])


def test_tensors_on_two_devices_are_an_error(prog):
    a = torch.randn(8, device="cuda")
    with pytest.raises(TensorcError, match="one device"):
        prog.run("add", [a, a.cpu()], [torch.empty(8, device="cuda")])


def test_cpu_tensors_staged_through_the_gpu(prog):
    a, b = torch.randn(1000), torch.randn(1000)
    (c,) = prog.run("add", [a, b], target=TARGET_CUDA)
    assert c.device.type == "cpu"
    close(c, a + b, rtol=0, atol=0)


def test_current_stream(prog):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x = torch.randn(512, 4096, device="cuda")
        (out,) = prog.run("softmax", [x])  # queued on s, after x's creation
        want = torch.softmax(x, -1)
    s.synchronize()
    close(out, want)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU")
def test_second_device(prog):
    x = torch.randn(100, 300, device="cuda:1")
    with torch.cuda.device(1):
        (out,) = prog.run("softmax", [x])
    assert out.device == x.device
    close(out, torch.softmax(x, -1))

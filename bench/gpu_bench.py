#!/usr/bin/env python3
"""bench/gpu_bench.py — issue 4's GPU benchmark: tensorc's CUDA kernels
against PyTorch eager and torch.compile on one GPU, in one run.

For each workload: median milliseconds (CUDA events around each call, after
warm-up) and % of roofline, where the floor is max(flops / peak flops,
bytes / peak bandwidth) with both peaks measured in this same run (a large
device-to-device copy; a large cuBLAS matmul in the workload's dtype), and
tensorc's compile time (TC source to a loaded CUDA module, cold cache).
"GPU ms" is tensorc's GPU work per call alone (kernels and memsets, from
PyTorch's profiler): where it is well under "tensorc ms", the call is bound
by the host (argument binding, launches), not by its kernels.
f32 means IEEE f32 everywhere: TF32 is off for cuBLAS and cuDNN.  Every
tensorc output is checked against PyTorch's.

tensorc is called through its C API (tests/gpu/tc_ctypes.py: DLPack structs
over the torch tensors, PyTorch's current stream), so this needs only the
built library:

    python3 bench/gpu_bench.py --lib build/libtensorc.so --out DIR [--deadline S] [--only a,b]

Results are rewritten after every workload (DIR/bench.json, DIR/bench.md),
so a run cut short keeps what it measured; --deadline (seconds) makes the
script skip what no longer fits instead of being killed.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))
from tc_ctypes import Lib  # noqa: E402

F32, BF16 = 4, 2

GELU = """
def gelu_mul_add(float(N) X, float(N) Y, float(N) Z) -> (O) {
    O(i) = 0.5 * X(i) * (1.0 + erf(X(i) * 0.70710678118654752)) * Y(i) + Z(i)
}"""
SOFTMAX = """
def softmax(float(N,D) X) -> (O) {
    mx(n) max=! X(n,d)
    e(n,d) = exp(X(n,d) - mx(n))
    s(n) +=! e(n,d)
    O(n,d) = e(n,d) / s(n)
}"""
LAYERNORM = """
def layernorm(float(N,D) X, float(D) gamma, float(D) beta) -> (Y) {
    mean(n) +=! X(n,d) / float(D)
    xc(n,d) = X(n,d) - mean(n)
    var(n) +=! xc(n,d) * xc(n,d) / float(D)
    Y(n,d) = xc(n,d) * rsqrt(var(n) + 1e-5) * gamma(d) + beta(d)
}"""
MATMUL = """
def matmul(float(M,K) A, float(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}"""
MATMUL_BF16 = """
def matmul_bf16(bfloat16(M,K) A, bfloat16(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}"""
MATMUL_NT = """
def matmul_nt(float(M,K) A, float(N,K) B) -> (C) {
    C(m,n) +=! A(m,k) * B(n,k)
}"""
BMM = """
def bmm(float(Bt,M,K) A, float(Bt,K,N) B) -> (C) {
    C(b,m,n) +=! A(b,m,k) * B(b,k,n)
}"""
CONV = """
def conv3x3(float(N,C,H,W) I : constant(0) [H,W], float(F,C,3,3) Wt) -> (O) {
    O(n,f,h,w) +=! I(n,c,h+kh-1,w+kw-1) * Wt(f,c,kh,kw) where h in 0:H, w in 0:W
}"""
GROUP_CONV = """
def group_conv3x3(float(N,G,C,H,W) I : constant(0) [H,W], float(G,F,C,3,3) Wt) -> (O) {
    O(n,g,f,h,w) +=! I(n,g,c,h+kh-1,w+kw-1) * Wt(g,f,c,kh,kw) where h in 0:H, w in 0:W
}"""
BLUR = """
def blur3x3(float(H,W) I : clamp) -> (O) {
    T(y,x) = (I(y-1,x-1) + I(y-1,x) + I(y-1,x+1)) * 0.33333334 where y in 0:H+2, x in 0:W
    O(y,x) = (T(y,x) + T(y+1,x) + T(y+2,x)) * 0.33333334 where y in 0:H
}"""
MLP = """
def mlp2(float(B,I) X, float(H,I) W1, float(H) B1, float(O,H) W2, float(O) B2) -> (Y) {
    Hd(b,h) +=! X(b,i) * W1(h,i)
    Hd(b,h) = fmax(Hd(b,h) + B1(h), 0.0)
    Y(b,o) +=! Hd(b,h) * W2(o,h)
    Y(b,o) = Y(b,o) + B2(o)
}"""


def nbytes(shapes, size=F32):
    return float(sum(size * math.prod(s) for s in shapes))


def blur_torch(x):
    return F.avg_pool2d(F.pad(x[None, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0, 0]


def group_conv_torch(i, w):
    n, g, c, h, wd = i.shape
    f = w.shape[1]
    o = F.conv2d(i.reshape(n, g * c, h, wd), w.reshape(g * f, c, 3, 3), padding=1, groups=g)
    return o.reshape(n, g, f, h, wd)


def workloads():
    N = 1 << 24
    M = 4096
    return [
        dict(name="gelu", title="gelu(x)·y+z, 16M", src=GELU, entry="gelu_mul_add",
             inputs=[(N,), (N,), (N,)], fn=lambda x, y, z: F.gelu(x) * y + z,
             flops=20.0 * N, bytes=nbytes([(N,)] * 4)),
        dict(name="softmax", title="softmax 8192×8192", src=SOFTMAX, entry="softmax",
             inputs=[(8192, 8192)], scale=[4.0], fn=lambda x: torch.softmax(x, -1),
             flops=5.0 * 8192 * 8192, bytes=nbytes([(8192, 8192)] * 2)),
        dict(name="layernorm", title="layer norm 16384×1024", src=LAYERNORM, entry="layernorm",
             inputs=[(16384, 1024), (1024,), (1024,)],
             fn=lambda x, g, b: F.layer_norm(x, (1024,), g, b, 1e-5),
             flops=8.0 * 16384 * 1024, bytes=nbytes([(16384, 1024)] * 2 + [(1024,)] * 2)),
        dict(name="matmul", title="matmul 4096³ f32", src=MATMUL, entry="matmul",
             inputs=[(M, M), (M, M)], fn=lambda a, b: a @ b,
             flops=2.0 * M ** 3, bytes=nbytes([(M, M)] * 3), rtol=1e-3),
        dict(name="matmul_bf16", title="matmul 4096³ bf16", src=MATMUL_BF16, entry="matmul_bf16",
             inputs=[(M, M), (M, M)], dtype=torch.bfloat16, fn=lambda a, b: a @ b,
             flops=2.0 * M ** 3, bytes=nbytes([(M, M)] * 3, BF16), peak="bf16", rtol=3e-2),
        dict(name="matmul_nt", title="A·Bᵀ 4096³ f32", src=MATMUL_NT, entry="matmul_nt",
             inputs=[(M, M), (M, M)], fn=lambda a, b: a @ b.t(),
             flops=2.0 * M ** 3, bytes=nbytes([(M, M)] * 3), rtol=1e-3),
        dict(name="bmm", title="batched matmul 64×512³", src=BMM, entry="bmm",
             inputs=[(64, 512, 512), (64, 512, 512)], fn=torch.bmm,
             flops=2.0 * 64 * 512 ** 3, bytes=nbytes([(64, 512, 512)] * 3), rtol=1e-3),
        dict(name="conv", title="conv 3×3 p1, 32×64×56×56→64", src=CONV, entry="conv3x3",
             inputs=[(32, 64, 56, 56), (64, 64, 3, 3)], scale=[1.0, 0.05],
             fn=lambda x, w: F.conv2d(x, w, padding=1),
             flops=2.0 * 32 * 64 * 56 * 56 * 64 * 9,
             bytes=nbytes([(32, 64, 56, 56), (64, 64, 3, 3), (32, 64, 56, 56)]), rtol=1e-3),
        dict(name="group_conv", title="group conv g=32, 32×512×56×56", src=GROUP_CONV,
             entry="group_conv3x3", inputs=[(32, 32, 16, 56, 56), (32, 16, 16, 3, 3)],
             scale=[1.0, 0.1], fn=group_conv_torch, flops=2.0 * 32 * 512 * 56 * 56 * 16 * 9,
             bytes=nbytes([(32, 512, 56, 56), (512, 16, 3, 3), (32, 512, 56, 56)]), rtol=1e-3),
        dict(name="blur", title="separable 3×3 blur 8192²", src=BLUR, entry="blur3x3",
             inputs=[(8192, 8192)], fn=blur_torch, flops=8.0 * 8192 * 8192,
             bytes=nbytes([(8192, 8192)] * 2)),
        dict(name="mlp", title="2-layer MLP 8192×1024×4096", src=MLP, entry="mlp2",
             inputs=[(8192, 1024), (4096, 1024), (4096,), (1024, 4096), (1024,)],
             scale=[1.0, 0.03, 0.1, 0.015, 0.1],
             fn=lambda x, w1, b1, w2, b2: F.linear(F.relu(F.linear(x, w1, b1)), w2, b2),
             flops=2 * 2.0 * 8192 * 1024 * 4096,
             bytes=nbytes([(8192, 1024), (4096, 1024), (4096,), (1024, 4096), (1024,),
                           (8192, 1024)]), rtol=1e-3),
    ]


def cuda_time(fn, deadline, min_reps=3, max_reps=15, batch_ms=5.0):
    """Median ms per call of fn(): calls are queued back to back in batches
    between two CUDA events (so host-side launch costs hide behind the GPU's
    work, as in a model's forward pass), batches of at least `batch_ms`."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one_ms = 1e3 * (time.perf_counter() - t0)
    batch = int(max(1, min(200, batch_ms / max(one_ms, 1e-3))))
    times = []
    for _ in range(max_reps):
        if len(times) >= min_reps and time.perf_counter() > deadline:
            break
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(batch):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / batch)
    return statistics.median(times)


def device_ms(fn, n=20):
    """Milliseconds of GPU work per call of fn() (kernels and memsets, from
    PyTorch's profiler, CUPTI): with cuda_time's, it tells a call bound by
    its kernels from one bound by the host.  None when the profiler fails."""
    try:
        from torch.profiler import ProfilerActivity, profile
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
        us = sum(e.self_device_time_total for e in prof.key_averages())
        return us / 1e3 / n if us > 0 else None
    except Exception:  # report the rest without it
        traceback.print_exc()
        return None


def measure_peaks(deadline):
    peaks = {}
    x = torch.empty(1 << 28, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    ms = cuda_time(lambda: y.copy_(x), deadline)
    peaks["bandwidth"] = 2 * x.numel() * 4 / (ms * 1e-3)
    del x, y
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=dt)
        b = torch.randn(n, n, device="cuda", dtype=dt)
        ms = cuda_time(lambda: a @ b, deadline, max_reps=5)
        peaks[name] = 2.0 * n ** 3 / (ms * 1e-3)
        del a, b
    torch.cuda.empty_cache()
    return peaks


def make_inputs(w, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    dt = w.get("dtype", torch.float32)
    scales = w.get("scale", [1.0] * len(w["inputs"]))
    return [(torch.randn(s, device="cuda", generator=g) * sc).to(dt)
            for s, sc in zip(w["inputs"], scales)]


def check(got, want, rtol):
    got, want = got.double(), want.double()
    err = (got - want).abs()
    tol = rtol * want.abs() + 1e-4 * want.abs().max().clamp(min=1e-30)
    bad = int((err > tol).sum())
    return bad == 0, float(err.max()), bad


def roofline(w, peaks, ms):
    if ms is None:
        return None
    peak = peaks[w.get("peak", "f32")]
    floor = max(w["flops"] / peak, w["bytes"] / peaks["bandwidth"])
    return 100.0 * floor / (ms * 1e-3)


def run_workload(lib, w, peaks, deadline, res, do_compile):
    inputs = make_inputs(w)
    want = w["fn"](*inputs)
    torch.cuda.synchronize()
    # tensorc: compile (cold), check, time
    t0 = time.perf_counter()
    prog = lib.compile(w["src"], w["name"] + ".tc")
    secs, how = prog.prepare(w["entry"])
    res["compile_s"] = time.perf_counter() - t0
    res["compile_source"] = ["compiled", "memory", "disk cache"][how]
    (got,) = prog.run(w["entry"], inputs, out_dtypes=[want.dtype])
    torch.cuda.synchronize()
    ok, maxerr, nbad = check(got, want, w.get("rtol", 1e-4))
    res.update(correct=ok, max_abs_err=maxerr, mismatches=nbad)
    del got
    call = prog.bind(w["entry"], inputs, [torch.empty_like(want)])
    res["tensorc_ms"] = cuda_time(call, deadline)
    res["tensorc_device_ms"] = device_ms(call)
    del call
    res["eager_ms"] = cuda_time(lambda: w["fn"](*inputs), deadline)
    if do_compile():
        t0 = time.perf_counter()
        cf = torch.compile(w["fn"])
        cf(*inputs)
        torch.cuda.synchronize()
        res["torch_compile_s"] = time.perf_counter() - t0
        res["compiled_ms"] = cuda_time(lambda: cf(*inputs), deadline)
    for k in ("tensorc", "eager", "compiled"):
        res[k + "_pct"] = roofline(w, peaks, res.get(k + "_ms"))
    del prog


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def write(out, peaks, rows, gpu):
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"gpu": gpu, "peaks": peaks, "results": rows}, f, indent=1)
    lines = [
        f"GPU: {gpu}. Peaks measured in this run: copy {peaks.get('bandwidth', 0) / 1e12:.2f} TB/s, "
        f"cuBLAS f32 {peaks.get('f32', 0) / 1e12:.1f} TFLOP/s, "
        f"bf16 {peaks.get('bf16', 0) / 1e12:.1f} TFLOP/s.",
        "",
        "| workload | tensorc ms | % roof | (GPU ms) | eager ms | % roof | torch.compile ms "
        "| % roof | tensorc compile s | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        check_txt = ("ok" if r.get("correct") else f"MISMATCH ({r.get('mismatches')})"
                     if "correct" in r else r.get("error", "skipped"))
        lines.append(
            f"| {r['title']} | {fmt(r.get('tensorc_ms'), '.3f')} | {fmt(r.get('tensorc_pct'), '.0f')} "
            f"| {fmt(r.get('tensorc_device_ms'), '.3f')} "
            f"| {fmt(r.get('eager_ms'), '.3f')} | {fmt(r.get('eager_pct'), '.0f')} "
            f"| {fmt(r.get('compiled_ms'), '.3f')} | {fmt(r.get('compiled_pct'), '.0f')} "
            f"| {fmt(r.get('compile_s'), '.2f')} | {check_txt} |")
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=None, help="libtensorc.so (default build/libtensorc.so)")
    ap.add_argument("--out", default=".", help="directory for bench.json and bench.md")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds this run may take")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = ap.parse_args()
    start = time.perf_counter()
    deadline = start + args.deadline
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.get_device_name(0)
    lib = Lib(args.lib)
    peaks = measure_peaks(deadline)
    todo = [w for w in workloads() if not args.only or w["name"] in args.only.split(",")]
    rows = []
    for i, w in enumerate(todo):
        res = {"name": w["name"], "title": w["title"]}
        rows.append(res)
        left = deadline - time.perf_counter()
        share = left / (len(todo) - i)
        if left < 10:
            res["error"] = "skipped: out of time"
            continue
        # torch.compile takes tens of seconds a workload: only with time to spare
        do_compile = (lambda: not args.no_compile and
                      deadline - time.perf_counter() > max(45.0, 0.5 * share))
        try:
            run_workload(lib, w, peaks, min(deadline, time.perf_counter() + share), res,
                         do_compile)
        except Exception as e:  # report and go on
            res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            traceback.print_exc()
        torch.cuda.empty_cache()
        write(args.out, peaks, rows, gpu)
    write(args.out, peaks, rows, gpu)
    print(f"bench: {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()

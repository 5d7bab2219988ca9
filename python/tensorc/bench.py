"""python -m tensorc.bench: the call overhead of tensorc's Python paths.

Times a tiny op (C(i) = A(i) + B(i), 16 float32 elements) called many times
on each path and prints the median time per call and what it adds to the
kernel alone (tc_run on already bound tensors, timed in C).  docs/python.md
reports its numbers.

    python -m tensorc.bench [--n 16] [--calls 2000] [--batches 50]
"""
import argparse
import statistics
import time

import numpy as np

import tensorc


def per_call(fn, calls, batches):
    """Median over batches of the mean time of one call, in microseconds."""
    for _ in range(calls):  # warm up
        fn()
    res = []
    for _ in range(batches):
        t = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        res.append((time.perf_counter_ns() - t) / calls / 1000)
    return statistics.median(res)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16, help="elements per tensor")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=50)
    a = ap.parse_args(argv)
    import torch

    ops = tensorc.define("def add(float(N) A, float(N) B) -> (C) { C(i) = A(i) + B(i) }")
    add = ops.add
    x, y = torch.randn(a.n), torch.randn(a.n)
    out = add(x, y)
    xn, yn, outn = x.numpy(), y.numpy(), out.numpy()
    prog, entry = add._base.program, add._base.entry
    kernel = statistics.median(prog.time_kernel(entry, (x, y), out, a.calls * 10)) * 1e6
    op = add.torch_op
    xg = x.clone().requires_grad_()
    compiled = torch.compile(lambda p, q: add(p, q), fullgraph=True, dynamic=True)
    compiled(x, y)

    rows = [
        ("direct, torch tensors, outputs allocated", lambda: add(x, y)),
        ("direct, torch tensors, out=", lambda: add(x, y, out=out)),
        ("direct, numpy arrays, outputs allocated", lambda: add(xn, yn)),
        ("direct, numpy arrays, out=", lambda: add(xn, yn, out=outn)),
        ("torch.ops.tensorc operator", lambda: op(x, y)),
        ("autograd (an input requires grad)", lambda: add(xg, y)),
        ("torch.compile'd function calling it", lambda: compiled(x, y)),
        ("for scale: torch.add", lambda: torch.add(x, y)),
        ("for scale: torch.empty", lambda: torch.empty(a.n)),
    ]
    print(f"tensorc {tensorc.__version__}, torch {torch.__version__}, numpy {np.__version__}; "
          f"{a.n} float32 elements; median of {a.batches} batches of {a.calls} calls")
    print(f"{'kernel alone (tc_run, timed in C)':44s} {kernel:7.2f} us")
    for name, fn in rows:
        t = per_call(fn, a.calls, a.batches)
        extra = "" if name.startswith("for scale") else f"   (+{t - kernel:.2f} us)"
        print(f"{name:44s} {t:7.2f} us{extra}")


if __name__ == "__main__":
    main()

"""The contenders, behind one interface, so the harness can interleave them.

A Driver turns a workload and its inputs into a Prepared: the kernel compiled
(its compile time recorded), run once, its output kept for the correctness
check.  Prepared.time(k) runs the kernel k times and returns the median in
seconds; the harness calls it in rounds, driver after driver.

- tensorc (CLI): `tensorc run FILE --entry E --in N=F.npy ... --bench K -v` in
  a subprocess.  The first call uses a fresh kernel cache, so its `-v` report
  is a cold compile; later calls load the kernel from the disk cache and
  report that.  Every call writes the output of its first run, and the
  harness checks it each time.
- tensorc-py (optional, --drivers ...,tensorc-py): the Python package
  (python/tensorc) in this process, on torch tensors, with a preallocated
  output: no process start and no .npy files, the per-call overhead of the
  Python binding included.
- torch eager, torch.compile (Inductor, default mode), and Halide (JIT, the
  Adams2019 autoscheduler, else Mullapudi2016) run in this process on the
  same memory: numpy arrays shared with torch.from_numpy and hl.Buffer.
  Adams2019 searches greedily by default (beam_size=1, --halide-beam): its
  default beam of 32 ran for minutes and gigabytes on the convolutions.
"""

import os
import re
import statistics
import subprocess
import time

import numpy as np


class Unavailable(Exception):
    """The driver cannot run here; the message says why (shown as a note)."""


class Prepared:
    compile_s = None      # cold compile time (seconds), None if there is none
    compile_note = ""     # what compile_s covers
    output = None         # np.ndarray from the first run, TC output shape
    info = None           # extra facts for the JSON (dict)
    reverify = False      # True: every time() call makes a new output to check

    def time(self, k):
        raise NotImplementedError

    def last_output(self):
        return self.output

    def close(self):
        pass


class Driver:
    name = ""     # the key for --drivers and in the JSON
    label = ""    # the table's column
    is_tensorc = False

    def __init__(self, ctx):
        self.ctx = ctx

    def check_available(self):
        """Raise Unavailable when the driver cannot run on this machine."""

    def prepare(self, wl, inputs):
        raise NotImplementedError


def _median_of_calls(fn, k):
    ts = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _calibrate(fn, first_s, budget_s):
    """The calibration sample: one more timed run, or the first run when it
    alone took more than the whole budget (first_s None: the first call
    compiled, so it cannot stand for a run)."""
    if first_s is not None and first_s > budget_s:
        return first_s
    return _median_of_calls(fn, 1)


# ---- tensorc through its command line ----

_RE_PARSE = re.compile(r"^tensorc: parse and check .*: ([0-9.]+) ms$", re.M)
_RE_KERNEL = re.compile(r"^tensorc: kernel \S+: ([0-9.]+) ms \((compiled|memory cache|disk cache)\)", re.M)
_RE_FIRST = re.compile(r"^tensorc: first run: ([0-9.]+) ms$", re.M)
_RE_BENCH = re.compile(r"^bench \S+ \(c\): (\d+) runs?, median ([0-9.]+) ms", re.M)


def parse_cli_output(stdout, stderr):
    """The facts `tensorc run -v --bench K` prints (tools/tensorc.c):
    parse/check ms, kernel ms and where the kernel came from, first-run ms,
    runs and median ms.  Raises ValueError naming what is missing."""
    out = {}
    for key, rx, text in (("parse_ms", _RE_PARSE, stderr), ("kernel", _RE_KERNEL, stderr),
                          ("first_ms", _RE_FIRST, stderr), ("bench", _RE_BENCH, stdout)):
        m = rx.search(text)
        if not m:
            raise ValueError(f"no '{key}' line in tensorc's output")
        out[key] = m.groups()
    return {
        "parse_ms": float(out["parse_ms"][0]),
        "kernel_ms": float(out["kernel"][0]),
        "kernel_source": out["kernel"][1],
        "first_ms": float(out["first_ms"][0]),
        "runs": int(out["bench"][0]),
        "median_ms": float(out["bench"][1]),
    }


class TensorcCLIPrepared(Prepared):
    reverify = True

    def __init__(self, driver, wl, paths):
        self.d = driver
        ctx = driver.ctx
        self.out_path = os.path.join(ctx.workdir, f"{wl.name}.tensorc.{wl.output}.npy")
        self.cmd = [ctx.tensorc, "run", os.path.join(ctx.programs, wl.program), "--entry", wl.entry, "-v"]
        for name in wl.inputs:
            self.cmd += ["--in", f"{name}={paths[name]}"]
        self.cmd += ["--out", f"{wl.output}={self.out_path}"]
        self.env = dict(os.environ, TENSORC_NUM_THREADS=str(ctx.threads),
                        TENSORC_CACHE_DIR=os.path.join(ctx.workdir, "tensorc-cache", wl.name))
        self.loads_ms = []   # kernel load times from the disk cache
        r = self._call(1, expect="compiled")
        self.compile_s = (r["parse_ms"] + r["kernel_ms"]) / 1e3
        self.compile_note = "parse, check, lower, emit C, cc, dlopen; empty cache"
        self.first_run_s = r["first_ms"] / 1e3
        self.calibration_s = r["median_ms"] / 1e3
        self.output = np.load(self.out_path)
        self.info = {"first_run_ms": r["first_ms"], "parse_ms": r["parse_ms"]}

    def _call(self, k, expect):
        cmd = self.cmd + ["--bench", str(k)]
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                           timeout=self.d.ctx.timeout)
        if p.returncode != 0:
            raise RuntimeError(f"tensorc failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr}")
        r = parse_cli_output(p.stdout, p.stderr)
        if r["kernel_source"] != expect:
            raise RuntimeError(f"tensorc's kernel came from the {r['kernel_source']}, expected: {expect}")
        return r

    def time(self, k):
        r = self._call(k, expect="disk cache")
        self.loads_ms.append(r["kernel_ms"])
        self.info["disk_cache_load_ms"] = statistics.median(self.loads_ms)
        return r["median_ms"] / 1e3

    def last_output(self):
        return np.load(self.out_path)


class TensorcCLI(Driver):
    name, label, is_tensorc = "tensorc", "tensorc", True

    def check_available(self):
        if not os.access(self.ctx.tensorc, os.X_OK):
            raise Unavailable(f"{self.ctx.tensorc} is not built (make)")

    def prepare(self, wl, inputs):
        return TensorcCLIPrepared(self, wl, self.ctx.npy_paths)


# ---- tensorc through its Python package, in process ----

class TensorcPyPrepared(Prepared):
    def __init__(self, driver, wl, inputs):
        import torch
        tc = driver.module
        with open(os.path.join(driver.ctx.programs, wl.program)) as f:
            op = tc.define(f.read(), filename=wl.program, context=driver.tc_ctx)[wl.entry]
        t0 = time.perf_counter()
        how, _, _ = op.prepare()
        self.compile_s = time.perf_counter() - t0
        if how != "compiled":
            raise RuntimeError(f"tensorc-py's kernel came from the {how}, expected: compiled")
        self.compile_note = "define (parse, check) excluded; prepare: lower, emit C, cc, dlopen"
        ts = [torch.from_numpy(inputs[n]) for n in wl.inputs]
        with torch.inference_mode():
            self.out = op(*ts)               # the output, reused by every timed call
        self.fn = lambda: op(*ts, out=self.out)
        self.output = self.out.numpy().copy()
        self.calibration_s = _calibrate(self.fn, None, driver.ctx.budget)
        self.info = {"prepare": how}

    def time(self, k):
        return _median_of_calls(self.fn, k)

    def last_output(self):
        return self.out.numpy()


class TensorcPy(Driver):
    """tensorc's Python package (python/tensorc), in this process: the kernel
    called on torch tensors with a preallocated output.  Not in the default
    set: --drivers tensorc,tensorc-py,... adds it."""
    name, label, is_tensorc = "tensorc-py", "tensorc-py", True
    module = tc_ctx = None

    def check_available(self):
        import sys
        root = os.path.dirname(os.path.dirname(self.ctx.programs))   # bench/programs -> the repo
        try:
            import tensorc
        except ImportError:
            sys.path.insert(0, os.path.join(root, "python"))
            try:
                import tensorc
            except ImportError as e:
                raise Unavailable(f"the tensorc Python package is not built ({e})")
        self.module = tensorc
        cache = os.path.join(self.ctx.workdir, "tensorc-py-cache")
        self.tc_ctx = tensorc.set_context(cache_dir=cache, num_threads=self.ctx.threads)

    def prepare(self, wl, inputs):
        return TensorcPyPrepared(self, wl, inputs)


# ---- PyTorch ----

class TorchPrepared(Prepared):
    def __init__(self, fn, tensors, compile_note, budget):
        import torch
        self.fn = lambda: fn(*tensors)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = self.fn()
            first = time.perf_counter() - t0
            self.output = out.numpy().copy()
            self.calibration_s = _calibrate(self.fn, None if compile_note else first, budget)
        if compile_note:
            self.compile_s = first
            self.compile_note = compile_note
        self.info = {"first_call_ms": first * 1e3}

    def time(self, k):
        import torch
        with torch.inference_mode():
            return _median_of_calls(self.fn, k)


class TorchEager(Driver):
    name, label = "eager", "eager"

    def check_available(self):
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise Unavailable(f"torch is not installed ({e})")

    def prepare(self, wl, inputs):
        import torch
        ts = [torch.from_numpy(inputs[n]) for n in wl.inputs]
        return TorchPrepared(wl.torch_fn, ts, "", self.ctx.budget)


class TorchCompile(TorchEager):
    name, label = "compile", "compile"

    def prepare(self, wl, inputs):
        import torch
        ts = [torch.from_numpy(inputs[n]) for n in wl.inputs]
        return TorchPrepared(torch.compile(wl.torch_fn), ts,
                             "first call: Dynamo trace + Inductor C++ codegen and build, one run",
                             self.ctx.budget)


# ---- Halide ----

def _halide_plugin():
    """Load an autoscheduler plugin shipped with the halide package: Adams2019,
    else Mullapudi2016.  Returns its name."""
    import halide as hl
    libdir = os.path.join(os.path.dirname(hl.__file__), "lib64")
    errors = []
    for name in ("Adams2019", "Mullapudi2016"):
        path = os.path.join(libdir, f"libautoschedule_{name.lower()}.so")
        try:
            hl.load_plugin(path)
            return name
        except Exception as e:  # a missing or broken plugin: try the next
            errors.append(f"{name}: {e}")
    raise Unavailable("no autoscheduler plugin could be loaded (" + "; ".join(errors) + ")")


class HalidePrepared(Prepared):
    def __init__(self, driver, wl, inputs):
        import halide as hl
        shapes = {n: inputs[n].shape for n in wl.inputs}
        out_shape = driver.ctx.out_shapes[wl.name]
        pipe = wl.halide(shapes)
        for n, p in pipe.params.items():
            p.set_estimates([(0, e) for e in reversed(shapes[n])])
        pipe.out.set_estimates([(0, e) for e in reversed(out_shape)])
        target = hl.get_jit_target_from_environment()
        self.pipeline = hl.Pipeline(pipe.out)
        t0 = time.perf_counter()
        params = hl.AutoschedulerParams(driver.autoscheduler, driver.params())
        self.pipeline.apply_autoscheduler(target, params)
        self.pipeline.compile_jit(target)
        self.compile_s = time.perf_counter() - t0
        self.compile_note = f"{driver.describe()} autoschedule + JIT compile"
        self.buffers = {n: hl.Buffer(inputs[n]) for n in wl.inputs}   # views, no copies
        for n, p in pipe.params.items():
            p.set(self.buffers[n])
        self.params = pipe.params
        self.out = hl.Buffer(hl.Float(32), list(reversed(out_shape)))
        t0 = time.perf_counter()
        self.pipeline.realize(self.out)
        first = time.perf_counter() - t0
        self.output = np.asarray(self.out).copy()
        self.calibration_s = _calibrate(self._run, first, driver.ctx.budget)
        self.info = {"autoscheduler": driver.describe(), "target": str(target),
                     "first_run_ms": first * 1e3}

    def _run(self):
        self.pipeline.realize(self.out)

    def time(self, k):
        return _median_of_calls(self._run, k)


class Halide(Driver):
    name, label = "halide", "Halide"
    autoscheduler = None

    def check_available(self):
        try:
            import halide  # noqa: F401
        except ImportError as e:
            raise Unavailable(f"the halide package is not installed ({e}); pip install halide")
        self.autoscheduler = _halide_plugin()

    def params(self):
        p = {"parallelism": str(self.ctx.threads)}
        if self.autoscheduler == "Adams2019":
            p["beam_size"] = str(self.ctx.halide_beam)
        return p

    def describe(self):
        if self.autoscheduler == "Adams2019":
            return f"Adams2019 (beam_size={self.ctx.halide_beam})"
        return self.autoscheduler

    def prepare(self, wl, inputs):
        return HalidePrepared(self, wl, inputs)


ALL_DRIVERS = [TensorcCLI, TensorcPy, TorchEager, TorchCompile, Halide]
DEFAULT_DRIVERS = ["tensorc", "eager", "compile", "halide"]

"""tensorc's CPU benchmark: every workload with tensorc, torch eager,
torch.compile and Halide (autoscheduled), interleaved, checked against a
float64 PyTorch reference, timed, and set against a roofline measured on this
machine.

    python3 -m bench [--quick] [--only matmul,softmax] [--drivers tensorc,eager]
    python3 bench/run.py --selftest        # the harness's own logic, no timing

What one run does, per workload:
1. makes the inputs with numpy (fixed seed), writes them as .npy for the CLI,
   and computes the reference in float64 with PyTorch;
2. prepares each driver: compile (cold: an empty tensorc cache, an empty
   Inductor cache, a fresh Halide autoschedule), one run whose output is
   checked against the reference -- a mismatch stops the benchmark with
   exit status 1 -- and one timed calibration run (none when the first run
   alone took longer than the budget: it stands for the calibration);
3. from the calibration time and a time budget, picks how many runs each
   driver gets, then runs them in rounds: each round calls every driver in
   turn (the order rotates), each call a batch of k runs whose median is
   kept.  tensorc's outputs are checked again after every batch (each batch
   is a new process);
4. reports the median of the batch medians (the calibration run is one batch
   of 1).

The roofline floor of a workload is max(flops / peak flops, bytes / peak
bandwidth), with both peaks measured by bench/probes at the start and at the
end of the run, the best counting (see bench/peaks.py); "% roofline" is
floor / time.  "vs best" is the best peer's
time over tensorc's: 1.0x or more means tensorc is at least as fast as every
peer.  Results go to bench/results/results.json and results.png.
"""

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from bench import drivers as drv  # noqa: E402
from bench import peaks as pk  # noqa: E402
from bench.workloads import all_workloads, check_output  # noqa: E402

FULL = {"rounds": 7, "budget": 3.0, "max_runs": 60}    # budget: timed seconds per driver and workload
QUICK = {"rounds": 3, "budget": 0.5, "max_runs": 10}


class Context:
    """What the drivers share: threads, paths, the current workload's files."""

    def __init__(self, args, workdir, threads):
        self.threads = threads
        self.workdir = workdir
        self.tensorc = os.path.abspath(args.tensorc)
        self.programs = os.path.join(ROOT, "bench", "programs")
        self.timeout = args.timeout
        self.halide_beam = args.halide_beam
        self.budget = 0.0       # set from the run's configuration
        self.npy_paths = {}
        self.out_shapes = {}


class Mismatch(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- planning and statistics (pure: the self-test covers them) ----

def plan_runs(calib_s, budget_s, rounds, max_runs):
    """How a driver whose run takes calib_s seconds spends budget_s: about
    n = budget_s / calib_s runs (at least the calibration run, at most
    max_runs), the n - 1 after the calibration run in `rounds` batches of k
    (rounded up).  Returns (total runs, rounds, k)."""
    n = max(1, min(max_runs, int(budget_s / max(calib_s, 1e-9))))
    if n == 1:
        return 1, 0, 0
    r = min(rounds, n - 1)
    k = math.ceil((n - 1) / r)
    return 1 + r * k, r, k


def rotate(seq, r):
    r %= len(seq)
    return seq[r:] + seq[:r]


def summarize(batches):
    """batches: [(runs, median_s)] -> (median of the medians in ms, total runs)."""
    return 1e3 * statistics.median(m for _, m in batches), sum(n for n, _ in batches)


def roofline_pct(floor_s, t_ms):
    return 100.0 * floor_s * 1e3 / t_ms


# ---- one workload ----

def reference(wl, inputs):
    import torch
    ts = [torch.from_numpy(inputs[n].astype(np.float64)) for n in wl.inputs]
    with torch.inference_mode():
        return wl.torch_fn(*ts).numpy()


def verify(wl, driver, out, ref, when):
    msg = check_output(out, ref, wl.rtol)
    if msg:
        raise Mismatch(f"{wl.name}: {driver.label} ({when}) does not match the float64 reference: {msg}")


def apply_roofline(res, peaks):
    """The floor, its bound and every driver's % of it, from the peaks."""
    floor_s, bound = pk.roofline_floor_s(res["flops"], res["bytes"], peaks)
    res["floor_ms"], res["bound"] = floor_s * 1e3, bound
    for v in res["drivers"].values():
        if "ms" in v:
            v["roofline_pct"] = roofline_pct(floor_s, v["ms"])


def best_peaks(a, b):
    """Two measurements of the peaks (start and end of a run) -> the best
    of each: other load on the machine only ever lowers a probe's rate."""
    out = dict(a)
    for k in ("fma_gflops", "fma256_gflops", "triad_gbs"):
        if k in a and k in b:
            out[k] = max(a[k], b[k])
    out["measured"] = [{k: m[k] for k in ("fma_gflops", "fma256_gflops", "triad_gbs") if k in m}
                       for m in (a, b)]
    return out


def run_workload(wl, drivers, ctx, cfg):
    t_start = time.time()
    inputs = wl.make_inputs(seed=cfg["seed"])
    ctx.npy_paths = {}
    for n, a in inputs.items():
        path = os.path.join(ctx.workdir, f"{wl.name}.{n}.npy")
        np.save(path, a)
        ctx.npy_paths[n] = path
    ref = reference(wl, inputs)
    ctx.out_shapes[wl.name] = ref.shape
    res = {"name": wl.name, "title": wl.title, "program": f"bench/programs/{wl.program}",
           "entry": wl.entry, "flops": wl.flops, "bytes": wl.bytes, "drivers": {},
           "loadavg": os.getloadavg()[0]}   # other work on the machine: its times are noisier

    prepared, batches = {}, {}
    for d in drivers:
        t0 = time.time()
        try:
            p = d.prepare(wl, inputs)
        except Exception as e:
            if d.is_tensorc:
                raise
            log(f"  {d.label}: failed, skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            res["drivers"][d.name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        verify(wl, d, p.output, ref, "first run")
        prepared[d.name] = p
        batches[d.name] = [(1, p.calibration_s)]
        comp = "" if p.compile_s is None else f", compile {p.compile_s * 1e3:.0f} ms"
        log(f"  {d.label}: ok{comp}, run {p.calibration_s * 1e3:.3f} ms "
            f"(prepared in {time.time() - t0:.1f} s)")

    plans = {n: plan_runs(p.calibration_s, cfg["budget"], cfg["rounds"], cfg["max_runs"])
             for n, p in prepared.items()}
    order = [d for d in drivers if d.name in prepared]
    for r in range(max((pl[1] for pl in plans.values()), default=0)):
        for d in rotate(order, r):
            _, rounds, k = plans[d.name]
            if r >= rounds:
                continue
            p = prepared[d.name]
            batches[d.name].append((k, p.time(k)))
            if p.reverify:
                verify(wl, d, p.last_output(), ref, f"round {r + 1}")

    for name, p in prepared.items():
        ms, runs = summarize(batches[name])
        res["drivers"][name] = {
            "ms": ms, "runs": runs, "batches_ms": [1e3 * m for _, m in batches[name]],
            "batch_runs": [n for n, _ in batches[name]],
            "compile_s": p.compile_s, "compile_note": p.compile_note, "verified": True,
            **(p.info or {}),
        }
        p.close()
    for path in ctx.npy_paths.values():
        os.remove(path)
    tc = next((d for d in drivers if d.is_tensorc and d.name in prepared), None)
    tensorcs = {d.name for d in drivers if d.is_tensorc}
    peers = {n: v["ms"] for n, v in res["drivers"].items() if "ms" in v and n not in tensorcs}
    if tc:
        res["tensorc_driver"] = tc.name
    if tc and peers:
        best = min(peers, key=peers.get)
        res["best_peer"] = best
        res["tensorc_vs_best"] = peers[best] / res["drivers"][tc.name]["ms"]
    res["wall_s"] = time.time() - t_start
    return res


# ---- machine facts ----

def _cmd_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except Exception:
        return None


def machine_info(ctx):
    cpu, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name") and cpu is None:
                    cpu = ln.split(":", 1)[1].strip()
                elif ln.startswith("flags") and not flags:
                    flags = ln.split(":", 1)[1].split()
    except OSError:
        pass
    info = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "threads_used": ctx.threads,
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "cc": _cmd_line(os.environ.get("CC", "cc").split() + ["--version"]),
            "tensorc": _cmd_line([ctx.tensorc, "--version"]),
            "git": _cmd_line(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
            "simd": " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags),
            "loadavg_start": os.getloadavg()[0]}
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    for mod in ("torch", "halide", "matplotlib"):
        try:
            info[mod] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            info[mod] = None
    return info


# ---- the report ----

def busy_note(loadavg, cores):
    """A warning when other work is running: every number then shifts, and
    the peers' OpenMP threads suffer more from sharing cores than most."""
    if loadavg > 0.5 * cores:
        return (f"the machine was busy (load average {loadavg:.1f} on {cores} cores at the start): "
                f"times are noisy and the peaks low")
    return None


def describe_peaks(peaks):
    extra = f", 256-bit FMA {peaks['fma256_gflops']:.0f} GFLOP/s" if "fma256_gflops" in peaks else ""
    return (f"FMA {peaks['fma_gflops']:.0f} GFLOP/s ({peaks['fma_lanes']} lanes){extra}, "
            f"triad {peaks['triad_gbs']:.1f} GB/s, {peaks['threads']} threads")


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def table(results, drivers):
    labels = {d.name: d.label for d in drivers}
    cols = [d for d in drivers]
    head = ["workload"] + [d.label + " ms" for d in cols] + \
        ["vs best", "floor ms", "bound", "% roof", "tc compile ms", "tc cached ms",
         "Inductor s", "Halide s", "load"]
    rows = []
    for r in results:
        dv = r["drivers"]
        row = [r["title"]]
        for d in cols:
            v = dv.get(d.name, {})
            row.append(_ms(v.get("ms")) if "ms" in v else ("error" if "error" in v else "-"))
        tcd = dv.get(r.get("tensorc_driver", "tensorc"), {})
        vs = r.get("tensorc_vs_best")
        row.append(f"{vs:.2f}x {labels[r['best_peer']]}" if vs is not None else "-")
        row.append(_ms(r["floor_ms"]))
        row.append(r["bound"])
        row.append(f"{tcd['roofline_pct']:.1f}" if "roofline_pct" in tcd else "-")
        row.append(f"{tcd['compile_s'] * 1e3:.0f}" if tcd.get("compile_s") else "-")
        row.append(f"{tcd['disk_cache_load_ms']:.2f}" if "disk_cache_load_ms" in tcd else "-")
        for name in ("compile", "halide"):
            c = dv.get(name, {}).get("compile_s")
            row.append(f"{c:.2f}" if c else "-")
        row.append(f"{r['loadavg']:.1f}")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                for i, (x, w) in enumerate(zip(row, widths)))
    lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)


def markdown_table(results, drivers):
    labels = {d.name: d.label for d in drivers}
    head = ["workload"] + [d.label + " ms" for d in drivers] + \
        ["tensorc vs best", "floor ms (bound)", "tensorc % roofline", "tensorc compile ms cold / cached",
         "Inductor compile s", "Halide compile s", "load avg"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        dv = r["drivers"]
        tcd = dv.get(r.get("tensorc_driver", "tensorc"), {})
        row = [r["title"]]
        row += [_ms(dv.get(d.name, {}).get("ms")) for d in drivers]
        vs = r.get("tensorc_vs_best")
        row.append(f"{vs:.2f}× ({labels[r['best_peer']]})" if vs is not None else "-")
        row.append(f"{_ms(r['floor_ms'])} ({r['bound']})")
        row.append(f"{tcd['roofline_pct']:.1f}" if "roofline_pct" in tcd else "-")
        cold = f"{tcd['compile_s'] * 1e3:.0f}" if tcd.get("compile_s") else "-"
        cached = f"{tcd['disk_cache_load_ms']:.2f}" if "disk_cache_load_ms" in tcd else "-"
        row.append(f"{cold} / {cached}")
        for name in ("compile", "halide"):
            c = dv.get(name, {}).get("compile_s")
            row.append(f"{c:.1f}" if c else "-")
        row.append(f"{r['loadavg']:.1f}")
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def chart(results, drivers, peaks, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["title"] for r in results]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(names) + 2), 5.5))
    width = 0.8 / max(1, len(drivers))
    for j, d in enumerate(drivers):
        xs, ys = [], []
        for i, r in enumerate(results):
            v = r["drivers"].get(d.name, {})
            if "roofline_pct" in v:
                xs.append(i + (j - (len(drivers) - 1) / 2) * width)
                ys.append(v["roofline_pct"])
        ax.bar(xs, ys, width, label=d.label)
        if d.is_tensorc:   # tensorc's standing against the best peer, above its bar
            for x, r in zip(xs, (r for r in results if "roofline_pct" in r["drivers"].get(d.name, {}))):
                if "tensorc_vs_best" in r and r.get("tensorc_driver") == d.name:
                    ax.annotate(f"{r['tensorc_vs_best']:.2f}x", (x, r["drivers"][d.name]["roofline_pct"]),
                                xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(top=200)   # room above the 100% line
    ax.set_ylabel("% of roofline (higher is better, log scale)\n"
                  "above tensorc: best peer's time / tensorc's", fontsize=8)
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_title(f"{title}\npeaks {peaks['fma_gflops']:.0f} GFLOP/s, {peaks['triad_gbs']:.1f} GB/s "
                 f"({peaks['threads']} threads)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- self-test: the harness's arithmetic, without timing anything ----

def selftest():
    fails, count = [], [0]

    def check(cond, what):
        count[0] += 1
        if not cond:
            fails.append(what)

    peaks = {"fma_gflops": 200.0, "triad_gbs": 40.0}
    t, b = pk.roofline_floor_s(2.0 * 1024 ** 3, 12 * 2 ** 20, peaks)      # a 1024^3 matmul
    check(b == "compute" and abs(t - 2.0 * 1024 ** 3 / 200e9) < 1e-12, "matmul floor: compute bound")
    t, b = pk.roofline_floor_s(5 * 2 ** 22, 32 * 2 ** 20, peaks)           # softmax 4096x1024
    check(b == "memory" and abs(t - 32 * 2 ** 20 / 40e9) < 1e-12, "softmax floor: memory bound")
    check(abs(roofline_pct(0.010, 20.0) - 50.0) < 1e-9, "roofline %: 10 ms floor, 20 ms run")
    check(plan_runs(5.0, 2.0, 5, 40) == (1, 0, 0), "a slow driver: the calibration run only")
    check(plan_runs(0.001, 2.0, 5, 40) == (41, 5, 8), "a fast driver: capped at max_runs")
    check(plan_runs(0.25, 2.0, 5, 40) == (11, 5, 2), "8 runs: calibration + 5 rounds of 2")
    check(plan_runs(0.5, 2.0, 5, 40) == (4, 3, 1), "4 runs: calibration + 3 rounds of 1")
    check(rotate(["a", "b", "c"], 4) == ["b", "c", "a"], "rotation")
    check(busy_note(0.4, 2) is None and busy_note(3.0, 2) is not None, "a busy machine is noted")
    both = best_peaks({"fma_gflops": 100.0, "triad_gbs": 40.0}, {"fma_gflops": 150.0, "triad_gbs": 30.0})
    check(both["fma_gflops"] == 150.0 and both["triad_gbs"] == 40.0, "peaks: the best of two measurements")
    check(summarize([(1, 0.003), (5, 0.001), (5, 0.002)]) == (2.0, 11), "median of batch medians")
    stdout = "bench matmul (c): 7 runs, median 12.500 ms (min 11.000 ms, max 14.000 ms)\n"
    stderr = ("tensorc: parse and check m.tc: 0.352 ms\ntensorc: cc -O3 ...\n"
              "tensorc: kernel matmul: 76.0 ms (compiled) /c/x.so\ntensorc: first run: 48.5 ms\n")
    r = drv.parse_cli_output(stdout, stderr)
    check(r == {"parse_ms": 0.352, "kernel_ms": 76.0, "kernel_source": "compiled", "first_ms": 48.5,
                "runs": 7, "median_ms": 12.5}, f"CLI output parsed: {r}")
    try:
        drv.parse_cli_output("", stderr)
        check(False, "a missing bench line is an error")
    except ValueError:
        check(True, "a missing bench line is an error")
    ref = np.linspace(-2, 2, 101)
    check(check_output(ref.astype(np.float32), ref, 1e-3) is None, "float32 of the reference matches")
    bad = ref.astype(np.float32)
    bad[17] += 0.01
    msg = check_output(bad, ref, 1e-3)
    check(msg is not None and "(17,)" in msg, f"a wrong element is found: {msg}")
    nan = ref.astype(np.float32)
    nan[3] = np.nan
    check(check_output(nan, ref, 1e-3) is not None, "NaN is a mismatch")
    check(check_output(ref[:50].astype(np.float32), ref, 1e-3) is not None, "a wrong shape is a mismatch")
    wls = all_workloads()
    check(len(wls) == 10 and len({w.name for w in wls}) == 10, "ten workloads, distinct names")
    for w in wls:
        check(os.path.exists(os.path.join(ROOT, "bench", "programs", w.program)), f"{w.program} exists")
    mm = next(w for w in wls if w.name == "matmul")
    check(mm.flops == 2 * 1024 ** 3 and mm.bytes == 3 * 4 * 1024 ** 2, "matmul flops and bytes")
    for f in fails:
        print("FAIL:", f)
    print(f"bench selftest: {count[0] - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


# ---- main ----

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (about a third of the time)")
    ap.add_argument("--only", help="comma-separated workload names: " +
                    ",".join(w.name for w in all_workloads()))
    ap.add_argument("--drivers", default=",".join(drv.DEFAULT_DRIVERS),
                    help="comma-separated drivers, of " + ",".join(d.name for d in drv.ALL_DRIVERS) +
                    " (default: " + ",".join(drv.DEFAULT_DRIVERS) + ")")
    ap.add_argument("--tensorc", default=os.path.join(ROOT, "build", "tensorc"), help="the tensorc CLI")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every driver")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--rounds", type=int, help="rounds of interleaved batches")
    ap.add_argument("--budget", type=float, help="timed seconds per driver and workload")
    ap.add_argument("--max-runs", type=int, help="at most this many timed runs per driver and workload")
    ap.add_argument("--halide-beam", type=int, default=1,
                    help="Adams2019's beam size (default 1, greedy; Halide's own default is 32, "
                         "which takes minutes on the convolutions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900, help="seconds for one tensorc call")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (inputs, caches)")
    ap.add_argument("--selftest", action="store_true", help="check the harness's arithmetic and exit")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.selftest:
        return selftest()
    cfg = dict(QUICK if args.quick else FULL, seed=args.seed)
    for key in ("rounds", "budget", "max_runs"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    threads = max(1, args.threads)
    wls = all_workloads()
    if args.only:
        want = args.only.split(",")
        unknown = set(want) - {w.name for w in wls}
        if unknown:
            log(f"bench: unknown workload(s): {', '.join(sorted(unknown))}")
            return 2
        wls = [w for w in wls if w.name in want]
    by_name = {d.name: d for d in drv.ALL_DRIVERS}
    names = args.drivers.split(",")
    if set(names) - set(by_name):
        log(f"bench: unknown driver(s): {', '.join(sorted(set(names) - set(by_name)))}")
        return 2

    workdir = tempfile.mkdtemp(prefix="tensorc-bench.")
    # Before torch and Halide are imported: a cold Inductor cache (its compile
    # times are cold, as tensorc's are) and Halide's thread count.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(workdir, "inductor-cache")
    os.environ["HL_NUM_THREADS"] = str(threads)
    ctx = Context(args, workdir, threads)
    ctx.budget = cfg["budget"]
    try:
        import torch
    except ImportError:
        log("bench: torch is needed for the reference results: pip install torch==2.13.0")
        return 1
    torch.set_num_threads(threads)

    drivers, notes = [], []
    for n in names:
        d = by_name[n](ctx)
        try:
            d.check_available()
            drivers.append(d)
        except drv.Unavailable as e:
            notes.append(f"{d.label} skipped: {e}")
            log(f"bench: {notes[-1]}")
    if not drivers:
        log("bench: no driver can run")
        return 1
    halide = next((d for d in drivers if d.name == "halide"), None)
    if halide:
        notes.append(f"Halide autoscheduler: {halide.describe()}")

    t0 = time.time()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = machine_info(ctx)
    log(f"bench: {machine['cpu']}, {machine['cores']} cores, {threads} threads; work dir {workdir}")
    busy = busy_note(machine["loadavg_start"], machine["cores"])
    if busy:
        notes.append(busy)
        log(f"bench: warning: {busy}")
    cc = os.environ.get("CC", "cc")
    probe_dir = os.path.join(workdir, "probes")
    results, status = [], 0
    try:
        peaks = pk.measure(cc, probe_dir, threads)
        log(f"bench: peaks: {describe_peaks(peaks)}")
        for i, wl in enumerate(wls):
            log(f"[{i + 1}/{len(wls)}] {wl.name}: {wl.title}")
            results.append(run_workload(wl, drivers, ctx, cfg))
        machine["loadavg_end"] = os.getloadavg()[0]
        busy = busy_note(machine["loadavg_end"], machine["cores"])
        if busy and not any(n.startswith("the machine was busy") for n in notes):
            notes.append(busy.replace("at the start", "at the end"))
        peaks = best_peaks(peaks, pk.measure(cc, probe_dir, threads))
    except Mismatch as e:
        log(f"\nbench: FAILED: {e}")
        status = 1
    except Exception as e:
        log(f"\nbench: FAILED: {type(e).__name__}: {e}")
        status = 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if status:
        return status
    for r in results:
        apply_roofline(r, peaks)
    total = time.time() - t0
    print(f"\ntensorc benchmark, {date}: {machine['cpu']} ({machine['simd']}), {machine['cores']} cores, "
          f"{threads} threads, git {machine['git']}")
    print(f"peaks (best of start and end): {describe_peaks(peaks)}")
    print("times: median ms; 'vs best' = the best peer's time / tensorc's (>= 1: tensorc at least as fast)")
    print(table(results, drivers))
    for n in notes:
        print("note:", n)
    print(f"total {total:.0f} s")
    os.makedirs(args.out_dir, exist_ok=True)
    doc = {"date": date, "machine": machine, "peaks": peaks, "config": {**cfg, "threads": threads,
           "quick": args.quick, "drivers": [d.name for d in drivers]}, "notes": notes,
           "total_s": total, "workloads": results,
           "markdown": markdown_table(results, drivers)}
    jpath = os.path.join(args.out_dir, "results.json")
    with open(jpath, "w") as f:
        json.dump(doc, f, indent=1)
    ppath = os.path.join(args.out_dir, "results.png")
    try:
        chart(results, drivers, peaks, ppath, f"tensorc benchmark, {date[:10]}, {machine['cpu']}")
    except ImportError:
        ppath = "(no chart: pip install matplotlib)"
    print(f"wrote {jpath} and {ppath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

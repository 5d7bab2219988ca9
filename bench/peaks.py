"""The machine's peaks, measured here and now by two small C probes
(bench/probes/fma.c and triad.c) compiled with `$CC -O3 -march=native` and
run on one pthread per core; the roofline of every workload is drawn from
them.

- fma: the float32 FMA throughput on the widest vectors -march=native gives
  (512-bit where AVX-512 is there).  Where the native build uses AVX-512,
  the probe is also built with -mno-avx512f and its 256-bit peak reported
  for reference (it is not used for the roofline).
- triad: STREAM's triad bandwidth over arrays far beyond the last-level
  cache.

Each probe runs a few times and the best rate counts.
"""

import os
import shlex
import subprocess

PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes")


def _build(cc, name, outdir, extra=()):
    exe = os.path.join(outdir, name + ("-" + "-".join(x.strip("-") for x in extra) if extra else ""))
    cmd = shlex.split(cc) + ["-std=gnu11", "-O3", "-march=native", "-ffp-contract=fast", *extra,
                             "-pthread", "-o", exe, os.path.join(PROBES, name + ".c")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"building the {name} probe failed: {' '.join(cmd)}\n{p.stderr}")
    return exe, " ".join(cmd)


def _run(exe, args, key, tries):
    best = None
    for _ in range(tries):
        p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"probe {exe} failed (exit {p.returncode}): {p.stderr}")
        f = p.stdout.split()
        if len(f) != 4 or f[0] != key:
            raise RuntimeError(f"probe {exe} printed {p.stdout!r}")
        rate, lanes = float(f[3]), int(f[2])
        if best is None or rate > best[0]:
            best = (rate, lanes)
    return best


def _native_has_avx512(cc):
    cmd = shlex.split(cc) + ["-march=native", "-dM", "-E", "-x", "c", "/dev/null"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return "__AVX512F__" in p.stdout


def measure(cc, outdir, threads, tries=3, triad_mib=256):
    """{'fma_gflops', 'fma_lanes', 'triad_gbs', ...}: the peaks on `threads`
    threads."""
    os.makedirs(outdir, exist_ok=True)
    fma, fma_cmd = _build(cc, "fma", outdir)
    triad, triad_cmd = _build(cc, "triad", outdir)
    gflops, lanes = _run(fma, [threads], "fma_gflops", tries)
    gbs, _ = _run(triad, [threads, triad_mib], "triad_gbs", tries)
    peaks = {"fma_gflops": gflops, "fma_lanes": lanes, "triad_gbs": gbs, "threads": threads,
             "triad_mib_per_array": triad_mib, "fma_build": fma_cmd, "triad_build": triad_cmd}
    if _native_has_avx512(cc):
        fma256, _ = _build(cc, "fma", outdir, ["-mno-avx512f"])
        peaks["fma256_gflops"], _ = _run(fma256, [threads], "fma_gflops", tries)
    return peaks


def roofline_floor_s(flops, nbytes, peaks):
    """The roofline's lower bound on the time: max(flops / peak flops,
    bytes / peak bandwidth), in seconds, and which bound it is."""
    t_compute = flops / (peaks["fma_gflops"] * 1e9)
    t_memory = nbytes / (peaks["triad_gbs"] * 1e9)
    return (t_compute, "compute") if t_compute >= t_memory else (t_memory, "memory")

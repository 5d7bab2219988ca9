#!/usr/bin/env bash
# tests/gpu/run.sh — everything the CUDA back end needs a GPU for, in one run
# that fits a time budget and never hangs:
#
#   1. build tensorc (make) and the test drivers;
#   2. test_cuda: NVRTC on every program, plans, device rules, and programs
#      run in place on device memory;
#   3. every tests/programs/*.tc entry on the GPU against the interpreter
#      (run_programs --target cuda: every case, every layout);
#   4. the PyTorch tests on CUDA tensors (tests/gpu/test_torch_cuda.py, through
#      libtensorc's C API and DLPack structs: cuda:0, cuda:1 when there is one,
#      PyTorch's current stream, views, errors), and the Python package's CUDA
#      tests on CUDA (tests/python/test_torch_cuda.py: every program through
#      the package, gradcheck, opcheck, torch.compile);
#   5. the benchmark (bench/gpu_bench.py) with what time is left.
#
# Usage:  OUT=/some/dir bash tests/gpu/run.sh [--no-bench] [--budget SECONDS]
# Results go to $OUT (default /tmp/tensorc-gpu), five files: summary.txt (a
# line per step), logs.txt (every step's output), machine.txt, and the
# benchmark's bench.md / bench.json.  Each step runs under `timeout`;
# the whole run stays within --budget (default 570 s).  Exit status 0 when
# every test step passed (a benchmark that ran out of time is not a failure).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/tensorc-gpu}
BUILD=${BUILD:-build}
case "$BUILD" in /*) ABS_BUILD=$BUILD ;; *) ABS_BUILD=$PWD/$BUILD ;; esac
BUDGET=570
BENCH=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-bench) BENCH=0 ;;
    --budget) BUDGET=$2; shift ;;
    *) echo "usage: tests/gpu/run.sh [--no-bench] [--budget SECONDS]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
: >"$OUT/logs.txt"
FAILED=0
PYTHON=${PYTHON:-python3}
# fresh kernel caches (outside $OUT): nothing stale is reused, and the
# benchmark's compile times are cold
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tensorc-gpu-XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
export TENSORC_CACHE_DIR="$SCRATCH/cache"

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME CAP_SECONDS COMMAND...: runs with min(CAP, time left), logs to $OUT/NAME.log
step() {
  local name=$1 cap=$2
  shift 2
  local t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then
    echo "SKIP  $name (out of time)" | tee -a "$SUMMARY"
    return 1
  fi
  local t0=$(date +%s)
  timeout -k 5 "$t" "$@" >"$SCRATCH/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  local tail_line
  tail_line=$(grep -E "passed|failed|error" "$SCRATCH/$name.log" | tail -n 1)
  { echo "==== $name: $* (exit $rc, ${dt}s)"; grep -v "^PASS " "$SCRATCH/$name.log"; } >>"$OUT/logs.txt"
  if [ $rc -eq 0 ]; then
    echo "PASS  $name (${dt}s) $tail_line" | tee -a "$SUMMARY"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "TIME  $name (killed after ${t}s) $tail_line" | tee -a "$SUMMARY"
  else
    echo "FAIL  $name (exit $rc, ${dt}s) $tail_line" | tee -a "$SUMMARY"
  fi
  return $rc
}

{
  echo "date: $(date -u)"
  timeout 20 nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  echo "cc: $(cc --version 2>&1 | head -n 1)"
  timeout 60 "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' 2>&1
} >"$OUT/machine.txt" 2>&1

NPROC=$(nproc 2>/dev/null || echo 4)
step build 240 make -j"$NPROC" BUILD="$BUILD" all "$BUILD/tests/run_programs" \
  "$BUILD/tests/test_cuda" || { echo "build failed: see $OUT/logs.txt"; exit 1; }

step test_cuda 120 "$BUILD/tests/test_cuda" || FAILED=1
step programs_cuda 300 "$BUILD/tests/run_programs" --target cuda tests/programs/*.tc || FAILED=1

if "$PYTHON" -c 'import torch, pytest; assert torch.cuda.is_available()' >/dev/null 2>&1; then
  export TENSORC_LIB="$ABS_BUILD/libtensorc.so"
  step pytest_gpu 150 "$PYTHON" -m pytest -q -x tests/gpu || FAILED=1
  # the Python package (its extension built in place) on CUDA tensors
  if step python_ext 180 "$PYTHON" setup.py -q build_ext --inplace \
       --build-temp "$ABS_BUILD/python"; then
    step pytest_package_cuda "${PACKAGE_CAP:-300}" \
      env PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" TENSORC_BIN="$ABS_BUILD/tensorc" \
      "$PYTHON" -m pytest -q -p no:cacheprovider tests/python/test_torch_cuda.py || FAILED=1
  else
    FAILED=1
  fi
else
  echo "SKIP  pytest_gpu (no torch with CUDA, or no pytest)" | tee -a "$SUMMARY"
fi

if [ "$BENCH" = 1 ]; then
  b=$(($(left) - 15))
  if [ "$b" -gt 30 ]; then
    step bench $((b + 10)) env TENSORC_CACHE_DIR="$SCRATCH/bench-cache" \
      "$PYTHON" bench/gpu_bench.py --lib "$ABS_BUILD/libtensorc.so" --out "$OUT" --deadline "$b"
  else
    echo "SKIP  bench (out of time)" | tee -a "$SUMMARY"
  fi
fi

echo "total $(($(date +%s) - START))s; results in $OUT" | tee -a "$SUMMARY"
exit $FAILED

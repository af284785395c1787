#!/usr/bin/env bash
# The GPU checks in one command, from the source tree (no install: PYTHONPATH=.):
#   (a) the GPU tests            python3 -m pytest -m gpu
#   (b) the conformance run      python3 -m conformance.cli run --device cuda --report DIR (--quick),
#       then our fused CUDA port alone on the full scenario set in float32 and bfloat16
#   (c) the benchmark            python3 -m conformance.gpu.bench --out DIR
# plus, when compute-sanitizer is on PATH, memcheck and racecheck of a small kernel workload.
# Each step runs under its own time limit and the script goes on when one fails; the summary says
# which failed.  Needs python3 with torch (CUDA), cupy, jax/optax, numpy, scipy, pytest,
# hypothesis; about 2-4 minutes on an H100.
#
# usage: bash conformance/gpu/run_gpu.sh [OUTDIR]      (default: $OUT, else ./gpu-results)
# env:   PYTHON (default python3); CLI_ARGS (extra arguments of `conformance.cli run`, default
#        --quick so that the whole script stays under 5 minutes; CLI_ARGS= runs the full set);
#        BENCH_ARGS (extra arguments of the benchmark, e.g. "--chunks 8192,65536");
#        CLI_FUSED_ARGS (extra arguments of the full check of our fused CUDA port);
#        RUN_GPU_PACK=1 packs the logs and report folders into details.tar.gz (few files);
#        RUN_GPU_SKIP="cli bench" skips steps by name (pytest, sanitize, cli, cli-fused, bench).
# Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
out=${1:-${OUT:-$root/gpu-results}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # jax must not take 75% of the GPU from torch
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
py=${PYTHON:-python3}
summary="$out/summary.txt"
: >"$summary"
failed=0

say() { echo "$*" | tee -a "$summary"; }

step() { # name limit_s command...
  local name=$1 limit=$2
  shift 2
  case " ${RUN_GPU_SKIP:-} " in *" $name "*)
    say "$(printf '%-7s skipped (RUN_GPU_SKIP)' "$name")"
    return 0
    ;;
  esac
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || failed=1
  local why=""
  [ "$rc" -eq 124 ] && why=" (timed out after ${limit}s)"
  say "$(printf '%-7s rc=%-3s %4ss%s  %s' "$name" "$rc" $((SECONDS - t0)) "$why" "$*")"
  tail -n 4 "$out/$name.log" | sed 's/^/        | /' | tee -a "$summary"
  return 0
}

say "# run_gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 |
  sed 's/^/# gpu: /' | tee -a "$summary"
"$py" - <<'EOF' 2>&1 | sed 's/^/# /' | tee -a "$summary"
import importlib
for mod in ("torch", "cupy", "jax", "optax", "numpy", "scipy", "hypothesis", "pytest"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as exc:
        print(f"{mod} MISSING ({type(exc).__name__}: {exc})")
import torch
print("torch.cuda.is_available:", torch.cuda.is_available(), "cuda", torch.version.cuda)
EOF

# (a) every test marked gpu (modules that cannot be imported here are reported, not fatal)
step pytest 150 "$py" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors

# (a2) the kernels under compute-sanitizer (memory errors, shared-memory races), when present
cs=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1)
if [ -n "$cs" ]; then
  step sanitize 120 bash -c "$cs --tool memcheck --error-exitcode 3 $py -m conformance.gpu.sanitize_check && $cs --tool racecheck --error-exitcode 3 $py -m conformance.gpu.sanitize_check"
else
  say "sanitize skipped (compute-sanitizer not on PATH)"
fi

# (b) the conformance run of every port on cuda
# shellcheck disable=SC2086
step cli 170 "$py" -m conformance.cli run --device cuda --no-progress \
  --report "$out/conformance-report" ${CLI_ARGS---quick}
# (b2) our fused CUDA port on the full scenario set, float32 and bfloat16
# shellcheck disable=SC2086
step cli-fused 120 "$py" -m conformance.cli run --device cuda --no-progress \
  --port 'ours.torch.SETAdam[[]fused[]]*' --dtype float32 --dtype bfloat16 \
  --report "$out/conformance-report-fused" ${CLI_FUSED_ARGS:-}

# (c) the benchmark (writes bench.md, bench.json)
# shellcheck disable=SC2086
step bench 150 "$py" -m conformance.gpu.bench --out "$out" ${BENCH_ARGS:-}

if [ "${RUN_GPU_PACK:-0}" = 1 ]; then # few files: summary.txt, bench.md, bench.json, details.tar.gz
  (cd "$out" && tar -czf details.tar.gz --remove-files -- *.log conformance-report* 2>/dev/null)
fi
say "# total ${SECONDS}s; $([ $failed = 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
[ -f "$out/bench.md" ] && cat "$out/bench.md"
exit $failed

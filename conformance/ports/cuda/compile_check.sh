#!/usr/bin/env bash
# Compile every CUDA source of conformance/ports/cuda with nvcc for sm_90 and sm_80, warnings
# (ptxas spills and local-memory use included) as errors.  Needs nvcc, no GPU.
# Exit 0 all compiled, 1 a compilation failed, 2 nvcc missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m conformance.ports.cuda.compile_check "$@"

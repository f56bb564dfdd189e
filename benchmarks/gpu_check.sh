#!/usr/bin/env bash
# Issue 4 section 6 on a CUDA machine, in one go: the GPU benchmark (the
# synchronizations of every kind of step, the probe's and the Trainer's cost
# against a bare loop) and the engine's tests, whose GPU-path ones are
# skipped elsewhere. Needs only a Python whose torch sees CUDA, with numpy,
# scikit-learn and pytest: nothing of the app (textual, plotext), whose tests
# are not run here.
#
#   bash benchmarks/gpu_check.sh [DIR]     # PYTHON=... to pick the interpreter
#
# Logs and the figures' table (gpu.md) go to DIR: by default $OUT where that
# is set (a lent machine's folder that comes back), else ./gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ! "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: $py sees no CUDA device" >&2
    exit 2
fi
{
    nvidia-smi
    "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} >"$out/machine.txt" 2>&1
"$py" -m benchmarks --only check,gpu --markdown "$out/gpu.md" 2>&1 | tee "$out/bench.log"
bench=${PIPESTATUS[0]}
"$py" -m pytest -q -p no:cacheprovider tests/test_engine_*.py 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
echo "gpu_check: benchmark exit $bench, engine tests exit $tests" | tee -a "$out/bench.log"
exit $((bench || tests))

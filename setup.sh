#!/usr/bin/env bash
# Create .venv and install gradtui into it: with --test the test tools, with --bench
# what the benchmarks compare against (tensorboard); both may be given.
# A torch already importable (a GPU box's own build) is kept; otherwise the small
# CPU build torch==2.13.0 is installed first, so pip never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    .venv/bin/pip install --quiet torch==2.13.0
fi
extras=()
for arg in "$@"; do
    case "$arg" in
        --test) extras+=(test) ;;
        --bench) extras+=(bench) ;;
        *) echo "setup.sh: unknown option $arg (known: --test, --bench)" >&2; exit 2 ;;
    esac
done
extra=""
if [ ${#extras[@]} -gt 0 ]; then
    extra="[$(IFS=,; echo "${extras[*]}")]"
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v "is ignored: it is neither" || true

#!/usr/bin/env bash
# Create .venv and install gradtui into it: with --test the test tools, with --bench
# what the benchmarks compare against (tensorboard); both may be given.
# A torch already importable (a GPU box's own build) is kept; otherwise the small
# CPU build torch==2.13.0 is installed first, so pip never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
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
# pip's notes about this machine's unused package locations are noise here.
quiet_pip() {
    .venv/bin/pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | grep -v "is ignored: it is neither" || true
}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    quiet_pip torch==2.13.0
    # Without it, the install below would fetch torch's multi-GB CUDA build.
    .venv/bin/python -c "import torch" >/dev/null 2>&1 \
        || { echo "setup.sh: installing torch==2.13.0 failed" >&2; exit 1; }
fi
quiet_pip -e ".${extra}"
.venv/bin/python -c "import tui.app" >/dev/null 2>&1 \
    || { echo "setup.sh: installing gradtui failed (see pip's messages above)" >&2; exit 1; }

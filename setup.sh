#!/usr/bin/env bash
# Create .venv and install gradtui into it (with the test tools when given --test).
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
extra=""
if [ "${1:-}" = "--test" ]; then
    extra="[test]"
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v "is ignored: it is neither" || true

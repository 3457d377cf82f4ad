#!/usr/bin/env bash
# The main job on the bundled example matrix, as fast as a fresh host allows: the plan first, then
# each cell built and tested in turn (devel, then its slim runtime), then the record. Only what the
# main job needs is installed here; the tests' own prerequisites are scripts/test.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
run() { local s; s=$(date +%s); printf '$ %s\n' "$*"; "$@"; printf '(%s s; %s s in all)\n' "$(( $(date +%s) - s ))" "$(( $(date +%s) - t0 ))"; }

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
run "$py" -m pip install -qq --disable-pip-version-check -e .   # the tests' extras: scripts/test.sh

M=examples/matrix.yaml
run imagematrix build --matrix $M --dry-run # the plan: cells in order, their stages and docker commands
run env IMAGEMATRIX_BASE_SUITES=trixie bash scripts/bootstrap-host.sh   # Docker, BuildKit, the example's base
for target in devel runtime; do
  run imagematrix build --matrix $M --target $target
  run imagematrix test --matrix $M --target $target
done
run imagematrix status --matrix $M

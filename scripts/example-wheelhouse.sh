#!/usr/bin/env bash
# Fill examples/cpu.wheelhouse: torch 2.13.0+cpu for CPython 3.11 and what it depends on (about 200 MB).
# The one CPU build of torch this network reaches; builds of examples/cpu.yaml install from it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=examples/cpu.wheelhouse
python3 -m pip download -q --only-binary :all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
  --implementation cp -d "$dest" "torch==2.13.0"
ls "$dest"/torch-*.whl

#!/usr/bin/env bash
# Fill an example's wheelhouse; its builds install from it alone.
#   bash scripts/example-wheelhouse.sh            examples/cpu.wheelhouse: torch 2.13.0+cpu for CPython 3.11 (about 200 MB),
#                                                 the one CPU build of torch this network reaches
#   bash scripts/example-wheelhouse.sh notebooks  examples/notebooks.wheelhouse: JupyterLab 4.5.0 and torch 2.13.0+cpu (about 250 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-cpu}
case "$example" in
  cpu) wants=("torch==2.13.0") ;;
  notebooks) wants=("jupyterlab==4.5.0" "torch==2.13.0") ;;
  *) echo "no wheelhouse for example '$example' (cpu, notebooks)" >&2; exit 2 ;;
esac
dest=examples/$example.wheelhouse
# Several platform tags: some dependencies publish manylinux2014 wheels only.
python3 -m pip download -q --only-binary :all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" "${wants[@]}"
ls "$dest"/torch-*.whl

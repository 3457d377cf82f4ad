#!/usr/bin/env bash
# Builds the mutants: one shared object per way of shipping (or not shipping) device code for a GPU,
# each with the same kernel (kernel.cu). They are small (a few KB) and committed; rerun this to remake them.
# nvcc comes from NVIDIA's wheels on PyPI (no CUDA toolkit needed): 13.0 for most, 13.2 for PTX that a
# driver of the 580 branch (CUDA 13.0) cannot JIT-compile.
set -euo pipefail
cd "$(dirname "$0")"
work=${MUTANTS_WORK:-/tmp/imagematrix-mutants}
nvcc_env() {  # nvcc_env VERSION: a venv with nvcc VERSION and what it needs to compile device code
  local v=$1 venv="$work/nvcc-$1"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "nvidia-cuda-nvcc==$v" "nvidia-nvvm==$v" \
      "nvidia-cuda-crt==$v" "nvidia-cuda-runtime==${v%.*}.*" 2>&1 | grep -v '^WARNING' || true
  fi
  echo "$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
}
build() {  # build VERSION NAME GENCODE...
  local version=$1 name=$2 cu; cu=$(nvcc_env "$1"); shift 2
  PATH="$cu/bin:$PATH" nvcc -shared -Xcompiler -fPIC -cudart none "$@" kernel.cu -o "files/libimx_$name.so"
  echo "files/libimx_$name.so: nvcc $version $*"
}
build 13.0.88 sm80  -gencode arch=compute_80,code=sm_80        # SASS for sm_80 only: no kernel for 9.0 (209)
build 13.0.88 ptx80 -gencode arch=compute_80,code=compute_80   # PTX 9.0 only: JIT-compiled on any newer GPU
build 13.0.88 sm90  -gencode arch=compute_90,code=sm_90        # SASS for Hopper
build 13.0.88 sm90a -gencode arch=compute_90a,code=sm_90a      # arch-specific SASS: exactly 9.0
build 13.0.88 sm100 -gencode arch=compute_100,code=sm_100      # SASS for Blackwell only: no kernel for 9.0 (209)
build 13.2.78 ptx92 -gencode arch=compute_90,code=compute_90   # PTX 9.2: a 580 driver cannot JIT it (222)
ls -l files/

#!/usr/bin/env bash
# Builds the mutants: one shared object per way of shipping (or not shipping) device code for a GPU,
# each with the same kernel (kernel.cu). They are small (a few KB) and committed; FORCE=1 remakes those that exist.
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
  [ -e "files/libimx_$name.so" ] && [ -z "${FORCE:-}" ] && return  # kept: the proofs measured these bytes
  PATH="$cu/bin:$PATH" nvcc -shared -Xcompiler -fPIC -cudart none "$@" kernel.cu -o "files/libimx_$name.so"
  echo "files/libimx_$name.so: nvcc $version $*"
}
build 13.0.88 sm80  -gencode arch=compute_80,code=sm_80        # SASS for sm_80 only: no kernel for 9.0 (209)
build 13.0.88 ptx80 -gencode arch=compute_80,code=compute_80   # PTX 9.0 only: JIT-compiled on any newer GPU
build 13.0.88 sm90  -gencode arch=compute_90,code=sm_90        # SASS for Hopper
build 13.0.88 sm90a -gencode arch=compute_90a,code=sm_90a      # arch-specific SASS: exactly 9.0
build 13.0.88 sm100 -gencode arch=compute_100,code=sm_100      # SASS for Blackwell only: no kernel for 9.0 (209)
build 13.2.78 ptx92 -gencode arch=compute_90,code=compute_90   # PTX 9.2: a 580 driver cannot JIT it (222)

# Device code the audit finds outside shared objects (files loaded at run time, executables), and what JIT
# toolchains make: each carries the same kernel, for a GPU it does or does not run on.
carrier() {  # carrier VERSION FILE NVCC-ARGS...: nvcc -cubin/-fatbin/-ptx/an executable into files/
  local version=$1 out=$2 cu; cu=$(nvcc_env "$1"); shift 2
  [ -e "files/$out" ] && [ -z "${FORCE:-}" ] && return
  ln -sf libcudart.so.13 "$cu/lib/libcudart.so"  # the wheels ship only the versioned name
  PATH="$cu/bin:$PATH" nvcc "$@" -L"$cu/lib" -o "files/$out"
  echo "files/$out: nvcc $version $*"
}
carrier 13.0.88 imx_sm86.cubin  -cubin -arch=sm_86 kernel.cu                          # no kernel for 9.0 (209)
carrier 13.0.88 imx_sm90.cubin  -cubin -arch=sm_90 kernel.cu                          # runs on 9.0
carrier 13.0.88 imx_sm86.fatbin -fatbin -gencode arch=compute_86,code=sm_86 kernel.cu # no kernel for 9.0 (209)
carrier 13.0.88 imx_ptx80.fatbin -fatbin -Xfatbin -compress-all -gencode arch=compute_80,code=compute_80 kernel.cu  # compressed PTX 9.0: JIT
carrier 13.0.88 imx_ptx90.ptx   -ptx -arch=compute_80 kernel.cu                       # PTX 9.0: any 13.x driver JITs it
carrier 13.2.78 imx_ptx92.ptx   -ptx -arch=compute_90 kernel.cu                       # PTX 9.2: a 580 driver cannot (222)
carrier 13.0.88 imx_exe_sm86 -cudart shared -gencode arch=compute_86,code=sm_86 carriers.cu  # an executable, sm_86 only
carrier 13.0.88 imx_exe_sm90 -cudart shared -gencode arch=compute_90,code=sm_90 carriers.cu  # an executable for Hopper
# NVRTC 13.2 (PyPI's nvidia-cuda-nvrtc), the way a program compiles at run time: PTX (ISA 9.2) and SASS for sm_90.
nvrtc=$work/nvrtc-13.2
[ -x "$nvrtc/bin/python" ] || { python3 -m venv "$nvrtc" && "$nvrtc/bin/pip" install -q --disable-pip-version-check nvidia-cuda-nvrtc==13.2.78; }
"$nvrtc/bin/python" nvrtc.py kernel.cu files/imx_nvrtc132.ptx --gpu-architecture=compute_90
"$nvrtc/bin/python" nvrtc.py kernel.cu files/imx_nvrtc132_sm90.cubin --gpu-architecture=sm_90
ls -l files/

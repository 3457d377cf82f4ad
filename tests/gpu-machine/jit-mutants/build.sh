#!/usr/bin/env bash
# Builds the JIT-toolchain mutants on a build host (the example's devel image must be built first:
# imagematrix build --matrix examples/matrix.yaml --target devel) and measures what can be measured
# without a GPU: torch refusing an nvcc of another major. Their predictions: tests/gpu-machine/carriers_table.py.
set -euo pipefail
cd "$(dirname "$0")"
ca=/etc/ssl/certs/ca-certificates.crt
[ -f ptxas-11.7 ] || { xz -dc ../../../.carry/apps/ptxas-11.7.xz > ptxas-11.7 2>/dev/null \
  || { python3 -m pip download -q --no-deps -d /tmp/ptxas117 nvidia-cuda-nvcc-cu11==11.7.99 \
       && unzip -p /tmp/ptxas117/*.whl nvidia/cuda_nvcc/bin/ptxas > ptxas-11.7; }; chmod +x ptxas-11.7; }
docker buildx build --load -q --secret id=ca-bundle,src=$ca -f nvcc-mismatch.Dockerfile -t imagematrix-mutant/jit:nvcc-mismatch .
docker buildx build --load -q -f triton-old-ptxas.Dockerfile -t imagematrix-mutant/jit:triton-old-ptxas .
docker run --rm -v "$PWD/measure_nvcc.py:/x.py:ro" imagematrix-mutant/jit:nvcc-mismatch /opt/venv/bin/python /x.py 2>/dev/null \
  | grep -E "^(load_inline|setup.py)" | tee ../results/nvcc-mismatch.txt

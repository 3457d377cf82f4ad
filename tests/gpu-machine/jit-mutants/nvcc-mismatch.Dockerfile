# torch 2.10.0 (CUDA 12.8) beside nvcc 13.0 from NVIDIA's wheels, as CUDA_HOME: torch refuses to build a
# CUDA extension with an nvcc of another major. The oracle predicts cpp_extension ❌; build.sh measures it.
FROM debian:trixie-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-dev g++ ninja-build ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=ca-bundle,mode=0444 \
    if [ -r /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi && \
    python3 -m venv /opt/venv && /opt/venv/bin/pip install -q torch==2.10.0 \
      "cuda-toolkit[nvcc,cudart,cccl,crt]==13.0.2" nvidia-nvvm==13.0.88 \
    && ln -sf libcudart.so.13 /opt/venv/lib/python3.13/site-packages/nvidia/cu13/lib/libcudart.so
ENV CUDA_HOME=/opt/venv/lib/python3.13/site-packages/nvidia/cu13 \
    PATH=/opt/venv/lib/python3.13/site-packages/nvidia/cu13/bin:/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

#!/usr/bin/env bash
# Packs what the GPU machine lacks for the Ray and marimo checks and the oracle's JIT mutants, within one
# device call's 64 MiB: the machine has no network and its python3 (3.12) has torch but no ray or marimo.
#   .carry/apps/site.tar.xz  ray 2.60.0 + marimo 0.25.2 and their needs, for CPython 3.12 (manylinux),
#                            installed into one folder, without what the checks never load (Ray's Java
#                            jars, RLlib, Data, Serve, Train, Tune, LLM and dashboard UI; marimo's Copilot
#                            language server), binaries stripped, xz: about 44 MB
#   .carry/apps/ptxas-11.7.xz  CUDA 11.7's ptxas (PyPI's nvidia-cuda-nvcc-cu11): a Triton JIT toolchain that
#                            predates Hopper, for the oracle's torch.compile mutant: about 3 MB
# Run from the repository's root; then, on the GPU machine (carry [".carry/apps"]):
#   bash scripts/gpu-machine-proof.sh apps      # the Ray and marimo checks in host mode, then over-claimed
#   bash scripts/gpu-machine-proof.sh carriers  # device code outside shared objects and JIT toolchains, launched
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out="$root/.carry/apps"
grep -qx '/.carry/' "$root/.git/info/exclude" 2>/dev/null || echo '/.carry/' >> "$root/.git/info/exclude"
mkdir -p "$out"
pip_for_312=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64)
if [ ! -s "$out/site.tar.xz" ]; then
  site=$(mktemp -d)
  python3 -m pip install -q --disable-pip-version-check --target "$site" "${pip_for_312[@]}" \
    ray==2.60.0 marimo==0.25.2
  (cd "$site" && rm -rf ray/jars ray/rllib ray/data ray/serve ray/train ray/tune ray/llm ray/dashboard/client \
    marimo/_lsp/copilot && find . -name __pycache__ -prune -exec rm -rf {} + \
    && strip --strip-unneeded ray/_raylet.so ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet)
  tar -C "$site" -c . | xz -6 -T0 > "$out/site.tar.xz.part"
  mv "$out/site.tar.xz.part" "$out/site.tar.xz"
  rm -rf "$site"
fi
if [ ! -s "$out/ptxas-11.7.xz" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" nvidia-cuda-nvcc-cu11==11.7.99
  unzip -q -o "$tmp"/*.whl 'nvidia/cuda_nvcc/bin/ptxas' -d "$tmp"
  xz -9 -c "$tmp/nvidia/cuda_nvcc/bin/ptxas" > "$out/ptxas-11.7.xz"
  rm -rf "$tmp"
fi
du -sh "$out"/*

{#
  The CUDA compiler and headers from NVIDIA's PyPI wheels (no CUDA base image needed), for
  families whose extensions are built with CUDA (cuda.<ver>.extensions: cuda). The pins come from
  packages: cuda-toolkit (the meta-package) and nvidia-nvvm (it must equal nvcc's own version: a newer
  libnvvm emits PTX that this ptxas rejects, "Unsupported .version").
#}
{% if cuda.extensions == "cuda" %}
{% set major = cuda.torch_cuda.split(".")[0] %}
{% set cuda_home = "/opt/venv/lib/python" ~ python ~ "/site-packages/nvidia/cu" ~ major %}
# nvcc {{ packages["cuda-toolkit"] }} and headers from NVIDIA's wheels into the venv; CUDA_HOME points at them.
RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install "{{ pin("cuda-toolkit", extras="nvcc,cudart,cccl,crt") }}" "nvidia-nvvm=={{ packages["nvidia-nvvm"] }}" \
    && ln -sf libcudart.so.{{ major }} {{ cuda_home }}/lib/libcudart.so \
    && {{ cuda_home }}/bin/nvcc --version
# A glibc that declares rsqrt/rsqrtf itself (forky's) declares them noexcept; older CUDA headers do
# not, and every .cu file fails ("exception specification is incompatible"). Where the OS header has
# them and CUDA's lacks the specifier, add it as newer CUDA releases do.
RUN h={{ cuda_home }}/include/crt/math_functions.h \
    && if grep -qs 'rsqrt' /usr/include/*-linux-gnu/bits/mathcalls.h && ! grep -q 'rsqrt(double x) [_n]' "$h"; then \
         sed -i -E 's/^(extern .*__device_builtin__ +(double|float) +rsqrtf?\((double|float) x\));/\1 noexcept(true);/; s/^(__func__\((double|float) rsqrtf?\((double|float) a\))\);/\1 noexcept(true));/' "$h" \
         && echo "rsqrt/rsqrtf in $h marked noexcept, as glibc declares them"; \
       fi
ENV CUDA_HOME={{ cuda_home }} PATH={{ cuda_home }}/bin:$PATH
{% else %}
# No CUDA compiler for this family (cuda.{{ cuda.version }}.extensions: cpu): extensions build CPU-only.
{% endif %}

# PyG's compiled extensions, built from source against this torch{% if cuda.extensions == "cuda" %} for the matrix's GPU architectures{% else %}, CPU-only (cuda.{{ cuda.version }}.extensions: cpu){% endif %}.
{% if cuda.extensions == "cuda" %}
ENV TORCH_CUDA_ARCH_LIST="{{ cuda.arch_list }}" FORCE_CUDA=1 CCACHE_DIR=/root/.cache/ccache
{% else %}
ENV FORCE_ONLY_CPU=1 CCACHE_DIR=/root/.cache/ccache
{% endif %}
# No pip cache: pip keys the wheels it builds by sdist alone, so a shared cache hands a wheel built
# against one torch to the next. BuildKit's layer cache and ccache remain.
# PyG's setup.py files turn ninja off, so each extension compiles one file at a time: build the
# extensions of a package side by side instead (setuptools' build_ext --parallel, one per CPU).
RUN --mount=type=cache,target=/root/.cache/ccache {{ secret_mount }} \
    {{ with_ca }} \
    printf '[build_ext]\nparallel = %s\n' "$(nproc)" > /tmp/imagematrix-build-ext.cfg && \
    PATH=/usr/lib/ccache:$PATH DIST_EXTRA_CONFIG=/tmp/imagematrix-build-ext.cfg \
    python -m pip install --no-cache-dir --no-build-isolation{% for ext in pyg_extensions %} {{ pin(ext) }}{% endfor %} \
    && rm /tmp/imagematrix-build-ext.cfg

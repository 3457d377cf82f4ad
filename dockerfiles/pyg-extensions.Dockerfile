# PyG's compiled extensions, built from source against this torch{% if cuda.extensions == "cuda" %} for the matrix's GPU architectures{% else %}, CPU-only (cuda.{{ cuda.version }}.extensions: cpu){% endif %}.
{% if cuda.extensions == "cuda" %}
ENV TORCH_CUDA_ARCH_LIST="{{ cuda.arch_list }}" FORCE_CUDA=1 CCACHE_DIR=/root/.cache/ccache
{% else %}
ENV FORCE_ONLY_CPU=1 CCACHE_DIR=/root/.cache/ccache
{% endif %}
# No pip cache: pip keys the wheels it builds by sdist alone, so a shared cache hands a wheel built
# against one torch to the next. BuildKit's layer cache and ccache remain.
# One package at a time, each parallel in the one way it can be without racing. A setup.py that turns
# ninja off (use_ninja=False: torch_scatter, torch_cluster, torch_spline_conv) compiles one file at a
# time, so its extensions are built side by side (setuptools' build_ext --parallel). One that keeps
# ninja (torch_sparse) compiles each extension's files in parallel (MAX_JOBS), and its extensions must
# go one after another: each writes build.ninja into the one build directory they share.
RUN --mount=type=cache,target=/root/.cache/ccache {{ secret_mount }} \
    {{ with_ca }} \
    printf '[build_ext]\nparallel = %s\n' "$(nproc)" > /tmp/imagematrix-build-ext.cfg && \
    for spec in{% for ext in pyg_extensions %} {{ pin(ext) }}{% endfor %}; do \
      rm -rf /tmp/imagematrix-sdist && mkdir -p /tmp/imagematrix-sdist/src && \
      python -m pip download --no-cache-dir --no-deps --no-binary :all: --no-build-isolation -q \
        -d /tmp/imagematrix-sdist "$spec" && \
      tar -xzf /tmp/imagematrix-sdist/*.tar.gz -C /tmp/imagematrix-sdist/src --wildcards '*/setup.py' && \
      if grep -Eq 'use_ninja *= *False' /tmp/imagematrix-sdist/src/*/setup.py; then \
        cfg=/tmp/imagematrix-build-ext.cfg; echo "$spec: no ninja; its extensions side by side ($(nproc))"; \
      else \
        cfg=/dev/null; echo "$spec: ninja, $(nproc) jobs; its extensions one after another"; \
      fi && \
      PATH=/usr/lib/ccache:$PATH DIST_EXTRA_CONFIG=$cfg MAX_JOBS=$(nproc) \
        python -m pip install --no-cache-dir --no-build-isolation /tmp/imagematrix-sdist/*.tar.gz || exit 1; \
    done && \
    rm -rf /tmp/imagematrix-build-ext.cfg /tmp/imagematrix-sdist

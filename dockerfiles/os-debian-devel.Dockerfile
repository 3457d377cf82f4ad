# Debian's own Python {{ python }} with headers, and the compilers source builds need.
ENV DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates{% if pyg_extensions %} ccache{% endif %} g++{% if packages.get("gxx") %}-{{ packages.gxx }}{% endif %} ninja-build \
        python{{ python }} python{{ python }}-dev python{{ python }}-venv
{% if packages.get("gxx") %}
# g++-{{ packages.gxx }}: the newest host compiler nvcc and torch's extension builds accept here.
ENV CC=gcc-{{ packages.gxx }} CXX=g++-{{ packages.gxx }} NVCC_CCBIN=g++-{{ packages.gxx }}
{% endif %}

# The interpreter the copied venv points at, plus what cpp_extension needs (g++, ninja, Python.h).
# No CUDA packages: the torch wheels in the venv carry cudart, cuDNN, cuBLAS and NCCL.
# Manuals, docs and translations of these packages are never unpacked (copyright files stay).
ENV DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*' \
        > /etc/dpkg/dpkg.cfg.d/imagematrix-slim \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates g++{% if packages.get("gxx") %}-{{ packages.gxx }}{% endif %} ninja-build python{{ python }} python{{ python }}-dev{% if options.get("drop_static_libs") %} \
    && rm -f /usr/lib/python{{ python }}/config-*/libpython*.a /usr/lib/*-linux-gnu/libpython{{ python }}*.a{% endif %}

{% if packages.get("gxx") %}
ENV CC=gcc-{{ packages.gxx }} CXX=g++-{{ packages.gxx }}
{% endif %}

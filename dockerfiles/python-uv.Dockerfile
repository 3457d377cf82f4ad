# A relocatable CPython {{ python }} (uv's standalone builds) in /opt/python and a venv in /opt/venv,
# so runtime images can copy both without conda.
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_LINK_MODE=copy
RUN --mount=type=cache,target=/root/.cache {{ secret_mount }} \
    {{ with_ca }} \
    python3 -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --no-compile "uv=={{ packages.uv }}" \
    && /tmp/uv/bin/uv python install {{ python }} \
    && /tmp/uv/bin/uv venv --seed --python {{ python }} /opt/venv \
    && rm -rf /tmp/uv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

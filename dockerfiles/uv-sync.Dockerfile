# The environment from the team's own lock ({{ uv_lock.project.name }}/uv.lock, sha256 {{ uv_lock.sha256[:16] }}):
# `uv sync --frozen` installs exactly what it pins into /opt/venv with Debian's Python {{ python }}; nothing is
# resolved here. uv comes from PyPI ({{ pin("uv") }}) and leaves no trace in the image.
COPY {{ uv_project }}/ /opt/imagematrix/uv-project/
RUN --mount=type=cache,target=/root/.cache/uv {{ secret_mount }} \
    {{ with_ca }} \
    python{{ python }} -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --no-compile {{ pin("uv") }} \
    && UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
       /tmp/uv/bin/uv sync --project /opt/imagematrix/uv-project --frozen --no-dev --no-install-project \
       --python /usr/bin/python{{ python }} \
    && rm -rf /tmp/uv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

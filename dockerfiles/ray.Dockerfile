RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install "{{ pin("ray", extras="default") }}"

# JupyterLab {{ packages.jupyterlab or "(newest)" }} into the environment; `jupyter lab` serves it.
RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install {{ pin("jupyterlab") }}

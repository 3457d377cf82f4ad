# PyTorch Geometric (pure Python); compiled extensions come from pyg-extensions.
RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install {{ pin("torch_geometric") }}

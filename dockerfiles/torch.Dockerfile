{% if cuda.cpu %}
# torch {{ packages.torch or "(newest)" }}, a CPU build (the cpu family): no CUDA libraries.
{% else %}
# torch {{ packages.torch or "(newest)" }} built for CUDA {{ cuda.torch_cuda }}; its wheels carry the CUDA runtime libraries.
{% endif %}
RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install {{ pin("torch") }}{% if cuda.torch_index %} --index-url {{ cuda.torch_index }}{% endif %}


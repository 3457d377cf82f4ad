{# Installed only by targets that list this fragment: runtime images do not carry torchvision/torchaudio
   unless their parent asks (and a slim child can still drop them: options.drop_packages). #}
{% set extras = options.get("torch_extras", "torchvision torchaudio").split() %}
# torch's companions this target asks for ({{ extras | join(", ") }}), from the same index as torch; pins from packages:.
RUN --mount=type=cache,target=/root/.cache/pip {{ secret_mount }} \
    {{ with_ca }} \
    python -m pip install{% for name in extras %} {{ pin(name) }}{% endfor %}{% if cuda.torch_index %} --index-url {{ cuda.torch_index }}{% endif %}


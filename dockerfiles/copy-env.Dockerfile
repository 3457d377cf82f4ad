{% set env_dir = options.get("env_dir", "/opt/venv") %}
# The environment, pruned in {{ source_stage }}. Nothing after this line may write under {{ env_dir }}:
# a RUN chmod/chown (or any change) to copied files stores every one of them again in a new layer.
COPY --from={{ source_stage }} {{ env_dir }} {{ env_dir }}
ENV VIRTUAL_ENV={{ env_dir }} PATH={{ env_dir }}/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

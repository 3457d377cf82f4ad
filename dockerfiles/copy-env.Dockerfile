# The environment, pruned in {{ source_stage }}. Nothing after this line may write under /opt/venv:
# a RUN chmod/chown (or any change) to copied files stores every one of them again in a new layer.
COPY --from={{ source_stage }} /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

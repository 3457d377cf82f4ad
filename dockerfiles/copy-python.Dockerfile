# The relocatable interpreter (python-uv) the venv's bin/python points at; never modified after the copy.
COPY --from={{ source_stage }} /opt/python /opt/python

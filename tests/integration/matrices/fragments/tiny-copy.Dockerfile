COPY --from={{ source_stage }} /opt/venv /opt/venv

COPY --from={{ source_stage }} /opt/python /opt/python

RUN rm -rf /opt/venv/cache

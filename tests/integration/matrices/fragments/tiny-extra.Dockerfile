RUN echo "{{ stage }}" > /opt/venv/extra

# The team's own trim of the environment before the slim copy takes it: caches, pip itself, docs.
RUN find /opt/venv -type d -name __pycache__ -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python{{ python }}/site-packages/pip /opt/venv/share

# The team's tools: one library from PyPI and a command of their own.
RUN {{ secret_mount }} {{ with_ca }} python -m pip install --no-cache-dir "{{ pin("attrs") }}"
RUN printf '#!/opt/venv/bin/python\nimport attrs\nprint("ops", attrs.__version__)\n' > /opt/venv/bin/ops-tool \
    && chmod 0755 /opt/venv/bin/ops-tool

# Debian's Python {{ python }}.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python{{ python }} python{{ python }}-venv && rm -rf /var/lib/apt/lists/*

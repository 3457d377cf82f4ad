# The plain base: Debian's Python {{ python }} only, no venv tooling.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python{{ python }} && rm -rf /var/lib/apt/lists/*

# A "venv" with a payload, and a cache the slim runtime leaves behind. The CA bundle
# secret must be readable here and absent from the image.
RUN {{ secret_mount }} \
    mkdir -p /opt/venv/cache \
    && test -s /run/secrets/ca-bundle \
    && grep -c "BEGIN CERTIFICATE" /run/secrets/ca-bundle > /opt/venv/ca-certificates-seen \
    && head -c 4000000 /dev/urandom > /opt/venv/payload \
    && head -c 16000000 /dev/urandom > /opt/venv/cache/blob \
    && echo "{{ stage }} for Python {{ python }}" > /opt/venv/marker

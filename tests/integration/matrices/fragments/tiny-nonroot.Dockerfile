# A network step as another user (USER 1000): the CA bundle secret must be readable there too.
USER 1000
RUN {{ secret_mount }} \
    {{ with_ca }} \
    test -n "${PIP_CERT:-}" && grep -c "BEGIN CERTIFICATE" "$PIP_CERT" > /tmp/ca-seen-as-1000
USER root

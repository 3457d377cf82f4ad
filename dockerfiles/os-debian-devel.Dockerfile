# Debian's own Python {{ python }} with headers, and the compilers source builds need.
ENV DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates g++ ninja-build \
        python{{ python }} python{{ python }}-dev python{{ python }}-venv

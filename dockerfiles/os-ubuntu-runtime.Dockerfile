# A plain OS: the torch wheels bring cudart, cuDNN, cuBLAS and NCCL themselves.
# g++ stays so torch.utils.cpp_extension and torch.compile still build C++ here.
ENV DEBIAN_FRONTEND=noninteractive
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates g++ ninja-build

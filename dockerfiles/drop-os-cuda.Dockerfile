# A base that came with CUDA libraries in the OS (cuDNN, NCCL, cuBLAS from its own packages): the
# environment's torch wheels carry their own, so a second copy is only weight. Owning packages are
# purged (dpkg needs no network); files no package owns are deleted.
RUN files=$(find /usr/lib /usr/lib64 /usr/local/lib -xdev \( -name 'libcudart.so*' -o -name 'libcublas*.so*' \
        -o -name 'libcudnn*.so*' -o -name 'libnccl.so*' -o -name 'libcusparse.so*' \) 2>/dev/null) \
    && if [ -n "$files" ]; then \
        pkgs=$(dpkg-query -S $files 2>/dev/null | sed 's/:.*//' | tr ', ' '\n\n' | sort -u) \
        && if [ -n "$pkgs" ]; then dpkg --purge --force-depends $pkgs >/dev/null; fi \
        && rm -f $files && ldconfig; \
    fi

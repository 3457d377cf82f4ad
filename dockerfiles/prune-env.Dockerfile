# Runs on a throw-away copy of the parent: what is removed here never reaches the runtime layers.
# Kept on purpose (cpp_extension, profilers): torch/include, torch/share, functorch, NVIDIA headers.
RUN find /opt/venv -depth \( -name __pycache__ -o -name '*.py[co]' \) -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python{{ python }}/site-packages/torch/test{% if options.drop_static_libs %} \
    && find /opt/venv -name '*.a' -delete{% endif %}{% if options.strip_debug %} \
    && find /opt/venv -name '*.so*' -type f -exec strip --strip-debug {} +{% endif %}


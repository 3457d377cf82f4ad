{#
  Runtime policy of the sheet, applied to a throw-away copy of the parent (FROM <parent> AS prune-<target>):
  what is removed here never reaches the runtime layers, which only COPY from this stage.
  Always: __pycache__/.pyc; test suites (tests/, test/: torch/test, CPython's own test package) unless keep_tests.
  Per target (targets.<name>.options): keep_tests, strip_debug, drop_static_libs, drop_packages ("torchvision torchaudio"),
  env_dir (the environment's directory, default /opt/venv).
  Kept on purpose: torch/include, torch/share, functorch, NVIDIA headers (any include/ tree is never
  touched, so torch.utils.cpp_extension still builds), and the .so files' own symbol tables.
#}
{% set roots = [options.get("env_dir", "/opt/venv"), "/opt/python"] %}
{% set drop_dirs = ["__pycache__"] if options.get("keep_tests") else ["__pycache__", "tests", "test"] %}
# Trees the runtime stage copies; missing ones are skipped. include/ trees are kept whole (cpp_extension headers).
{% if options.get("drop_packages") %}
# Packages the parent has and this target does not ship (targets.{{ target.name }}.options.drop_packages).
RUN {{ (["python", "-m", "pip", "uninstall", "--yes"] + options.get("drop_packages", "").split()) | tojson }}
{% endif %}
RUN set -eu; \
    for root in {{ roots | join(" ") }}; do \
      [ -d "$root" ] || continue; \
      find "$root" -path '*/include' -prune -o -type d \( {% for d in drop_dirs %}-name '{{ d }}'{% if not loop.last %} -o {% endif %}{% endfor %} \) -prune -exec rm -rf {} + ; \
      find "$root" -type f -name '*.py[co]' -delete; \
{% if options.get("drop_static_libs") %}
      find "$root" -type f -name '*.a' -delete; \
{% endif %}
{% if options.get("strip_debug") %}
      command -v strip >/dev/null || { echo "strip_debug: no 'strip' in the {{ target.parent }} stage; install binutils there or set targets.{{ target.name }}.options.strip_debug: false" >&2; exit 1; }; \
{# -links 1: strip rewrites a file, so a hard-linked one would be stored twice in the copy. #}
      find "$root" -type f -links 1 \( -name '*.so' -o -name '*.so.*' \) -exec sh -c 'for f; do if [ "$(head -c 4 "$f")" = "$(printf "\177ELF")" ]; then strip --strip-debug "$f" || exit 1; fi; done' sh {} + ; \
{% endif %}
    done

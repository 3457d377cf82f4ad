#!/usr/bin/env bash
# torch_scatter's CPU build with and without setuptools' build_ext --parallel (what the pyg-extensions
# fragment sets through DIST_EXTRA_CONFIG), inside an image that has torch and g++:
#   for par in 1 0; do docker run --rm -e PAR=$par -v $PWD/benchmarks/pyg_extension_parallel.sh:/b.sh:ro \
#     -v $PWD/tests/gpu-machine/wheelhouse:/wh:ro imagematrix/example:cu13.2-py3.13-devel bash /b.sh; done
# (scripts/gpu-machine-wheelhouse.sh puts the sdist in tests/gpu-machine/wheelhouse.) Prints the seconds.
set -e
cd /tmp && tar xzf /wh/torch_scatter-2.1.2.tar.gz && cd torch_scatter-2.1.2
export FORCE_ONLY_CPU=1
if [ "$PAR" = 1 ]; then printf '[build_ext]\nparallel = %s\n' "$(nproc)" > /tmp/par.cfg; export DIST_EXTRA_CONFIG=/tmp/par.cfg; fi
s=$(date +%s); python -m pip wheel --no-build-isolation --no-deps -q . -w /tmp/out >/tmp/b.log 2>&1 || { tail -20 /tmp/b.log; exit 1; }
echo "PAR=$PAR $(( $(date +%s) - s )) s"; ls /tmp/out

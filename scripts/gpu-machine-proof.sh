#!/usr/bin/env bash
# The project's real GPU path on a GPU machine without a registry or network: invoke build, then the
# suite in containers, then images that lie about themselves. Run from the repository's root there,
# with .carry/gpu (a Docker engine and its up.sh, which gives containers the GPUs through CDI and
# imports the bases of tests/gpu-machine/matrix.yaml) and tests/gpu-machine/wheelhouse
# (scripts/gpu-machine-wheelhouse.sh) copied beside it:
#
#   bash scripts/gpu-machine-proof.sh oracle   # alone: mutants and cells predicted vs measured; reuse; a signed result
#   bash scripts/gpu-machine-proof.sh evidence # alone: invoke build and nox with a signing key; both statements verified
#   bash scripts/gpu-machine-proof.sh start    # engine + bases; invoke build, detached
#   bash scripts/gpu-machine-proof.sh profile  # meanwhile: the devel cell's smoke cold, warm, by workers; its full suite
#   bash scripts/gpu-machine-proof.sh doctor   # alone: invoke doctor, then the devel cell's smoke cold, warm, by workers
#   bash scripts/gpu-machine-proof.sh host     # host mode, full suite (runners without Docker)
#   bash scripts/gpu-machine-proof.sh speed    # wait for the build; each cell's smoke alone, cold then warm twice
#   bash scripts/gpu-machine-proof.sh finish   # smoke with the cells at once, full, liars
#   bash scripts/gpu-machine-proof.sh collect  # the record, each run's gpu.json and the report, in $OUT
#   bash scripts/gpu-machine-proof.sh parallel # alone: three cells of one image, one after another vs at once
#   bash scripts/gpu-machine-proof.sh apps     # the Ray and marimo checks in host mode, then over-claimed (.carry/apps)
#   bash scripts/gpu-machine-proof.sh carriers # device code outside shared objects and JIT toolchains, launched
#
# A device call runs at most 10 minutes: when `speed` does not fit after `start`, send it again
# at once, while the machine is warm (30 s), and it picks up the build where it is. Wrap each step
# in `timeout` below the call's limit and pack $OUT after it: a call killed at its limit brings
# nothing back, e.g.  OUT=/tmp/proof timeout 520 bash scripts/gpu-machine-proof.sh speed; tar czf ...
# pyg-devel's build takes ~4 min there, so `start` + `speed` is about 9 min.
# Results and timings go to $OUT (or ./gpu-proof).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-proof}
mkdir -p "$OUT"
M=tests/gpu-machine/matrix.yaml
LIAR=tests/gpu-machine/liar.yaml
env_up() {  # the engine's environment, plus the suite's pinned pytest (gpu-machine-wheelhouse.sh)
  . /tmp/gpu-env.sh
  export PIP_FIND_LINKS="$PIP_FIND_LINKS $PWD/tests/gpu-machine/test-tools"
}
stamp() { printf '[proof %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
timed() {  # timed NAME CMD...: run, keep the output, print the wall time
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  awk -v n="$name" -v rc="$rc" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s rc=%s %.1fs\n", n, rc, b - a }' | tee -a "$OUT/times.txt"
  return 0
}

case "${1:-}" in
oracle)
  # The oracle and the evidence in one call: mutants and real cells predicted against what happens; a GPU
  # result reused, then re-run after a suite change; a result signed and verified from its file.
  # Carry .carry/gpu, tests/gpu-machine/test-tools and tests/gpu-machine/oracle-tools (the cuobjdump,
  # pyelftools, securesystemslib and cffi wheels for Python 3.12).
  stamp "engine and base"
  bash .carry/gpu/up.sh 2>&1 | tail -2
  env_up
  # site.tar.xz: those wheels installed for Python 3.12 and packed with xz (the carry limit is 64 MiB in all)
  mkdir -p /tmp/oracle-site
  if [ -f tests/gpu-machine/oracle-tools/site.tar.xz ]; then tar xJf tests/gpu-machine/oracle-tools/site.tar.xz -C /tmp/oracle-site
  else python3 -m pip install -q --no-index --no-deps --target /tmp/oracle-site tests/gpu-machine/oracle-tools/*.whl 2>&1 | tail -1; fi
  export PYTHONPATH="/tmp/oracle-site:$PYTHONPATH"
  python3 -c 'import cryptography' 2>/dev/null && CRYPTO=1 || CRYPTO=0
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
  timed build-mutants python3 -m invoke build --matrix tests/gpu-machine/mutants.yaml --no-audit
  timed build-devel python3 -m invoke build --matrix $M --target devel --no-audit
  timed build-liar python3 -m invoke build --matrix $LIAR --target devel --no-audit
  timed oracle python3 tests/gpu-machine/oracle_proof.py "$OUT"
  cat "$OUT/oracle.md"
  KEYS=/tmp/keys; rm -rf $KEYS
  SIGN=""
  if [ "$CRYPTO" = 1 ]; then python3 -m invoke keygen --out $KEYS > /dev/null && SIGN="--signing-key $KEYS/imagematrix.key"; else echo "no cryptography here: nothing is signed" | tee "$OUT/signing.txt"; fi
  for run in 1 2; do
    t0=$(date +%s)
    timed "smoke-$run" python3 -m imagematrix.testing --matrix $M --target devel --require-gpu $SIGN
    docker events --since "$t0" --until "$(date +%s)" --filter type=container --filter event=create --format '{{.Actor.Attributes.name}}' \
      > "$OUT/containers-$run.txt"
    echo "smoke-$run: $(wc -l < "$OUT/containers-$run.txt") container(s) created" | tee -a "$OUT/times.txt"
  done
  echo "# changed by the reuse proof" >> tests/gpu/test_environment.py
  t0=$(date +%s)
  timed smoke-3-suite-changed python3 -m imagematrix.testing --matrix $M --target devel --require-gpu $SIGN
  docker events --since "$t0" --until "$(date +%s)" --filter type=container --filter event=create --format '{{.Actor.Attributes.name}}' \
    > "$OUT/containers-3.txt"
  echo "smoke-3 (a test file changed): $(wc -l < "$OUT/containers-3.txt") container(s) created" | tee -a "$OUT/times.txt"
  grep -h "passed\|reused" "$OUT"/smoke-*.log | grep "cu13.0-py3.12-devel" | tail -3
  if [ "$CRYPTO" = 1 ]; then
    env_file=$(ls -t build/attestations/*devel.smoke.*intoto.json* | head -1)
    image=$(docker image inspect -f '{{.Id}}' gpuhost/imagematrix:cu13.0-py3.12-devel)
    timed verify python3 -m invoke verify "$env_file" --digest "$image" --key $KEYS/imagematrix.pub --cc 9.0 --driver 580 --suite smoke
    timed verify-other-gpu python3 -m invoke verify "$env_file" --digest "$image" --key $KEYS/imagematrix.pub --cc 8.0
    cat "$OUT/verify.log" "$OUT/verify-other-gpu.log"
    cp "$env_file" "$OUT/devel.smoke.$(basename "$env_file" | sed 's/.*\.intoto\./intoto./')"; cp $KEYS/imagematrix.pub "$OUT/"
  fi
  git checkout -q tests/gpu/test_environment.py 2>/dev/null || sed -i '$ d' tests/gpu/test_environment.py
  cp build/status.json build/history.jsonl "$OUT/" 2>/dev/null
  ;;
evidence)
  # Alone (carry .carry/gpu and tests/gpu-machine/test-tools): the devel cell through the user's own
  # commands (invoke build, nox's GPU session) with a signing key, then both signed statements verified
  # from the file, the torch the suite imported as the result records it, and another GPU refused.
  stamp "engine and base"
  bash .carry/gpu/up.sh 2>&1 | tail -2
  env_up
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
  KEYS=/tmp/keys; rm -rf $KEYS
  python3 -m invoke keygen --out $KEYS > "$OUT/keygen.log" 2>&1 || { echo "keygen failed (cryptography?)"; cat "$OUT/keygen.log"; }
  timed build-devel python3 -m invoke build --matrix $M --target devel --no-audit
  IMAGEMATRIX_MATRIX=$M timed nox-smoke python3 -m nox -s gpu_smoke-3.12 -- --matrix $M --target devel \
    --require-gpu --signing-key $KEYS/imagematrix.key
  tail -n 8 "$OUT/nox-smoke.log"
  env_file=$(ls -t build/attestations/*devel.smoke.*.intoto.jsonl | head -1)
  image=$(docker image inspect -f '{{.Id}}' gpuhost/imagematrix:cu13.0-py3.12-devel)
  timed verify python3 -m invoke verify "$env_file" --digest "$image" --key $KEYS/imagematrix.pub --cc 9.0 --driver 580 --suite smoke
  timed verify-other-gpu python3 -m invoke verify "$env_file" --digest "$image" --key $KEYS/imagematrix.pub --cc 8.0
  cat "$OUT/verify.log" "$OUT/verify-other-gpu.log"
  find build/test-results -name torch.json -exec cat {} \; | head -c 600; echo
  python3 -c 'import json; c = json.load(open("build/status.json"))["cells"]["cu13.0-py3.12-devel"]; print(json.dumps(c)[:2000])' \
    2>&1 | tee "$OUT/status-devel.txt"
  cp "$env_file" "$OUT/devel.smoke.intoto.jsonl"; cp $KEYS/imagematrix.pub "$OUT/"; cp build/status.json "$OUT/"
  ;;
start)
  stamp "engine and bases"
  bash .carry/gpu/up.sh --with-plain-base 2>&1 | tail -4
  env_up
  nvidia-smi -L; nvidia-smi --query-gpu=driver_version,name,compute_cap --format=csv,noheader
  stamp "invoke build, detached (PyG's torch_scatter from source for sm_90)"
  setsid bash -c "t0=\$(date +%s); python3 -m invoke build --matrix $M > $OUT/build.log 2>&1; echo \"rc=\$? \$((\$(date +%s)-t0))s\" > $OUT/build.done" \
    < /dev/null > /dev/null 2>&1 &
  ;;
profile)
  # While pyg-devel compiles: the devel cell (built in seconds) cold, warm twice, then warm with
  # fewer workers than one per CPU, and its full suite.
  env_up
  until docker image inspect gpuhost/imagematrix:cu13.0-py3.12-devel >/dev/null 2>&1 || [ -f "$OUT/build.done" ]; do sleep 2; done
  for run in cold warm warm2; do
    timed "devel-smoke-$run" python3 -m imagematrix.testing --matrix $M --target devel --require-gpu
  done
  for w in 16 8; do
    timed "devel-smoke-warm-w$w" python3 -m imagematrix.testing --matrix $M --target devel --require-gpu --workers $w
  done
  [ -n "${SKIP_FULL:-}" ] || timed devel-full python3 -m imagematrix.testing --matrix $M --target devel --require-gpu --suite full --timeout "${FULL_TIMEOUT:-300}"
  for f in devel-smoke-cold devel-smoke-warm devel-smoke-warm2 devel-smoke-warm-w16 devel-smoke-warm-w8; do stamp "$f"; grep -E "slowest|^[0-9.]+s (call|setup|teardown)|passed|failed|not grouping" "$OUT/$f.log" | head -n 16; done
  ;;
doctor)
  # The runner's own check, then the devel cell's smoke: cold, warm twice with the default workers,
  # and warm with one worker per CPU (32 on the two-GPU machine) for comparison.
  bash .carry/gpu/up.sh 2>&1 | tail -2
  env_up
  timed doctor python3 -m invoke doctor --matrix $M --target devel
  cat "$OUT/doctor.log"
  timed devel-build python3 -m invoke build --matrix $M --target devel
  timed devel-smoke-cold python3 -m imagematrix.testing --matrix $M --target devel --require-gpu
  for run in warm warm2; do
    timed "devel-smoke-$run" python3 -m imagematrix.testing --matrix $M --target devel --require-gpu
  done
  timed devel-smoke-warm-w32 python3 -m imagematrix.testing --matrix $M --target devel --require-gpu --workers 32
  for f in devel-smoke-cold devel-smoke-warm devel-smoke-warm2 devel-smoke-warm-w32; do stamp "$f"; grep -E "^[0-9.]+s (call|setup)|passed|failed|workers \[" "$OUT/$f.log" | head -n 10; done
  ;;
host)
  env_up
  stamp "host mode, full suite, on the machine's own interpreter"
  timed host-full python3 -m imagematrix.testing --backend host --require-gpu --workers 8 --suite full --out build/host
  tail -n 25 "$OUT/host-full.log"
  ;;
speed)
  # Each cell alone: cold (empty caches), then warm twice. A failed build leaves its log in $OUT.
  # RUNS="warm warm2" picks up after a call that ran out of time.
  env_up
  stamp "waiting for the build"
  while [ ! -f "$OUT/build.done" ]; do sleep 5; done
  cat "$OUT/build.done"; tail -n 12 "$OUT/build.log"
  grep -q '^rc=0' "$OUT/build.done" || { cp build/logs/*.log "$OUT/" 2>/dev/null; exit 1; }
  export IMAGEMATRIX_MATRIX=$M
  for run in ${RUNS:-cold warm warm2}; do
    timed "smoke-$run-jobs1" python3 -m nox -s gpu_smoke-3.12 -- --matrix $M --require-gpu
  done
  for run in ${RUNS:-cold warm warm2}; do f=smoke-$run-jobs1; stamp "$f"; grep -E "^==> |^[0-9.]+s (call|setup)| in [0-9.]+s =|not grouping|probes started" "$OUT/$f.log" | head -n 40; sed -n '/GPU suite/,$p' "$OUT/$f.log" | head -n 12; done
  ;;
finish)
  # After speed: cells at once (--jobs 3), the full suite, then the liars.
  env_up
  export IMAGEMATRIX_MATRIX=$M
  timed smoke-warm-jobs3 python3 -m nox -s gpu_smoke-3.12 -- --matrix $M --require-gpu --jobs 3
  timed full-jobs3 python3 -m nox -s gpu_full-3.12 -- --matrix $M --require-gpu --jobs 3
  for f in smoke-warm-jobs3 full-jobs3; do stamp "$f"; sed -n '/GPU suite/,$p' "$OUT/$f.log" | head -n 30; done
  [ -n "${SKIP_LIARS:-}" ] && exit 0
  stamp "liars: images that declare what they are not"
  timed liar-build python3 -m invoke build --matrix $LIAR
  IMAGEMATRIX_MATRIX=$LIAR timed liar-full python3 -m nox -s gpu_full-3.11 -- --matrix $LIAR --require-gpu --jobs 2
  sed -n '/GPU suite/,$p' "$OUT/liar-full.log" | head -n 80
  cp build/status.json "$OUT/status.json" 2>/dev/null
  ;;
collect)
  # What the record and the report say after the runs: status, each cell's gpu.json, BUILD_MATRIX.md.
  env_up
  python3 -m invoke report --matrix $M > "$OUT/report.log" 2>&1
  cp build/reports/BUILD_MATRIX.md build/status.json "$OUT/" 2>/dev/null
  find build -name gpu.json -path '*artifacts*' | while read -r f; do cp "$f" "$OUT/$(echo "$f" | tr / _)"; done
  ;;
parallel)
  # tests/gpu-machine/parallel.yaml: three cells of the base image (built in seconds). Cold at once,
  # then warm: one after another, and at once with `auto` and with fewer workers per container.
  bash .carry/gpu/up.sh 2>&1 | tail -1
  env_up
  P=tests/gpu-machine/parallel.yaml
  export IMAGEMATRIX_MATRIX=$P
  timed par-build python3 -m invoke build --matrix $P
  timed par-cold-jobs3 python3 -m nox -s gpu_smoke-3.12 -- --matrix $P --require-gpu --jobs 3
  timed par-warm-jobs1 python3 -m nox -s gpu_smoke-3.12 -- --matrix $P --require-gpu
  for w in ${WORKERS:-auto 5}; do
    timed "par-warm-jobs3-w$w" python3 -m nox -s gpu_smoke-3.12 -- --matrix $P --require-gpu --jobs 3 --workers "$w"
  done
  for f in "$OUT"/par-*jobs*.log; do stamp "$f"; grep -E "^<== |running 3|│ cu13" "$f" | cut -c1-150; done
  ;;
apps)
  # Ray and marimo on the machine's own interpreter (host mode: no engine to carry), from
  # .carry/apps/site.tar.xz (scripts/gpu-machine-apps.sh). Then the same checks against a manifest that
  # claims ray and marimo on an interpreter without them: every claimed check must fail.
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
  mkdir -p /tmp/apps-site && tar xJf .carry/apps/site.tar.xz -C /tmp/apps-site
  export PYTHONPATH="$PWD/src"
  PYTHONPATH="/tmp/apps-site:$PYTHONPATH" python3 -c 'import ray, marimo; print("ray", ray.__version__, "marimo", marimo.__version__)'
  PYTHONPATH="/tmp/apps-site:$PYTHONPATH" timed apps-host python3 -m imagematrix.testing --backend host --require-gpu \
    --workers 0 --out build/apps -- -m "ray or marimo" -rA
  python3 tests/gpu/describe_host.py --out /tmp/claims.json 2>/dev/null
  python3 - <<'PY'
import json
cell = json.load(open("/tmp/claims.json"))
cell["features"] = sorted(set(cell["features"]) | {"ray", "marimo"})
cell["id"] = "host-overclaims-ray-marimo"
json.dump(cell, open("/tmp/claims.json", "w"))
PY
  timed apps-overclaimed python3 -m pytest tests/gpu -p no:cacheprovider --cell /tmp/claims.json --require-gpu \
    -m "ray or marimo" -rA -c /dev/null --rootdir tests/gpu
  for f in apps-host apps-overclaimed; do stamp "$f"; grep -E "^(PASSED|FAILED|SKIPPED|ERROR)|passed|failed" "$OUT/$f.log" | tail -n 12; done
  cp -r build/apps/test-results "$OUT/apps-results" 2>/dev/null
  ;;
carriers)
  # The oracle's new carriers, launched: cubins, fat binaries and PTX files loaded as programs load them
  # (cuModuleLoadData), executables run, NVRTC output, and torch.compile with a Triton ptxas that predates
  # the GPU. The predictions are made from the same bytes elsewhere (tests/unit/test_carriers.py).
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
  F=tests/gpu-machine/mutants/files
  python3 src/imagematrix/core/launch_probe.py $F/libimx_*.so $F/*.cubin $F/*.fatbin $F/*.ptx $F/imx_exe_* \
    | tee "$OUT/launch.jsonl"
  cudart=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')
  for e in $F/imx_exe_*; do
    printf '{"file": "%s", "run": %s}\n' "$e" "$(LD_LIBRARY_PATH=$cudart:${LD_LIBRARY_PATH:-} $e 2>&1 | tail -n 1)"
  done | tee "$OUT/executables.jsonl"
  ptxas=$(python3 -c 'import triton, os; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas"))')
  { python3 -c 'import triton; print("triton", triton.__version__)'; "$ptxas" --version | tail -n 2; } | tee "$OUT/triton.txt"
  for ptx in $F/*.ptx; do  # the machine's own CUDA 13.0 ptxas, the driver's JIT's twin, on each PTX file
    said=$(/usr/local/cuda/bin/ptxas -arch=sm_90 "$ptx" -o /dev/null 2>&1); echo "$ptx: rc=$? ${said%%$'\n'*}"
  done | tee "$OUT/ptxas-here.txt"
  # NVRTC of the machine's torch (13.0): PTX it makes is loaded by this driver
  python3 tests/gpu-machine/mutants/nvrtc.py tests/gpu-machine/mutants/kernel.cu /tmp/imx_nvrtc130.ptx \
    --gpu-architecture=compute_90 && python3 src/imagematrix/core/launch_probe.py /tmp/imx_nvrtc130.ptx | tee -a "$OUT/launch.jsonl"
  xz -dc .carry/apps/ptxas-11.7.xz > /tmp/ptxas-11.7 && chmod +x /tmp/ptxas-11.7
  compile='import torch
f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
x = torch.arange(64.0, device="cuda")
print("torch.compile ran:", bool(torch.allclose(f(x), torch.sin(x) * 2 + 1)))'
  timed compile-bundled-ptxas env TRITON_CACHE_DIR=/tmp/tc1 TORCHINDUCTOR_CACHE_DIR=/tmp/ti1 python3 -c "$compile"
  timed compile-ptxas-11.7 env TRITON_PTXAS_PATH=/tmp/ptxas-11.7 TRITON_CACHE_DIR=/tmp/tc2 TORCHINDUCTOR_CACHE_DIR=/tmp/ti2 python3 -c "$compile"
  for f in compile-bundled-ptxas compile-ptxas-11.7; do stamp "$f"; grep -E "ran:|Error|error|ptxas" "$OUT/$f.log" | head -n 6; done
  ;;
*)
  echo "usage: $0 oracle|evidence|start|profile|doctor|host|speed|finish|collect|parallel|apps|carriers" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Fill tests/gpu-machine/wheelhouse with the sdists its matrix builds from, and
# tests/gpu-machine/test-tools with the pytest the suite's tools pin (its other wheels come with
# the engine's carry), since the GPU machine has no network. Both git-ignored; carry both to the
# GPU machine with the device tool (gpu-machine-proof.sh adds the second to PIP_FIND_LINKS). The files come straight
# from PyPI's JSON API: `pip download` would run their setup.py, which imports torch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/gpu-machine/wheelhouse
mkdir -p "$out"
python3 - "$out" torch-scatter==2.1.2 <<'PY'
import hashlib, json, sys, urllib.request
from pathlib import Path
out = Path(sys.argv[1])
for req in sys.argv[2:]:
    name, version = req.split("==")
    index = urllib.request.Request(f"https://pypi.org/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(index, timeout=60))["files"]
    sdist = next(f for f in files if f["filename"] == f"{name.replace('-', '_')}-{version}.tar.gz")
    dest, want = out / sdist["filename"], sdist["hashes"]["sha256"]
    if not dest.exists() or hashlib.sha256(dest.read_bytes()).hexdigest() != want:
        data = urllib.request.urlopen(sdist["url"], timeout=120).read()
        assert hashlib.sha256(data).hexdigest() == want, f"{dest.name}: checksum mismatch"
        dest.write_bytes(data)
    print(f"{dest} ({dest.stat().st_size} bytes, sha256 {want[:12]}...)")
PY
tools=tests/gpu-machine/test-tools
mkdir -p "$tools"
pytest_spec=$(python3 -c 'from imagematrix.testing.suite import TOOLS; print(TOOLS[0])')
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$tools" "$pytest_spec" \
  pytest-xdist execnet pluggy iniconfig pygments
ls "$tools"
# ../shared/gpu-machine/pack.sh's wheels repeat these (one pytest newer than the suite pins) and lack
# securesystemslib (signing): with both folders carried, the call must stay under 64 MiB.
if [ -d .carry/gpu/wheels ]; then
  (cd .carry/gpu/wheels && rm -f pygments-*.whl pytest-*.whl pytest_xdist-*.whl execnet-*.whl pluggy-*.whl iniconfig-*.whl)
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform any -d .carry/gpu/wheels securesystemslib
  du -sbc .carry/gpu "$tools" | tail -n 1
fi

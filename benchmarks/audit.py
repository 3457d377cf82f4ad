"""The audit of one image: cold (an empty cache) and again from the cache, with the image's size and
how many objects carry device code.

    python benchmarks/audit.py [REF ...]     # default: the example's devel image

The largest image of examples/platform.yaml would be the one to measure; it is not built on this
project's CPU host (multi-GB CUDA bases), so the default is the largest image that is: the example's
devel (torch 2.15 with its CUDA 13.2 wheels).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagematrix.build.engine import docker_client  # noqa: E402
from imagematrix.oracle.audit import CACHE_ENV, audit_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refs", nargs="*", default=["imagematrix/example:cu13.2-py3.13-devel"])
    args = ap.parse_args()
    client = docker_client()
    print(f"host: {os.cpu_count()} CPUs")
    for ref in args.refs:
        image = client.images.get(ref)
        with tempfile.TemporaryDirectory(prefix="imagematrix-audit-bench-") as tmp:
            os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
            runs = []
            for label in ("cold", "cached"):
                t0 = time.perf_counter()
                audit = audit_image(client, ref, Path(tmp) / "build")
                runs.append((label, time.perf_counter() - t0, audit))
        objects = len(audit.doc.get("objects") or [])
        print(f"{ref}: {image.attrs['Size'] / 1e9:.2f} GB, {objects} objects with device code, read by {audit.how}")
        for label, took, a in runs:
            c = a.doc.get("counts") or {}
            print(
                f"  {label:>6}: {took:6.1f} s  ({c.get('cached', 0)} of {c.get('objects', 0)} objects from the cache, "
                f"{c.get('hashed', '?')} files hashed, {c.get('dumped', '?')} dumped)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

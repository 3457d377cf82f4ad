"""The audit of one image: cold (an empty cache) and again from the cache, with the image's size, how many
objects carry device code, and how many of them NVIDIA's cuobjdump reads the same way (the referee: every
object is copied out of the image and listed by it).

    python benchmarks/audit.py [REF ...] [--no-referee]    # default: the example's devel image

The largest image of examples/platform.yaml would be the one to measure; it is not built on this
project's CPU host (multi-GB CUDA bases), so the default is the largest image that is: the example's
devel (torch 2.15 with its CUDA 13.2 wheels).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagematrix.build.engine import docker_client  # noqa: E402
from imagematrix.oracle import scan  # noqa: E402
from imagematrix.oracle.audit import CACHE_ENV, audit_image, cuobjdump  # noqa: E402


def referee(client, ref: str, objects: list[dict], work: Path) -> tuple[int, list[str], list[str]]:
    """How many objects cuobjdump lists exactly as the scan read them (PTX text files: it reads none), the
    ones it lists otherwise, and the ones it cannot read at all."""
    container = client.containers.create(ref, command=["true"], entrypoint=[])
    agree, differ, unreadable = 0, [], []
    try:
        for o in objects:
            if o["kind"] == "ptx":
                agree += 1
                continue
            stream, _ = container.get_archive(o["path"])
            data = b"".join(stream)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.getmembers()[0]
                target = work / "object"
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            ref_doc = scan.referee(str(cuobjdump()), target, work)
            if ref_doc["error"]:
                unreadable.append(f"{o['path']}: {ref_doc['error']}")
            elif (ref_doc["sass"], ref_doc["ptx"]) == (o["sass"], o["ptx"]):
                agree += 1
            else:
                differ.append(
                    f"{o['path']}: scan {o['sass']} {o['ptx']} / cuobjdump {ref_doc['sass']} {ref_doc['ptx']}"
                )
    finally:
        container.remove(force=True)
    return agree, differ, unreadable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refs", nargs="*", default=["imagematrix/example:cu13.2-py3.13-devel"])
    ap.add_argument("--no-referee", action="store_true", help="skip the comparison with cuobjdump")
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
            objects = audit.doc.get("objects") or []
            size = image.attrs["Size"] / 1e9
            print(f"{ref}: {size:.2f} GB, {len(objects)} objects with device code, read by {audit.how}")
            for label, took, a in runs:
                c = a.doc.get("counts") or {}
                print(
                    f"  {label:>6}: {took:6.1f} s  ({c.get('files', '?')} files, {c.get('cached', 0)} of "
                    f"{c.get('objects', 0)} objects from the cache, {c.get('hashed', '?')} files hashed)"
                )
            if not args.no_referee:
                t0 = time.perf_counter()
                agree, differ, unreadable = referee(client, ref, objects, Path(tmp))
                print(
                    f"  referee: cuobjdump lists {agree} of {len(objects)} objects as the scan read them, "
                    f"{len(differ)} otherwise, and cannot read {len(unreadable)} ({time.perf_counter() - t0:.0f} s)"
                )
                for line in differ:
                    print(f"    differs: {line}")
                for line in unreadable:
                    print(f"    cuobjdump cannot read: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

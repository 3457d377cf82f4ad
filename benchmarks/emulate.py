"""The emulation check over the catalogue: for every GPU-by-driver-branch cell whose prediction rests on PTX
(⚠️ by JIT, ❌ for PTX too new), the image's own PTX compiled with the ptxas of the CUDA that branch runs
natively (oracle/emulate.py). Prints how many cells got a check and how many agreed, and, for the cells
measured on the GPU machine (tests/gpu-machine/results), whether the emulation agrees with the real driver.

    python benchmarks/emulate.py                 # the mutants (tests/gpu-machine/mutants/files)
    python benchmarks/emulate.py --image REF     # an image: audited, its deciding objects copied out and read

The first run fetches one ptxas per branch from PyPI (about 20-60 MB each) into ~/.cache/imagematrix/ptxas.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagematrix.oracle import emulate, gpus, scan  # noqa: E402
from imagematrix.oracle.audit import cuobjdump  # noqa: E402

MUTANTS = ROOT / "tests" / "gpu-machine" / "mutants"
MEASURED = ROOT / "tests" / "gpu-machine" / "results" / "carriers-h100-580.json"


def image(ref: str) -> int:
    """The catalogue cells of one image whose prediction rests on PTX, checked with its own PTX."""
    import io
    import tarfile
    import tempfile

    from imagematrix.build.engine import docker_client
    from imagematrix.oracle.audit import audit_image

    client, tool = docker_client(), str(cuobjdump())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imagematrix-emulate-") as tmp:
        doc = audit_image(client, ref, Path(tmp) / "build").doc
        container = client.containers.create(ref, command=["true"], entrypoint=[])
        texts: dict[str, list] = {}

        def ptx_texts(obj) -> list:
            if obj["path"] not in texts:
                stream, _ = container.get_archive(obj["path"])
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    out = Path(tmp) / "object"
                    out.write_bytes(tar.extractfile(tar.getmembers()[0]).read())  # type: ignore[union-attr]
                texts[obj["path"]] = emulate.ptx_of(tool, out)
            return texts[obj["path"]]

        try:
            cells = emulate.check_cells(doc, gpus.GPUS, gpus.BRANCHES, ptx_texts)
        finally:
            container.remove(force=True)
    checked = [c for c in cells if c.emulated is not emulate.Mark.UNKNOWN]
    agree = sum(c.agrees for c in cells)
    print(
        f"{ref}: {len(cells)} catalogue cells rest on PTX; {len(checked)} checked by ptxas; {agree} agree with "
        f"the prediction; {len(texts)} objects' PTX compiled ({time.perf_counter() - t0:.0f} s)"
    )
    for c in cells:
        if not c.agrees:
            print(
                f"  differs: {c.gpu} R{c.branch}: predicted {c.predicted.value}, ptxas {c.emulated.value} ({c.detail})"
            )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="an image reference instead of the mutants")
    args = ap.parse_args()
    if args.image:
        return image(args.image)
    t0 = time.perf_counter()
    doc = scan.scan(MUTANTS, str(cuobjdump()), None, None)
    doc["libraries"] = {"cudart": [{"version": "13.0.96"}]}  # the mutants run beside a CUDA 13.0 runtime
    tool = str(cuobjdump())
    texts: dict[str, list] = {}

    def ptx_texts(obj) -> list:
        if obj["path"] not in texts:
            texts[obj["path"]] = emulate.ptx_of(tool, MUTANTS / obj["path"].lstrip("/"))
        return texts[obj["path"]]

    cells = []
    for obj in doc["objects"]:
        one = {**doc, "objects": [obj]}
        cells += [(obj["path"], c) for c in emulate.check_cells(one, gpus.GPUS, gpus.BRANCHES, ptx_texts)]
    agree = sum(c.agrees for _, c in cells)
    checked = [c for _, c in cells if c.emulated is not emulate.Mark.UNKNOWN]
    print(
        f"mutants: {len(cells)} catalogue cells rest on PTX; {len(checked)} checked by ptxas; "
        f"{agree} agree with the prediction ({time.perf_counter() - t0:.0f} s)"
    )
    for path, c in cells:
        if not c.agrees:
            print(
                f"  differs: {path} {c.gpu} R{c.branch}: predicted {c.predicted.value}, ptxas {c.emulated.value} "
                f"({c.detail})"
            )
    measured = json.loads(MEASURED.read_text())
    real = {Path(r["file"]).name: r for r in measured["launched"]}
    h100 = [(p, c) for p, c in cells if c.gpu == "H100" and c.branch == 580]
    same = 0
    for path, c in h100:
        r = real.get(Path(path).name)
        if r is None:
            continue
        outcome = emulate.Mark.WARNS if r["ok"] else emulate.Mark.FAILS if r["code"] == 222 else emulate.Mark.UNKNOWN
        same += outcome is c.emulated
        print(
            f"  {Path(path).name}: ptxas 13.0 says {c.emulated.value}, the H100's driver "
            f"{measured['driver']} said {'runs' if r['ok'] else r['error']}"
        )
    print(f"H100 with R580 against the real driver: {same} of {len(h100)} agree")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

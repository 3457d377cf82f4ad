"""The platform twin (examples/platform.yaml), one family: build time, sizes against the floor and the sheet.

    python benchmarks/platform_twin.py --cuda 13.0 --python 3.14            # build (skips unchanged cells), measure
    python benchmarks/platform_twin.py --cuda 13.0 --python 3.14 --no-build # measure what is built
    python benchmarks/platform_twin.py --cuda 13.0 --python 3.14 --cold     # --no-cache: every step again

Prints per cell: the build time of this run (and the recorded cold time when one is in
build/status.json's history of this run), the image size, its floor (the base image plus the
environment's own bytes) and the ratio against the goals (runtime <= 1.10 x floor, devel
<= 1.25 x floor), and the source sheet's size for that target. Exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from imagematrix.build.engine import docker_client
from imagematrix.core.status import read_status
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.plan import Selection, select_cells
from imagematrix.reports.sizes import Prober, fmt_bytes

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "examples" / "platform.yaml"
# The source sheet (003): sizes recorded for CUDA 12.8.1 + Python 3.13 (marimo-runtime: 14.5-20.9 GB in two families).
SHEET_GB = {
    "devel": 29.4,
    "runtime": 20.3,
    "ray-devel": 30.2,
    "ray-runtime": 20.6,
    "marimo-devel": 30.4,
    "marimo-runtime": 20.9,
}
GOAL = {"runtime": 1.10, "devel": 1.25}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuda", required=True, help="the family's CUDA key, e.g. 13.0")
    p.add_argument("--python", required=True, help="the family's Python, e.g. 3.14")
    p.add_argument("--matrix", default=str(MATRIX))
    p.add_argument("--out", default=str(ROOT / "build"), help="build directory (default: build)")
    p.add_argument("--no-build", action="store_true", help="measure the images as they are")
    p.add_argument("--cold", action="store_true", help="build with --no-cache (every step runs again)")
    a = p.parse_args(argv)

    m = load_matrix(a.matrix)
    cells = select_cells(m, Selection(cudas=(a.cuda,), pythons=(a.python,)))
    wall = None
    if not a.no_build:
        argv = [
            sys.executable,
            "-m",
            "invoke",
            "--search-root",
            str(ROOT),
            "build",
            "--matrix",
            a.matrix,
            "--cuda",
            a.cuda,
            "--python",
            a.python,
            "--out",
            a.out,
            *(["--no-cache"] if a.cold else []),
        ]
        t0 = time.monotonic()
        subprocess.run(argv, check=True)
        wall = time.monotonic() - t0
    records = read_status(Path(a.out))
    prober = Prober(docker_client(), top=1)
    rows, missed = [], []
    for c in cells:
        meas = prober.measure(c.id, c.ref)
        rec = records.get(c.id).build
        if meas is None:
            rows.append((c.target.name, "-", "-", "-", "-", "not built", f"{SHEET_GB.get(c.target.name, 0):.1f} GB"))
            continue
        floor = (meas.base_bytes or 0) + meas.env_bytes
        ratio = meas.size_bytes / floor if floor else float("nan")
        goal = GOAL[c.target.kind]
        verdict = "ok" if ratio <= goal else "MISSED"
        if verdict != "ok":
            missed.append(c.id)
        state, took = (rec.state, rec.duration_s) if rec else ("?", None)
        rows.append(
            (
                c.target.name,
                f"{state} {took:.0f}s" if took is not None else state,
                fmt_bytes(meas.size_bytes),
                fmt_bytes(floor),
                f"{ratio:.3f}",
                f"<= {goal:.2f} {verdict}",
                f"{SHEET_GB.get(c.target.name, 0):.1f} GB",
            )
        )
    head = ("target", "this build", "size", "floor", "x floor", "goal", "sheet (003)")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{m.image} CUDA {a.cuda} + Python {a.python}" + (f": invoke build took {wall:.0f} s" if wall else ""))
    for r in [head, *rows]:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    out = Path(a.out) / "reports" / f"platform-{a.cuda}-{a.python}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "build_wall_s": wall, "missed": missed}, indent=2) + "\n")
    print(f"  results: {out}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rebuild cost: a second `invoke build` of an already built matrix vs the same with --force.

The first skips every unchanged cell (imagematrix's build hash, one image
inspect per cell); --force hands every cell to BuildKit, whose own cache walk
then finds every step cached. Prints both wall times and their ratio.

    python benchmarks/rebuild.py [--matrix examples/matrix.yaml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def invoke_build(matrix: Path, out: Path, *extra: str) -> tuple[float, dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "invoke",
        "--search-root",
        str(ROOT),
        "build",
        "--matrix",
        str(matrix),
        "--out",
        str(out),
        *extra,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cells = json.loads((out / "status.json").read_text())["cells"]
    return took, {c: r["build"]["state"] for c, r in cells.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=Path, default=ROOT / "examples" / "matrix.yaml")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each kind (median is reported)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagematrix-bench-") as tmp:
        out = Path(tmp) / "build"
        first, states = invoke_build(args.matrix, out)
        print(f"warm-up build: {first:.1f} s ({', '.join(sorted(set(states.values())))})")
        skip, force = [], []
        for _ in range(args.repeat):
            took, states = invoke_build(args.matrix, out)
            assert set(states.values()) == {"skipped"}, states
            skip.append(took)
            took, states = invoke_build(args.matrix, out, "--force")
            assert set(states.values()) == {"built"}, states
            force.append(took)
    s, f = statistics.median(skip), statistics.median(force)
    print(
        f"matrix: {args.matrix.relative_to(ROOT) if args.matrix.is_relative_to(ROOT) else args.matrix} ({len(states)} "
        "cells)"
    )
    print(f"second invoke build (skips unchanged): median {s:.2f} s  runs {', '.join(f'{x:.2f}' for x in skip)}")
    print(f"invoke build --force (BuildKit cache): median {f:.2f} s  runs {', '.join(f'{x:.2f}' for x in force)}")
    print(f"ratio --force / skip: {f / s:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

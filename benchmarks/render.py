"""How long loading, validating and rendering the whole matrix takes (issue 2: well under a second).

    python benchmarks/render.py [--matrix matrix.yaml] [--repeat 20]

Each round is what `invoke render` does before writing files: read and validate
matrix.yaml, then render every cell's Dockerfile and context in memory. The
first round runs in a fresh interpreter state for the modules (imports are paid
before timing starts, as in any CLI call); best and mean of the rounds are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import render_cell

BUDGET_S = 1.0


def one_round(path: Path) -> tuple[float, float, int, int]:
    """(seconds to load+validate, seconds to render all cells, cells, bytes rendered)."""
    t0 = time.perf_counter()
    m = load_matrix(path)
    t1 = time.perf_counter()
    size = sum(len(render_cell(m, c).dockerfile) for c in m.cells)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(m.cells), size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=Path, default=Path("matrix.yaml"))
    ap.add_argument("--repeat", type=int, default=20, help="rounds to time (default 20)")
    args = ap.parse_args(argv)

    rounds = [one_round(args.matrix) for _ in range(args.repeat)]
    loads = [r[0] for r in rounds]
    renders = [r[1] for r in rounds]
    totals = [a + b for a, b in zip(loads, renders, strict=True)]
    cells, size = rounds[0][2], rounds[0][3]
    ms = lambda xs: f"best {min(xs) * 1000:7.1f} ms  mean {statistics.mean(xs) * 1000:7.1f} ms"  # noqa: E731
    print(
        f"{args.matrix}: {cells} cells, {size / 1024:.0f} KiB of Dockerfiles, {args.repeat} rounds, Python "
        f"{sys.version.split()[0]}"
    )
    print(f"  first round       {totals[0] * 1000:7.1f} ms (cold caches)")
    print(f"  load + validate   {ms(loads)}")
    print(f"  render all cells  {ms(renders)}  ({min(renders) / cells * 1000:.2f} ms per cell at best)")
    print(f"  total             {ms(totals)}  (budget {BUDGET_S * 1000:.0f} ms)")
    if statistics.mean(totals) >= BUDGET_S:
        print(f"  OVER BUDGET: the mean total is {statistics.mean(totals):.2f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

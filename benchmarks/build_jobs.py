"""`invoke build --jobs N` against `--jobs 1`: wall time of a small matrix on the real engine.

    python benchmarks/build_jobs.py [--jobs 1,2] [--repeat 2] [--sleep 4]

The matrix (written to a temporary directory): two independent cells that each
sleep in a RUN step, and a third that extends the first. Every run uses
--no-cache, so each measures building, not BuildKit's cache. Prints one line
per run and the median per N.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_matrix(root: Path, sleep: int) -> Path:
    frags = root / "fragments"
    frags.mkdir()
    (frags / "sleep-a.Dockerfile").write_text(f"RUN sleep {sleep} && echo a > /a\n")
    (frags / "sleep-b.Dockerfile").write_text(f"RUN sleep {sleep} && echo b > /b\n")
    (frags / "needs-a.Dockerfile").write_text("RUN test -f /a && echo c > /c\n")
    matrix = root / "matrix.yaml"
    matrix.write_text(
        'schema: 1\nimage: imagematrix-bench/jobs\npython: ["3.13"]\n'
        'cuda:\n  "1.0": {torch_cuda: "1.0", bases: {devel: debian:trixie-slim}}\n'
        "targets:\n  a: {base: devel, fragments: [sleep-a]}\n  b: {base: devel, fragments: [sleep-b]}\n"
        "  c: {extends: a, fragments: [needs-a]}\nbuild: {fragments_dir: fragments}\n"
    )
    return matrix


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sleep", type=int, default=4)
    a = ap.parse_args()
    times: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        matrix = write_matrix(Path(tmp), a.sleep)
        for _ in range(a.repeat):
            for jobs in (int(j) for j in a.jobs.split(",")):
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
                    str(Path(tmp) / f"build-{jobs}"),
                    "--no-cache",
                    "--jobs",
                    str(jobs),
                ]
                t0 = time.monotonic()
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                took = time.monotonic() - t0
                if done.returncode != 0:
                    print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                    return 1
                times.setdefault(jobs, []).append(took)
                print(f"--jobs {jobs}: {took:.1f} s")
    for jobs, ts in times.items():
        print(f"median --jobs {jobs}: {statistics.median(ts):.1f} s over {len(ts)} run(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

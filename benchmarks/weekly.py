"""The weekly no-change run of an 18-cell matrix on one runner: every build skipped, every test reused.

An 18-cell matrix (three CUDA 13.2.x families by six targets, one extending the next) is written on
top of the example's runtime image, which must exist (`imagematrix build --matrix examples/matrix.yaml`).
The first pass builds the cells and runs the smoke suite in each for real (minutes: the recorded
store). Then the timed pass, as the weekly schedule runs it: `imagematrix build` and `imagematrix
test` again with nothing changed. Prints both passes' wall times and how many test containers each
created (counted from the engine's events).

    python benchmarks/weekly.py [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = "imagematrix/example:cu13.2-py3.13-runtime"
TARGETS = ("t1", "t2", "t3", "t4", "t5", "t6")
FAMILIES = ("13.2.0", "13.2.1", "13.2.2")


def write_matrix(where: Path) -> Path:
    fragments = where / "dockerfiles"
    fragments.mkdir(parents=True)
    (fragments / "bench-step.Dockerfile").write_text(
        "# One small layer per target.\nRUN echo {{ target.name }} > /etc/imagematrix-bench\n"
    )
    targets = {TARGETS[0]: {"base": "devel", "fragments": ["bench-step"]}}
    for parent, name in itertools.pairwise(TARGETS):
        targets[name] = {"extends": parent, "fragments": ["bench-step"]}
    doc = {
        "schema": 1,
        "image": "imagematrix-bench/weekly",
        "tag": "cu{cuda}-py{python}-{target}",
        "python": ["3.13"],
        "cuda": {f: {"torch_cuda": "13.2", "bases": {"devel": BASE}} for f in FAMILIES},
        "packages": {"torch": "2.15.0"},
        "targets": targets,
        "phases": {
            1: {"name": "all", "cells": [{"cuda": f, "python": "3.13", "targets": list(TARGETS)} for f in FAMILIES]}
        },
        "build": {"fragments_dir": "dockerfiles"},
    }
    path = where / "matrix.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def timed(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    since = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    events = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{time.time():.3f}",
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            "label=imagematrix.testrun",
            "--format",
            "{{.ID}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return took, len(events.stdout.split()), done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="cells built and tested at once (default 2)")
    ap.add_argument("--keep", type=Path, help="keep the project here (a second call then times only the weekly pass)")
    args = ap.parse_args()
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True, check=False).returncode != 0:
        sys.exit(f"{BASE} is missing: imagematrix build --matrix examples/matrix.yaml")
    where = args.keep or Path(tempfile.mkdtemp(prefix="imagematrix-weekly-"))
    matrix = where / "matrix.yaml" if (where / "matrix.yaml").is_file() else write_matrix(where)
    common = ["--matrix", str(matrix), "--out", str(where / "build")]
    build = [sys.executable, "-m", "imagematrix", "build", *common, "--jobs", str(args.jobs)]
    test = [sys.executable, "-m", "imagematrix", "test", *common, "--jobs", str(args.jobs)]
    print(f"matrix: {matrix} ({len(FAMILIES) * len(TARGETS)} cells on {BASE})")
    for label in ("first pass (the recorded store)", "weekly no-change pass"):
        b, _, _ = timed(build, where)
        t, containers, out = timed(test, where)
        reused = out.count("reused from")
        print(
            f"{label}: build {b:.1f} s, test {t:.1f} s, together {b + t:.1f} s; "
            f"{containers} test container(s) created, {reused} cell(s) reused"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How close is the runtime image to its floor? Size benchmark on a real CUDA-torch cell.

    python benchmarks/sizes.py                      # examples/matrix.yaml's runtime cell
    python benchmarks/sizes.py --knobs              # also build it with strip_debug + drop_static_libs
    python benchmarks/sizes.py --keep               # keep the benchmark's own images afterwards

Compares the runtime image with
  * its floor: the base image plus the environment's own bytes (as pip installed it
    in devel, and as the runtime ships it after pruning),
  * a naive single-stage image with the same packages: the cell's own devel stage
    with its BuildKit cache mounts taken out (so pip's and apt's downloads stay in
    the layers, as in a Dockerfile written without them),
  * the source sheet's runtime image (20.3 GB).
Target: runtime <= 1.10 x floor. Exit 1 when missed. Images it builds are named
``imagematrix-test-sizes/...`` and removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagematrix.build.buildkit import BuildOptions, build_argv, build_env, detect_builder
from imagematrix.build.engine import docker_client
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.plan import BuildStep
from imagematrix.matrix.render import render_cell, write_context
from imagematrix.reports.sizes import GB, Prober, fmt_bytes

ROOT = Path(__file__).resolve().parents[1]
SHEET_RUNTIME_GB = 20.3  # source sheet (003): CUDA 12.8.1 + Python 3.13 runtime image, as recorded
TARGET_RATIO = 1.10
TEST_NAMESPACE = "imagematrix-test-sizes"
CACHE_MOUNT = re.compile(r"--mount=type=cache,\S+\s*")


def build(m, rendered, ref_image: str, log: Path) -> float:
    """Build ``rendered`` under another image name with imagematrix's own command line; seconds taken."""
    cell = dataclasses.replace(rendered.cell, image=ref_image)
    rendered = dataclasses.replace(rendered, cell=cell)
    with tempfile.TemporaryDirectory(prefix="imagematrix-bench-") as tmp:
        step = BuildStep(cell=cell, rendered=rendered, context=write_context(rendered, Path(tmp)))
        builder = detect_builder()
        argv = build_argv(step, BuildOptions(ca_cert=m.ca_cert), builder)
        print(f"  building {cell.ref} (log: {log})", flush=True)
        start = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **build_env(builder)}, check=False
            )
        if proc.returncode != 0:
            sys.exit(
                f"build of {cell.ref} failed (exit {proc.returncode}); last lines of {log}:\n"
                + "\n".join(log.read_text().splitlines()[-15:])
            )
        return time.monotonic() - start


def naive_dockerfile(devel_dockerfile: str) -> str:
    """The devel stage as one would write it without BuildKit cache mounts."""
    return CACHE_MOUNT.sub("", devel_dockerfile)


def ensure_built(matrix: Path, cells) -> None:
    """Build missing cells with `invoke build` (unchanged ones are skipped by it)."""
    argv = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--matrix", str(matrix)]
    c0 = cells[0]
    argv += ["--cuda", c0.cuda.version, "--python", c0.python]
    for c in cells:
        argv += ["--target", c.target.name]
    print(f"  {' '.join(argv[2:])}", flush=True)
    subprocess.run(argv, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--matrix", default=str(ROOT / "examples" / "matrix.yaml"), help="matrix file (default: the example)"
    )
    p.add_argument("--cell", default=None, help="runtime cell id (default: the matrix's first runtime cell)")
    p.add_argument(
        "--knobs", action="store_true", help="also build the runtime with strip_debug and drop_static_libs on"
    )
    p.add_argument("--keep", action="store_true", help="keep the images this benchmark builds")
    p.add_argument("--out", default=str(ROOT / "build" / "reports" / "sizes-benchmark.json"), help="JSON result")
    a = p.parse_args(argv)

    m = load_matrix(a.matrix)
    runtime = m.cell(a.cell) if a.cell else next(c for c in m.cells if c.target.kind == "runtime")
    devel = m.stage_cell(runtime, runtime.target.parent)
    client = docker_client()
    prober = Prober(client, top=3)
    logs = ROOT / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    print(f"cell {runtime.id}: {runtime.ref} (parent {devel.id})", flush=True)
    if prober.image(runtime.ref) is None or prober.image(devel.ref) is None:
        ensure_built(Path(a.matrix), [devel, runtime])
    rt = prober.measure(runtime.id, runtime.ref)
    dv = prober.measure(devel.id, devel.ref)
    base = rt.base_bytes or 0

    made: list[str] = []
    naive_ref = f"{TEST_NAMESPACE}/naive:{devel.tag}"
    devel_rendered = render_cell(m, devel)
    secs = build(
        m,
        dataclasses.replace(devel_rendered, dockerfile=naive_dockerfile(devel_rendered.dockerfile)),
        f"{TEST_NAMESPACE}/naive",
        logs / "bench-naive.log",
    )
    made.append(naive_ref)
    naive = prober.measure("naive", naive_ref)
    results = {
        "cell": runtime.id,
        "runtime": rt.size_bytes,
        "devel": dv.size_bytes,
        "base": base,
        "env_installed": dv.env_bytes,
        "env_shipped": rt.env_bytes,
        "naive": naive.size_bytes,
        "naive_build_s": round(secs, 1),
        "naive_layers": naive.layers,
        "sheet_runtime": SHEET_RUNTIME_GB * GB,
    }

    if a.knobs:
        t = dataclasses.replace(
            runtime.target, options={**runtime.target.options, "strip_debug": True, "drop_static_libs": True}
        )
        m2 = dataclasses.replace(m, targets={**m.targets, t.name: t})
        secs = build(
            m2,
            render_cell(m2, dataclasses.replace(runtime, target=t)),
            f"{TEST_NAMESPACE}/knobs",
            logs / "bench-knobs.log",
        )
        knobs_ref = f"{TEST_NAMESPACE}/knobs:{runtime.tag}"
        made.append(knobs_ref)
        kn = prober.measure("knobs", knobs_ref)
        results.update(knobs=kn.size_bytes, knobs_env=kn.env_bytes, knobs_build_s=round(secs, 1))

    floor_installed = base + dv.env_bytes
    floor_shipped = base + rt.env_bytes
    ratio = rt.size_bytes / floor_installed
    ratio_shipped = rt.size_bytes / floor_shipped
    results.update(
        floor_installed=floor_installed,
        floor_shipped=floor_shipped,
        ratio=round(ratio, 4),
        ratio_shipped=round(ratio_shipped, 4),
        target_ratio=TARGET_RATIO,
    )

    rows = [
        ("base image " + (rt.base or "?"), base, ""),
        ("env as pip installed it (devel)", dv.env_bytes, ", ".join(rt.env_roots)),
        ("env as the runtime ships it", rt.env_bytes, f"pruned {fmt_bytes(dv.env_bytes - rt.env_bytes)}"),
        ("floor = base + env as installed", floor_installed, ""),
        ("floor = base + env as shipped", floor_shipped, ""),
        (
            "runtime image",
            rt.size_bytes,
            f"{ratio:.3f} x floor (installed), {ratio_shipped:.3f} x floor (shipped); target <= {TARGET_RATIO:.2f}",
        ),
        ("devel image (its parent)", dv.size_bytes, f"runtime saves {fmt_bytes(dv.size_bytes - rt.size_bytes)}"),
        (
            "naive single-stage, same packages",
            naive.size_bytes,
            f"runtime is {rt.size_bytes / naive.size_bytes:.0%} of it (build step {results['naive_build_s']:.0f} s)",
        ),
        (
            "the sheet's runtime image (003)",
            SHEET_RUNTIME_GB * GB,
            f"runtime is {rt.size_bytes / (SHEET_RUNTIME_GB * GB):.0%} of it",
        ),
    ]
    if a.knobs:
        rows.append(
            (
                "runtime + strip_debug + drop_static_libs",
                results["knobs"],
                f"saves {fmt_bytes(rt.size_bytes - results['knobs'])} more ({results['knobs'] / floor_shipped:.3f} x "
                "floor shipped)",
            )
        )
    print()
    for what, n, note in rows:
        print(f"  {what:<42} {fmt_bytes(n):>9}   {note}")
    print("\n  naive image's biggest layers:")
    for layer in naive.layers:
        print(f"    {fmt_bytes(layer['bytes']):>9}  {layer['command']}")
    ok = ratio_shipped <= TARGET_RATIO
    print(
        f"\n  target runtime <= {TARGET_RATIO:.2f} x floor: {'met' if ok else 'MISSED'} ({ratio_shipped:.3f}, the "
        "stricter floor)"
    )

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"  results: {a.out}")
    if not a.keep:
        for ref in made:
            client.images.remove(ref, force=True)  # only the images this benchmark built
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

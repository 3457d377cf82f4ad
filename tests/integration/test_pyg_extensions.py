"""PyG's extensions built by the pyg-extensions fragment as the platform builds them (issue 36): torch_sparse,
the package whose setup keeps ninja and has several extensions, CPU-only against the example's torch.
Built side by side, its extensions overwrote each other's build.ninja in their shared build directory
("ninja: warning: premature end of file", then "cannot find .../diag_cpu.o"); the fragment now builds
a ninja package's extensions one after another, each with all cores. Built without BuildKit's cache,
so every run compiles (the example's devel has no ccache: nothing is reused between runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def test_torch_sparse_builds_with_the_fragment_and_imports(example_images, image_namespace, invoke, tmp_path):
    base = example_images["refs"]["devel"]
    image = f"{image_namespace}-pyg/sparse"
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        yaml.safe_dump(
            {
                "schema": 1,
                "image": image,
                "tag": "cu{cuda}-py{python}-{target}",
                "python": ["3.13"],
                "cuda": {"13.2": {"torch_cuda": "13.2", "extensions": "cpu", "bases": {"devel": base}}},
                "packages": {"torch_sparse": "0.6.18"},
                "targets": {
                    "sparse": {
                        "description": "torch_sparse, CPU-only, by the pyg-extensions fragment",
                        "base": "devel",
                        "fragments": ["pyg-extensions"],
                        "pyg_extensions": ["torch_sparse"],
                    }
                },
                "phases": {1: {"name": "pyg", "cells": [{"cuda": "13.2", "python": "3.13", "targets": ["sparse"]}]}},
                "build": {"fragments_dir": str(ROOT / "dockerfiles"), "ca_cert": "/etc/ssl/certs/ca-certificates.crt"},
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--no-cache", "--no-audit", timeout=1800)
    log = (out / "logs" / "cu13.2-py3.13-sparse.log").read_text(errors="replace")
    assert done.returncode == 0, done.stdout[-3000:] + log[-6000:]
    assert "torch_sparse==0.6.18: ninja, " in log and "its extensions one after another" in log, log[-3000:]
    assert "premature end of file" not in log
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            f"{image}:cu13.2-py3.13-sparse",
            "python",
            "-c",
            # each compiled extension loads into torch (the package itself imports torch_scatter, not built here)
            "import glob, importlib.metadata as md, importlib.util, os, torch\n"
            "d = os.path.dirname(importlib.util.find_spec('torch_sparse').origin)\n"
            "libs = sorted(glob.glob(d + '/_*_cpu.so'))\n"
            "[torch.ops.load_library(lib) for lib in libs]\n"
            "print(md.version('torch_sparse'), len(libs), torch.ops.torch_sparse.cuda_version())",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    version, libs, cuda = ran.stdout.split()
    assert version == "0.6.18" and int(libs) >= 5 and cuda == "-1", ran.stdout  # its extensions, CPU-only

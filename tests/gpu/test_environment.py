"""A locked environment (a target with uv_project): what is installed is exactly what the image's uv.lock says."""

from __future__ import annotations

import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import gpu_policy
import pytest
from gpu_support import ensure

pytestmark = pytest.mark.smoke

TOOLS = {"pip", "setuptools", "wheel"}  # a venv's own tools, never in a lock


def test_installed_distributions_equal_the_lock(cell):
    if cell.environment_lock is None:
        pytest.skip(f"cell {cell.id} has no locked environment (no uv_project in matrix.yaml)")
    lock_path = Path(cell.environment_lock)
    ensure(
        lock_path.is_file(),
        f"the manifest says the environment comes from {lock_path}, which is missing: "
        "the image was not built by this imagematrix, or a later step removed it",
    )
    if sys.version_info < (3, 11):
        pytest.skip("reading uv.lock needs tomllib (Python >= 3.11)")
    import tomllib
    from packaging.markers import Marker  # pytest's own dependency, in the suite's tools

    lock = tomllib.loads(lock_path.read_text())
    want = gpu_policy.locked_for_here(lock, lambda m: Marker(m).evaluate())
    env = Path(sys.prefix)
    # The environment's own site-packages only: not the suite's tools, not a package's vendored copies.
    site = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    installed = {d.metadata["Name"]: d.version for d in metadata.distributions(path=site) if d.metadata["Name"]}
    drift = gpu_policy.lock_drift(want, installed, TOOLS)
    ensure(
        not drift,
        f"{len(drift)} distribution(s) of {env} differ from {lock_path}:\n  "
        + "\n  ".join(drift[:30])
        + "\nFix: install the environment only from the lock (uv sync --frozen); change it with `uv lock`, "
        "never with a pip install in a fragment",
    )
    print(f"{len(want)} locked distributions installed as locked")

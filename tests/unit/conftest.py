"""Fixtures the unit tests share: the repository, its bundled matrices, a build directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.model import Matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def sheet_matrix() -> Matrix:
    """matrix.yaml: the sheet's platform, 18 cells."""
    return load_matrix(ROOT / "matrix.yaml")


@pytest.fixture(scope="session")
def example_matrix() -> Matrix:
    """examples/matrix.yaml: the two-cell example CI builds."""
    return load_matrix(ROOT / "examples" / "matrix.yaml")


@pytest.fixture(scope="session")
def platform_matrix() -> Matrix:
    """examples/platform.yaml: the sheet's platform on Debian bases."""
    return load_matrix(ROOT / "examples" / "platform.yaml")


@pytest.fixture
def build_dir(tmp_path) -> Path:
    """An empty build directory (``--out``)."""
    d = tmp_path / "build"
    d.mkdir()
    return d

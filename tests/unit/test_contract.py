"""The image contract round-trips: what render writes is what the in-image suite parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagematrix.core import contract
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import render_cell

ROOT = Path(__file__).resolve().parents[2]
MATRICES = [
    "matrix.yaml",
    "examples/matrix.yaml",
    "examples/platform.yaml",
    "examples/cpu.yaml",
    "examples/uv.yaml",
    "examples/arm64.yaml",
    "tests/gpu-machine/matrix.yaml",
]


@pytest.mark.parametrize("name", MATRICES)
def test_every_rendered_manifest_parses_back_to_its_cell(name):
    m = load_matrix(ROOT / name)
    for cell in m.cells:
        r = render_cell(m, cell)
        parsed = contract.parse_manifest(r.manifest, f"{cell.id}/cell.json")
        assert (parsed.id, parsed.kind, parsed.python, parsed.cuda, parsed.torch_cuda, parsed.target) == (
            cell.id,
            cell.target.kind,
            cell.python,
            None if cell.cuda.cpu else cell.cuda.version,
            cell.cuda.torch_cuda,
            cell.target.name,
        )
        assert parsed.torch == (cell.packages.get("torch") or None)
        assert parsed.features == frozenset(cell.features)
        assert parsed.pyg_extensions == tuple(e for e in contract.PYG_EXTENSIONS if e in cell.target.pyg_extensions)
        assert parsed.extensions == cell.cuda.extensions
        # The labels mirror the manifest, under the contract's names.
        labels = contract.labels(r.manifest, "base", m.labels)
        assert labels[contract.CELL_LABEL] == cell.id
        assert labels[contract.INPUT_HASH_LABEL] == r.input_hash
        assert (
            f"{contract.CELL_LABEL}=" in r.dockerfile
            and f"COPY imagematrix/{cell.target.name}.json {contract.MANIFEST_PATH}" in r.dockerfile
        )


def test_the_matrix_and_the_suite_share_one_vocabulary():
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "gpu"))
    import gpu_policy

    from imagematrix.matrix import resolve as matrix

    assert matrix.FEATURES is contract.FEATURES is gpu_policy.FEATURES
    assert gpu_policy.PYG_EXTENSIONS is contract.PYG_EXTENSIONS
    assert gpu_policy.parse_cell is contract.parse_manifest

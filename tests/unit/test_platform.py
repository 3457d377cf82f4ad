"""examples/platform.yaml is matrix.yaml on bases this machine can make: same graph, phases, schedule.

Its CUDA keys name what the images carry (12.8.1 -> 12.8, 13.1.1 -> 13.0); everything else the
sheet defines must be the same. The per-family schema (cuda.*.packages, overrides, extensions)
is checked here on the platform, where it is used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagematrix.matrix.plan import Selection, make_plan
from imagematrix.matrix.render import render_cell

ROOT = Path(__file__).resolve().parents[2]
CUDA_KEYS = {"12.8.1": "12.8", "13.1.1": "13.0"}


@pytest.fixture(scope="module")
def sheet(sheet_matrix):
    return sheet_matrix


@pytest.fixture(scope="module")
def twin(platform_matrix):
    return platform_matrix


def _cid(cid: str) -> str:
    for old, new in CUDA_KEYS.items():
        cid = cid.replace(f"cu{old}-", f"cu{new}-")
    return cid


def test_the_twin_has_the_sheets_18_cells_graph_features_and_extensions(sheet, twin):
    assert len(twin.cells) == 18 and twin.warnings == ()
    assert {_cid(c.id) for c in sheet.cells} == {c.id for c in twin.cells}
    for name, t in sheet.targets.items():
        u = twin.targets[name]
        assert (u.parent, u.relation, u.lineage, u.kind) == (t.parent, t.relation, t.lineage, t.kind), name
        assert (u.features, u.pyg_extensions, u.budget_gb is not None) == (t.features, t.pyg_extensions, True), name
        assert (u.prune, u.options) == (t.prune, t.options), name


def test_the_twin_has_the_sheets_phases_schedule_and_exclusion(sheet, twin):
    assert {n: (p.name, tuple(map(_cid, p.cells))) for n, p in sheet.phases.items()} == {
        n: (p.name, p.cells) for n, p in twin.phases.items()
    }
    assert (sheet.timezone, sheet.schedule) == (twin.timezone, twin.schedule)
    assert {_cid(c): why for c, why in sheet.excluded.items()} == twin.excluded


def test_each_family_gets_its_own_torch_bases_and_compiler(twin):
    fam = {c.family: c for c in twin.cells if c.target.name == "devel"}
    assert fam[("12.8", "3.13")].packages["torch"] == "2.10.0"
    assert fam[("13.0", "3.14")].packages["torch"] == "2.11.0"
    assert fam[("12.8", "3.13")].bases["devel"] == "debian:trixie-slim"
    assert fam[("12.8", "3.14")].bases == {"devel": "debian:forky-slim", "runtime": "debian:forky-slim"}
    assert "gxx" in fam[("12.8", "3.14")].packages and "gxx" not in fam[("12.8", "3.13")].packages
    # Top-level pins reach every family.
    assert {c.packages["torch_geometric"] for c in twin.cells} == {twin.packages["torch_geometric"]}


def test_a_cpu_extensions_family_claims_no_cuda_extension_and_builds_cpu_only(twin):
    cpu = twin.cell("cu12.8-py3.13-devel")
    gpu = twin.cell("cu13.0-py3.14-devel")
    assert "cuda_extension" not in cpu.features and "cuda_extension" in gpu.features
    r_cpu, r_gpu = render_cell(twin, cpu), render_cell(twin, gpu)
    assert (r_cpu.manifest["extensions"], r_gpu.manifest["extensions"]) == ("cpu", "cuda")
    assert "cuda_extension" not in r_cpu.manifest["features"]
    assert "FORCE_ONLY_CPU=1" in r_cpu.dockerfile and "FORCE_CUDA" not in r_cpu.dockerfile
    assert "FORCE_CUDA=1" in r_gpu.dockerfile and 'TORCH_CUDA_ARCH_LIST="9.0"' in r_gpu.dockerfile
    assert "cuda-toolkit[nvcc,cudart,cccl,crt]==13.0.2" in r_gpu.dockerfile
    assert "nvidia-nvvm==13.0.88" in r_gpu.dockerfile and "nvcc" not in r_cpu.dockerfile


def test_python_3_14_cells_start_from_forky_with_g_14(twin):
    r = render_cell(twin, twin.cell("cu13.0-py3.14-marimo-runtime"))
    froms = [line for line in r.dockerfile.splitlines() if line.startswith("FROM debian:")]
    assert froms == ["FROM debian:forky-slim AS devel", "FROM debian:forky-slim AS marimo-runtime"]
    lines = r.dockerfile.splitlines()
    # Both the devel and the runtime stage install g++-14 and point CC/CXX at it, each on its own line.
    assert sum(line.strip().startswith("ca-certificates") and "g++-14 " in line for line in lines) == 2
    assert sum(line.startswith("ENV CC=gcc-14 CXX=g++-14") for line in lines) == 2
    assert all(line.rstrip().endswith(("-dev", "-venv", "\\")) for line in lines if "python3.14-dev" in line)


def test_every_twin_cell_renders_and_plans(twin, tmp_path):
    plan = make_plan(twin, Selection(), tmp_path)
    assert len(plan.steps) == 18
    assert len({s.rendered.input_hash for s in plan.steps}) == 18

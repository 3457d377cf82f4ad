from pathlib import Path

from imagematrix.matrix import load_matrix
from imagematrix.plan import Selection, make_plan

ROOT = Path(__file__).resolve().parents[2]


def test_default_matrix_has_the_sheets_18_cells():
    m = load_matrix(ROOT / "matrix.yaml")
    assert len(m.cells) == 18


def test_phase_2_plans_the_sheets_devel_cells_parents_first():
    m = load_matrix(ROOT / "matrix.yaml")
    plan = make_plan(m, Selection(phases=(2,)))
    assert [s.cell.id for s in plan.steps] == [
        "cu12.8.1-py3.13-devel",
        "cu12.8.1-py3.13-ray-devel",
        "cu12.8.1-py3.13-marimo-devel",
    ]

"""The quickest check that the foundation holds together: the public names, and one pass
from matrix file to build context, as the later issues (build, test, publish) use them."""

from __future__ import annotations

import json
from pathlib import Path

import imagematrix.matrix.load as matrix_mod
import imagematrix.matrix.plan as plan_mod
import imagematrix.matrix.render as render_mod

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = {
    matrix_mod: ["load_matrix", "Matrix", "Cell", "Target", "Cuda", "cell_id"],
    render_mod: ["render_cell", "write_context", "Rendered"],
    plan_mod: ["make_plan", "Selection", "select_cells", "Plan", "BuildStep"],
}


def test_the_public_names_later_issues_depend_on_exist():
    missing = [f"{mod.__name__}.{name}" for mod, names in PUBLIC.items() for name in names if not hasattr(mod, name)]
    assert missing == []


def test_matrix_to_plan_to_build_context_for_the_example_matrix(tmp_path):
    m = matrix_mod.load_matrix(ROOT / "examples" / "matrix.yaml")
    plan = plan_mod.make_plan(m, plan_mod.Selection(), tmp_path)
    assert [s.cell.id for s in plan.steps] == ["cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"]
    assert plan.steps[1].needs == ("cu13.2-py3.13-devel",)
    for step in plan.steps:
        ctx = render_mod.write_context(step.rendered, tmp_path)
        assert ctx == step.context
        assert step.dockerfile.read_text() == step.rendered.dockerfile
        assert json.loads((ctx / "cell.json").read_text())["id"] == step.cell.id
    assert matrix_mod.cell_id("13.2", "3.13", "runtime") == plan.steps[1].cell.id

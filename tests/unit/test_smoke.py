"""The quickest check that the foundation holds together: the public API, and one pass from matrix
file to build context, as the later stages (build, test, publish) use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imagematrix

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_resolves_and_names_its_home():
    for name in imagematrix.__all__:
        value = getattr(imagematrix, name)
        if name != "__version__":
            assert imagematrix._API[name] == value.__module__, name


def test_importing_the_package_imports_nothing_but_the_standard_library():
    code = (
        "import sys, imagematrix; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'jinja2', 'docker', 'yaml', 'rich')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_matrix_to_plan_to_build_context_for_the_example_matrix(tmp_path):
    m = imagematrix.load_matrix(ROOT / "examples" / "matrix.yaml")
    plan = imagematrix.make_plan(m, imagematrix.Selection(), tmp_path)
    assert [s.cell.id for s in plan.steps] == ["cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"]
    assert plan.steps[1].needs == ("cu13.2-py3.13-devel",)
    for step in plan.steps:
        ctx = imagematrix.write_context(step.rendered, tmp_path)
        assert ctx == step.context
        assert step.dockerfile.read_text() == step.rendered.dockerfile
        assert json.loads((ctx / "cell.json").read_text())["id"] == step.cell.id
    assert imagematrix.cell_id("13.2", "3.13", "runtime") == plan.steps[1].cell.id

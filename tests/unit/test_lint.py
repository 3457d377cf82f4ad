"""hadolint passes on every rendered Dockerfile, and the linters would notice if it did not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from imagematrix.cli.lint import HADOLINT_CONFIG, config_for, hadolint, lint_cells, ruff
from imagematrix.matrix.load import load_matrix

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "dockerfiles" / HADOLINT_CONFIG
MATRICES = {
    "default": ROOT / "matrix.yaml",
    "example": ROOT / "examples" / "matrix.yaml",
    "platform": ROOT / "examples" / "platform.yaml",
    "cpu": ROOT / "examples" / "cpu.yaml",
    "uv": ROOT / "examples" / "uv.yaml",
    "arm64": ROOT / "examples" / "arm64.yaml",
}


@pytest.mark.parametrize("name", MATRICES)
def test_every_cell_renders_to_a_dockerfile_hadolint_accepts(name):
    m = load_matrix(MATRICES[name])
    findings = lint_cells(m, m.cells, CONFIG)
    assert [str(f) for f in findings] == []


def test_hadolint_reports_what_it_finds_with_line_code_and_level():
    text = "FROM debian:trixie-slim\nRUN apt install -y curl\n"
    findings = hadolint(text, "x/Dockerfile", CONFIG)
    assert ("x/Dockerfile", 2, "DL3027", "warning") in {(f.file, f.line, f.code, f.level) for f in findings}
    assert str(findings[0]).startswith("x/Dockerfile:2: DL3")


def test_inline_ignore_pragmas_do_not_count_only_the_config_ignores(tmp_path):
    text = "FROM debian:trixie-slim\n# hadolint ignore=DL3027\nRUN apt install -y curl\n"
    assert "DL3027" in {f.code for f in hadolint(text, "x", CONFIG)}
    # DL3008 (unpinned apt packages) is the config's one ignored rule: absent with it, present without.
    apt = (
        "FROM debian:trixie-slim\nRUN apt-get update && apt-get install -y --no-install-recommends curl \\\n"
        " && rm -rf /var/lib/apt/lists/*\n"
    )
    assert hadolint(apt, "x", CONFIG) == []
    bare = tmp_path / "bare.yaml"
    bare.write_text("ignored: []\n")
    assert {f.code for f in hadolint(apt, "x", bare)} == {"DL3008"}


def test_every_ignored_rule_is_justified_on_its_own_line():
    ignored = yaml.safe_load(CONFIG.read_text())["ignored"]
    assert ignored, "nothing ignored: then drop this test's expectation"
    for rule in ignored:
        line = next(ln for ln in CONFIG.read_text().splitlines() if re.match(rf"\s*-\s*{rule}\b", ln))
        reason = line.partition("#")[2].strip()
        assert len(reason) > 20, f"{rule} in {CONFIG.name} needs a one-line reason after '#'"


@pytest.mark.parametrize("name", MATRICES)
def test_the_config_is_the_one_beside_the_fragments(name):
    m = load_matrix(MATRICES[name])
    assert config_for(MATRICES[name], m.fragments_dir) == CONFIG


def test_ruff_reports_findings_with_paths_relative_to_its_root(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["F"]\n')
    (tmp_path / "bad.py").write_text("import os\n")
    (tmp_path / "good.py").write_text("print('ok')\n")
    findings = ruff(["bad.py", "good.py", "missing.py"], root=tmp_path)
    assert [(f.file, f.line, f.code) for f in findings] == [("bad.py", 1, "F401")]
    assert ruff(["good.py"], root=tmp_path) == []

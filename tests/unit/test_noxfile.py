"""noxfile.py as a user lists it: sessions derived from the matrix, one per Python, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from imagematrix.matrix.load import load_matrix

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "matrix.yaml"
LINE = re.compile(r"^[*-] (\S+)(?: \[[^]]*\])? -> (.+)$")  # name [tags] -> description


def nox_list(matrix: Path | None = None) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGEMATRIX_MATRIX"}
    if matrix is not None:
        env["IMAGEMATRIX_MATRIX"] = str(matrix)
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-l"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    sessions = {m[1]: m[2] for m in map(LINE.match, proc.stdout.splitlines()) if m}
    return proc, sessions


def gpu_names(pythons) -> set[str]:
    return {f"gpu_{suite}-{py}" for py in pythons for suite in ("smoke", "full")}


def test_default_matrix_gives_two_sessions_per_python():
    proc, sessions = nox_list()
    assert proc.returncode == 0, proc.stderr
    pythons = load_matrix(ROOT / "matrix.yaml").pythons
    assert {n for n in sessions if n.startswith("gpu_")} == gpu_names(pythons)
    assert {"unit", "integration", "lint"} <= sessions.keys()
    for name, description in sessions.items():  # each with a one-line description
        assert description.strip() and "\n" not in description, name


def test_gpu_sessions_are_tagged_by_suite():
    proc, _ = nox_list()
    pythons = load_matrix(ROOT / "matrix.yaml").pythons
    for py in pythons:
        assert f"gpu_smoke-{py} [gpu_smoke] -> " in proc.stdout and f"gpu_full-{py} [gpu_full] -> " in proc.stdout


def test_env_selects_the_matrix_and_names_follow_it(tmp_path):
    _, sessions = nox_list(EXAMPLE)
    assert {n for n in sessions if n.startswith("gpu_")} == gpu_names(load_matrix(EXAMPLE).pythons)
    # Pythons this host does not have: still one session each, none collapsed.
    data = yaml.safe_load(EXAMPLE.read_text())
    data["python"] = ["3.12", "3.15"]
    data["phases"] = {}
    data["build"]["fragments_dir"] = str((EXAMPLE.parent / data["build"]["fragments_dir"]).resolve())
    other = tmp_path / "matrix.yaml"
    other.write_text(yaml.safe_dump(data))
    proc, sessions = nox_list(other)
    assert proc.returncode == 0, proc.stderr
    assert {n for n in sessions if n.startswith("gpu_")} == gpu_names(["3.12", "3.15"])
    assert "Python 3.15" in sessions["gpu_full-3.15"]


def test_broken_matrix_lists_the_other_sessions_and_says_why(tmp_path):
    bad = tmp_path / "matrix.yaml"
    bad.write_text("schema: 1\nimage: x\npython: [3.10]\n")
    proc, sessions = nox_list(bad)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert {"unit", "integration", "lint"} <= sessions.keys()
    assert not [n for n in sessions if n.startswith("gpu_")]
    assert "no gpu_* sessions" in proc.stderr and f"{bad}:3" in proc.stderr


def test_noxfile_names_no_version():
    text = (ROOT / "noxfile.py").read_text()
    assert not re.search(r"\b3\.1\d\b|\b1[23]\.\d\b", text)

"""`imagematrix init`: a project from a bundled example, loadable as written, never over an existing one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from imagematrix.cli.starter import init_project
from imagematrix.core.errors import UsageError
from imagematrix.matrix.load import load_matrix


def _init(directory, example: str) -> str:
    buf = io.StringIO()
    assert init_project(directory, example, Console(file=buf, width=400)) == 0
    return buf.getvalue()


def test_an_example_with_a_wheelhouse_says_how_to_fill_it(tmp_path):
    out = _init(tmp_path, "cpu")
    m = load_matrix(tmp_path / "matrix.yaml")
    assert m.wheelhouse == (tmp_path / "cpu.wheelhouse").resolve() and not list(m.wheelhouse.glob("*.whl"))
    assert (
        f"first: fill cpu.wheelhouse/ (builds install from it alone, and wheels are not copied): python3 -m pip "
        f"download --only-binary :all: --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 "
        f"--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d {m.wheelhouse} torch==2.13.0"
    ) in out


def test_the_notebooks_example_names_every_pin_to_fetch_and_holds_torch_in_one_target(tmp_path):
    out = _init(tmp_path, "notebooks")
    m = load_matrix(tmp_path / "matrix.yaml")
    assert "notebooks.wheelhouse jupyterlab==4.5.0 torch==2.13.0 next:" in " ".join(out.split())
    assert {t.name: t.holds_torch for t in m.targets.values()} == {
        "base": False,
        "lab": False,
        "lab-slim": False,
        "torch": True,
    }


def test_an_example_without_a_wheelhouse_goes_straight_to_build(tmp_path):
    out = _init(tmp_path, "matrix")
    assert "first:" not in out and out.splitlines()[-1].startswith("next: imagematrix doctor")
    assert len(load_matrix(tmp_path / "matrix.yaml").cells) == 2


def test_init_never_overwrites_a_project(tmp_path):
    _init(tmp_path, "matrix")
    before = (tmp_path / "matrix.yaml").read_text()
    with pytest.raises(UsageError, match="init never overwrites a project"):
        _init(tmp_path, "cpu")
    assert (tmp_path / "matrix.yaml").read_text() == before


def test_init_never_writes_through_a_dangling_link(tmp_path):
    target = tmp_path / "elsewhere" / "matrix.yaml"
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "matrix.yaml").symlink_to(target)
    with pytest.raises(UsageError, match="is a link"):
        _init(tmp_path / "proj", "matrix")
    assert not target.exists() and sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["matrix.yaml"]


def test_init_is_all_or_nothing(tmp_path, monkeypatch):
    import imagematrix.matrix.load as matrix_module

    def broken(path):
        raise UsageError("the example does not load")

    monkeypatch.setattr(matrix_module, "load_matrix", broken)
    with pytest.raises(UsageError, match="does not load"):
        _init(tmp_path, "uv")
    assert list(tmp_path.iterdir()) == []  # no half project, no staging directory left
    monkeypatch.undo()
    _init(tmp_path, "uv")  # a rerun is not refused
    assert (tmp_path / "uv.project" / "uv.lock").is_file()

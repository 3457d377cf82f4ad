"""The runtime policy fragments as rendered: what prune removes per option, and no layer duplication."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from imagematrix.cli.lint import find_config, hadolint
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import render_cell

ROOT = Path(__file__).resolve().parents[2]
MATRICES = {"default": ROOT / "matrix.yaml", "example": ROOT / "examples" / "matrix.yaml"}


def runtime_cells():
    return [
        (name, c.id) for name, path in MATRICES.items() for c in load_matrix(path).cells if c.target.kind == "runtime"
    ]


def stage(dockerfile: str, name: str) -> str:
    """The text of stage ``name`` (from its FROM line to the next FROM)."""
    m = re.search(rf"^FROM \S+ AS {re.escape(name)}\n(.*?)(?=^FROM |\Z)", dockerfile, re.S | re.M)
    assert m, f"no stage {name}"
    return m.group(1)


def with_options(matrix: str, cell_id: str, **options):
    m = load_matrix(MATRICES[matrix])
    cell = m.cell(cell_id)
    t = dataclasses.replace(cell.target, options={**cell.target.options, **options})
    m2 = dataclasses.replace(m, targets={**m.targets, t.name: t})
    return render_cell(m2, dataclasses.replace(cell, target=t))


@pytest.mark.parametrize(("matrix", "cell_id"), runtime_cells())
def test_nothing_rewrites_the_copied_environment(matrix, cell_id):
    """A RUN after COPY --from=prune-* (chmod, chown, rm, pip) would store the env a second time."""
    m = load_matrix(MATRICES[matrix])
    cell = m.cell(cell_id)
    body = stage(render_cell(m, cell).dockerfile, cell.target.name)
    first_copy = body.index(f"COPY --from=prune-{cell.target.name} ")
    after = [line for line in body[first_copy:].splitlines() if not line.startswith("#")]
    assert not [line for line in after if line.startswith("RUN")], after
    assert "--chown" not in body and "--chmod" not in body


@pytest.mark.parametrize(("matrix", "cell_id"), runtime_cells())
def test_the_sheets_policy_keeps_headers_and_debug_info_by_default(matrix, cell_id):
    m = load_matrix(MATRICES[matrix])
    cell = m.cell(cell_id)
    prune = stage(render_cell(m, cell).dockerfile, f"prune-{cell.target.name}")
    assert "-path '*/include' -prune" in prune  # torch/include, nvidia/*/include survive the test-dir sweep
    assert "-name '__pycache__' -o -name 'tests' -o -name 'test'" in prune
    for word in ("share", "functorch", "strip", "'*.a'"):
        assert word not in prune, word


def test_options_add_their_step_to_the_prune_stage_only():
    plain = render_cell(
        load_matrix(MATRICES["example"]), load_matrix(MATRICES["example"]).cell("cu13.2-py3.13-runtime")
    )
    slim = with_options("example", "cu13.2-py3.13-runtime", strip_debug=True, drop_static_libs=True)
    prune = stage(slim.dockerfile, "prune-runtime")
    assert "find \"$root\" -type f -name '*.a' -delete" in prune
    assert "strip --strip-debug" in prune and "-links 1" in prune  # hard links stay whole, not doubled
    assert "install binutils there or set targets.runtime.options.strip_debug: false" in prune
    # The OS side of drop_static_libs happens in the same RUN as the install: no layer keeps the .a files.
    assert "libpython3.13*.a" in stage(slim.dockerfile, "runtime")
    assert stage(slim.dockerfile, "devel") == stage(plain.dockerfile, "devel")


def test_drop_packages_uninstalls_in_exec_form_with_no_shell():
    r = with_options("example", "cu13.2-py3.13-runtime", drop_packages="torchvision torchaudio")
    line = next(x for x in stage(r.dockerfile, "prune-runtime").splitlines() if "uninstall" in x)
    assert json.loads(line.removeprefix("RUN ")) == [
        "python",
        "-m",
        "pip",
        "uninstall",
        "--yes",
        "torchvision",
        "torchaudio",
    ]


def test_torch_extras_pin_from_packages_and_use_torchs_index():
    m = load_matrix(MATRICES["default"])
    cell = m.cell("cu12.8.1-py3.13-devel")
    t = dataclasses.replace(
        cell.target, fragments=(*cell.target.fragments, "torch-extras"), options={"torch_extras": "torchvision"}
    )
    m2 = dataclasses.replace(m, targets={**m.targets, "devel": t}, packages={**m.packages, "torchvision": "0.26.0"})
    body = stage(render_cell(m2, dataclasses.replace(cell, target=t)).dockerfile, "devel")
    assert f"pip install torchvision==0.26.0 --index-url {cell.cuda.torch_index}" in body
    assert "torchaudio" not in body.split("# fragment: torch-extras")[1]


def test_runtime_stages_with_every_knob_on_pass_hadolint():
    r = with_options(
        "example", "cu13.2-py3.13-runtime", strip_debug=True, drop_static_libs=True, drop_packages="torchvision"
    )
    findings = hadolint(r.dockerfile, "example runtime, all knobs", find_config(ROOT / "dockerfiles"))
    assert not findings, "\n".join(map(str, findings))

"""Rendering: golden files, determinism, the image contract, nothing version-specific in fragments.

Golden renderings live in golden/<matrix>/<cell id>/{Dockerfile,cell.json}. After an
intended change to the fragments or the renderer, regenerate them and review the diff:

    IMAGEMATRIX_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py -k golden
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagematrix.core.errors import UsageError
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import MANIFEST_PATH, dockerfile_quote, render_cell, write_context

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("IMAGEMATRIX_UPDATE_GOLDEN") == "1"
MATRICES = {"default": ROOT / "matrix.yaml", "example": ROOT / "examples" / "matrix.yaml"}
GOLDEN_CELLS = [
    ("default", "cu12.8.1-py3.13-devel"),
    ("default", "cu12.8.1-py3.13-marimo-runtime"),  # the deepest lineage: four stages and a prune stage
    ("default", "cu13.1.1-py3.14-ray-runtime"),  # the other CUDA and Python
    ("example", "cu13.2-py3.13-devel"),
    ("example", "cu13.2-py3.13-runtime"),
]


@pytest.fixture(scope="module")
def matrices():
    return {name: load_matrix(path) for name, path in MATRICES.items()}


def all_cells():
    return [(name, c.id) for name, path in MATRICES.items() for c in load_matrix(path).cells]


def stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its text, split on the renderer's stage comments."""
    parts = re.split(r"^# ---- stage (\S+): \S+ ----\n", dockerfile, flags=re.M)
    # The blank line that separates stages belongs to no stage.
    return {name: body.rstrip("\n") + "\n" for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def labels(stage_text: str) -> dict[str, str]:
    block = stage_text[stage_text.rindex("LABEL ") :]
    return {k: json.loads(v) for k, v in re.findall(r'([\w.-]+)=("(?:[^"\\]|\\.)*")', block)}


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("matrix", "cid"), GOLDEN_CELLS, ids=[c for _, c in GOLDEN_CELLS])
def test_rendering_matches_the_golden_file(matrices, matrix, cid):
    m = matrices[matrix]
    r = render_cell(m, m.cell(cid))
    got = {"Dockerfile": r.dockerfile, "cell.json": r.files["cell.json"].decode()}
    for name, text in got.items():
        golden = GOLDEN / matrix / cid / name
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
            continue
        assert golden.is_file(), f"no golden file {golden}: run with IMAGEMATRIX_UPDATE_GOLDEN=1"
        want = golden.read_text()
        if text != want:
            diff = "".join(
                difflib.unified_diff(
                    want.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    str(golden),
                    "rendered",
                    n=2,
                )
            )
            pytest.fail(
                f"{matrix}/{cid}/{name} differs from its golden file. If the change is intended, run\n"
                f"  IMAGEMATRIX_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py -k golden\n"
                f"and review the diff of {GOLDEN.relative_to(ROOT)}/:\n{diff[:6000]}"
            )


def test_every_golden_directory_is_a_cell_still_in_its_matrix():
    present = {(p.parent.name, p.name) for p in GOLDEN.glob("*/*") if p.is_dir()}
    assert present == set(GOLDEN_CELLS)


# --- determinism ----------------------------------------------------------------------------

_DIGEST = """
import hashlib, sys
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.render import render_cell
h = hashlib.sha256()
for path in sys.argv[1:]:
    m = load_matrix(path)
    for c in m.cells:
        r = render_cell(m, c)
        h.update(r.dockerfile.encode())
        for k in sorted(r.files):
            h.update(k.encode() + r.files[k])
print(h.hexdigest())
"""


def _digest(matrices) -> str:
    h = hashlib.sha256()
    for m in matrices.values():
        for c in m.cells:
            r = render_cell(m, c)
            h.update(r.dockerfile.encode())
            for k in sorted(r.files):
                h.update(k.encode() + r.files[k])
    return h.hexdigest()


def test_rendering_twice_is_byte_identical(matrices):
    again = {name: load_matrix(path) for name, path in MATRICES.items()}
    assert _digest(matrices) == _digest(again)


def test_rendering_does_not_depend_on_the_process_hash_seed(matrices):
    """Set or dict ordering leaking into a Dockerfile would show up as a different digest."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DIGEST, *map(str, MATRICES.values())],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        for seed in ("1", "2")
    ]
    digests = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0, 0]
    assert digests == {_digest(matrices)}


# --- what every rendered Dockerfile must be ------------------------------------------------


@pytest.mark.parametrize(("matrix", "cid"), all_cells(), ids=[c for _, c in all_cells()])
def test_rendered_dockerfile_contract(matrices, matrix, cid):
    m = matrices[matrix]
    cell = m.cell(cid)
    r = render_cell(m, cell)
    text = r.dockerfile
    # No `# syntax=` line: it would pull a frontend image, which fails offline.
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M | re.I)
    # One stage per target of the lineage, plus a prune stage per slim target; the last is the cell's.
    froms = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.M)
    assert froms == list(r.stages) and froms[-1] == cell.target.name == r.stage
    # Runtime targets copy from stages of the same file, so BuildKit shares them.
    for src in re.findall(r"--from=(\S+)", text):
        assert src in froms[: froms.index(cell.target.name)], f"COPY --from={src} names no earlier stage"
    # Each stage is labelled and carries cell.json for its own cell.
    per_stage = stages(text)
    assert list(per_stage) == list(cell.target.lineage)
    for name, body in per_stage.items():
        sc = m.stage_cell(cell, name)
        assert labels(body)["imagematrix.cell"] == sc.id
        assert f"COPY imagematrix/{name}.json {MANIFEST_PATH}\n" in body
    # Nothing version-specific except this cell's own versions.
    other_pythons = set(m.pythons) - {cell.python}
    for v in other_pythons:
        assert not re.search(rf"(?<![\d.]){re.escape(v)}(?![\d])", text), f"Python {v} leaked into {cid}"
        assert f"cp{v.replace('.', '')}" not in text


def test_the_image_contract_labels_equal_cell_json(matrices):
    m = matrices["default"]
    cell = m.cell("cu12.8.1-py3.13-ray-runtime")
    r = render_cell(m, cell)
    man = json.loads(r.files["cell.json"])
    assert man == r.manifest
    assert man["id"] == cell.id and man["target"] == "ray-runtime" and man["parent"] == "ray-devel"
    assert (man["cuda"], man["python"], man["torch"]) == ("12.8.1", "3.13", m.packages["torch"])
    assert man["features"] == list(cell.target.features) and "ray" in man["features"]
    assert man["input_hash"] == r.input_hash and man["input_hash"].startswith("sha256:")
    lab = labels(stages(r.dockerfile)["ray-runtime"])
    for key in ("cuda", "python", "torch", "target", "parent"):
        assert lab[f"imagematrix.{key}"] == man[key]
    assert lab["imagematrix.cell"] == man["id"]
    assert lab["imagematrix.input-hash"] == man["input_hash"]
    assert lab["imagematrix.features"] == ",".join(man["features"])
    assert lab["org.opencontainers.image.source"] == m.labels["org.opencontainers.image.source"]
    assert json.loads(r.files["imagematrix/ray-devel.json"])["id"] == "cu12.8.1-py3.13-ray-devel"


def test_shared_stages_are_byte_identical_across_the_family(matrices):
    """devel's stage text is the same in every cell that builds on it: BuildKit builds it once."""
    m = matrices["default"]
    for python in m.pythons:
        for cuda in m.cudas:
            family = [c for c in m.cells if c.family == (cuda, python)]
            texts = {}
            for c in family:
                for name, body in stages(render_cell(m, c).dockerfile).items():
                    texts.setdefault(name, set()).add(body)
            assert all(len(v) == 1 for v in texts.values()), (cuda, python)


def test_the_input_hash_follows_the_inputs(matrices):
    m = matrices["default"]
    cell = m.cell("cu12.8.1-py3.13-runtime")
    base = render_cell(m, cell)
    devel_hash = json.loads(base.files["imagematrix/devel.json"])["input_hash"]

    newer_torch = dataclasses.replace(m, packages={**m.packages, "torch": "9.9.9"})
    changed = render_cell(newer_torch, newer_torch.cell(cell.id))
    assert changed.input_hash != base.input_hash
    assert json.loads(changed.files["imagematrix/devel.json"])["input_hash"] != devel_hash

    # An option of the runtime target changes the runtime stage only, never its parent's.
    rt = m.targets["runtime"]
    opts = {**rt.options, "strip_debug": not rt.options.get("strip_debug", False)}
    targets = {**m.targets, "runtime": dataclasses.replace(rt, options=opts)}
    m2 = dataclasses.replace(m, targets=targets)
    c2 = dataclasses.replace(cell, target=targets["runtime"])
    r2 = render_cell(m2, c2)
    assert r2.input_hash != base.input_hash
    assert json.loads(r2.files["imagematrix/devel.json"])["input_hash"] == devel_hash


# --- fragments -------------------------------------------------------------------------------

_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_VERSION_LITERAL = re.compile(r"(?<![\w.])(?:\d+\.\d+(?:\.\d+)?|cp3\d{1,2}|cu1\d{2})(?![\w.])")


@pytest.mark.parametrize("fragment", sorted((ROOT / "dockerfiles").glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_fragments_write_no_version_literally(fragment):
    """Versions come from the cell (the sheet's trouble log: a hard-coded cp314 broke a build)."""
    text = _TEMPLATE_CODE.sub("", fragment.read_text())
    found = _VERSION_LITERAL.findall(text)
    assert not found, (
        f"{fragment.name} hard-codes {found}: take them from matrix.yaml ({{{{ python }}}}, {{{{ packages.X }}}}, "
        f"{{{{ cuda.tag }}}})"
    )


def test_the_version_literal_check_catches_hard_coded_versions():
    for text in ("RUN pip install torch==2.11.0", "FROM python:3.13", "RUN ls cp314", "--index-url .../cu128"):
        assert _VERSION_LITERAL.search(_TEMPLATE_CODE.sub("", text)), text
    assert not _VERSION_LITERAL.search(_TEMPLATE_CODE.sub("", "RUN python{{ python }} -m venv /opt/venv"))


def test_an_undefined_template_value_names_the_fragment_and_the_cell(tmp_path):
    data = Path(__file__).resolve().parent / "data"
    frags = tmp_path / "fragments"
    frags.mkdir()
    for f in (data / "fragments").iterdir():
        (frags / f.name).write_text(f.read_text())
    (frags / "torch.Dockerfile").write_text("RUN pip install torch=={{ packages.torchh }}\n")
    (tmp_path / "m.yaml").write_text((data / "good.yaml").read_text())
    m = load_matrix(tmp_path / "m.yaml")
    with pytest.raises(UsageError, match=r"torch\.Dockerfile:1: .*torchh.* while rendering cell cu13\.2-py3\.13-devel"):
        render_cell(m, m.cell("cu13.2-py3.13-devel"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{{ 1 + "a" }}',
            r"torch\.Dockerfile:2: TypeError: unsupported operand .* while rendering cell cu13\.2-py3\.13-devel",
        ),
        ('{% include "missing.txt" %}', r"torch\.Dockerfile:2: includes 'missing\.txt', which is not in "),
        ("{% if %}", r"torch\.Dockerfile:2: template syntax error: "),
        ("{{ 1 // 0 }}", r"torch\.Dockerfile:2: ZeroDivisionError: "),
    ],
)
def test_every_template_error_names_the_fragment_file_and_line(tmp_path, body, message):
    m = _matrix_with_torch_fragment(tmp_path, f"RUN echo first line\n{body}\n")
    with pytest.raises(UsageError, match=message):
        render_cell(m, m.cell("cu13.2-py3.13-devel"))


def test_fragments_render_in_a_sandbox_that_runs_no_host_code(tmp_path):
    marker = tmp_path / "pwned"
    m = _matrix_with_torch_fragment(
        tmp_path, f"RUN echo {{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}\n"
    )
    with pytest.raises(UsageError, match=r"torch\.Dockerfile:1: .*unsafe.* sandbox"):
        render_cell(m, m.cell("cu13.2-py3.13-devel"))
    assert not marker.exists()


def _matrix_with_torch_fragment(tmp_path: Path, text: str):
    data = Path(__file__).resolve().parent / "data"
    frags = tmp_path / "fragments"
    frags.mkdir()
    for f in (data / "fragments").iterdir():
        (frags / f.name).write_text(f.read_text())
    (frags / "torch.Dockerfile").write_text(text)
    (tmp_path / "m.yaml").write_text((data / "good.yaml").read_text())
    return load_matrix(tmp_path / "m.yaml")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("$HOME", '"\\$HOME"'),
        ("caf\u00e9", '"caf\u00e9"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
    ],
)
def test_label_values_are_quoted_so_the_dockerfile_reads_back_what_was_written(value, written):
    assert dockerfile_quote(value) == written


def test_a_label_value_with_a_newline_cannot_be_quoted():
    with pytest.raises(UsageError, match="control characters"):
        dockerfile_quote("two\nlines")


# --- write_context ---------------------------------------------------------------------------


def test_write_context_writes_once_and_removes_stale_files(matrices, tmp_path):
    m = matrices["default"]
    r = render_cell(m, m.cell("cu12.8.1-py3.13-ray-runtime"))
    ctx = write_context(r, tmp_path)
    assert ctx == tmp_path / "cu12.8.1-py3.13-ray-runtime"
    assert (ctx / "Dockerfile").read_text() == r.dockerfile
    assert json.loads((ctx / "cell.json").read_text())["id"] == "cu12.8.1-py3.13-ray-runtime"
    assert sorted(p.name for p in (ctx / "imagematrix").iterdir()) == [
        "devel.json",
        "ray-devel.json",
        "ray-runtime.json",
    ]

    stale = ctx / "imagematrix" / "old-target.json"
    stale.write_text("{}")
    before = (ctx / "Dockerfile").stat().st_mtime_ns
    write_context(r, tmp_path)
    assert not stale.exists()
    assert (ctx / "Dockerfile").stat().st_mtime_ns == before, "unchanged files are not rewritten"
    assert not list(ctx.rglob("*.tmp"))

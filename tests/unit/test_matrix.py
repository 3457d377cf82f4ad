"""matrix.yaml: the real matrix is the source sheet, and every broken file says what is wrong.

The error corpus lives in data/bad/ (and data/warn/): each file is data/good.yaml
with one thing broken, and its header lists the exact messages it must produce
(``# error: {file}:LINE: KEY.PATH: message``). Adding a case = adding a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from imagematrix.core.errors import MatrixError, UsageError
from imagematrix.core.reference import valid_reference
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.schema import cron_problem, matrix_json_schema

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
BAD = sorted((DATA / "bad").glob("*.yaml"))
WARN = sorted((DATA / "warn").glob("*.yaml"))


def expected(path: Path, kind: str) -> list[str]:
    """The ``# kind: ...`` header lines of a corpus file, placeholders filled in."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith(f"# {kind}: "):
            msg = line[len(f"# {kind}: ") :]
            out.append(msg.replace("{file}", str(path)).replace("{fragments}", str((DATA / "fragments").resolve())))
    return out


# --- the real matrix ------------------------------------------------------------------


@pytest.fixture(scope="module")
def m(sheet_matrix):
    return sheet_matrix


def test_the_default_matrix_is_the_sheets_18_cells_and_warns_about_nothing(m):
    assert len(m.cells) == 18
    assert m.warnings == ()
    assert m.image == "plumiiume/cslr-exp-platform"
    assert {c.family for c in m.cells} == {("12.8.1", "3.13"), ("13.1.1", "3.14"), ("12.8.1", "3.14")}
    assert len({c.id for c in m.cells}) == len({c.tag for c in m.cells}) == 18


def test_cuda_13_1_1_with_python_3_13_is_excluded_with_a_reason(m):
    excluded = {cid for cid in m.excluded if cid.startswith("cu13.1.1-py3.13-")}
    assert len(excluded) == 6
    assert not [c for c in m.cells if c.family == ("13.1.1", "3.13")]
    assert all(m.excluded[cid] for cid in excluded)


def test_target_graph_is_the_sheets(m):
    graph = {n: (t.parent, t.relation) for n, t in m.targets.items()}
    assert graph == {
        "devel": (None, None),
        "runtime": ("devel", "slim"),
        "ray-devel": ("devel", "extends"),
        "ray-runtime": ("ray-devel", "slim"),
        "marimo-devel": ("ray-devel", "extends"),
        "marimo-runtime": ("marimo-devel", "slim"),
    }
    assert m.targets["marimo-runtime"].lineage == ("devel", "ray-devel", "marimo-devel", "marimo-runtime")
    assert m.target_order()[0] == "devel"


def test_features_are_inherited_and_runtime_targets_drop_only_cuda_extension(m):
    f = {n: set(t.features) for n, t in m.targets.items()}
    assert {"cpp_extension", "cuda_extension", "torch_compile", "pyg"} <= f["devel"]
    assert f["ray-devel"] == f["devel"] | {"ray"}
    assert f["marimo-devel"] == f["ray-devel"] | {"marimo"}
    for runtime, devel in (("runtime", "devel"), ("ray-runtime", "ray-devel"), ("marimo-runtime", "marimo-devel")):
        assert f[runtime] == f[devel] - {"cuda_extension"}
        assert m.targets[runtime].kind == "runtime"


def test_phases_are_the_sheets(m):
    def cells(n):
        return [
            (c.split("-py")[0][2:], c.split("-py")[1].split("-", 1)[0], c.split("-", 2)[2]) for c in m.phases[n].cells
        ]

    runtimes = ["marimo-runtime", "runtime", "ray-runtime"]
    devels = ["devel", "ray-devel", "marimo-devel"]
    assert cells(1) == [("12.8.1", "3.13", t) for t in runtimes]
    assert cells(2) == [("12.8.1", "3.13", t) for t in devels]
    assert cells(3) == [("13.1.1", "3.14", t) for t in runtimes]
    assert cells(4) == [("12.8.1", "3.14", t) for t in runtimes]
    assert cells(5) == [("13.1.1", "3.14", t) for t in devels] + [("12.8.1", "3.14", t) for t in devels]
    assert sorted(cid for p in m.phases.values() for cid in p.cells) == sorted(c.id for c in m.cells)


def test_schedule_host_and_budgets(m):
    assert m.timezone == "Asia/Tokyo"
    assert [(r.cron, r.phases) for r in m.schedule] == [
        ("0 2 * * 1", (1,)),
        ("0 2 * * 3", (2,)),
        ("0 2 * * 5", (3,)),
        ("0 2 1 * *", (1, 2, 3, 4, 5)),
    ]
    assert (m.host.buildkit, m.host.min_free_disk_gb, m.host.min_memory_gb) == (True, 100, 16)
    assert all(t.budget_gb and t.budget_gb > 0 for t in m.targets.values())


def test_every_cuda_names_its_bases_and_torch_wheels(m):
    for cuda in m.cudas.values():
        assert cuda.version.split(".")[0] == cuda.torch_cuda.split(".")[0]
        assert {"devel", "runtime"} <= set(cuda.bases)
        assert cuda.torch_index and cuda.torch_index.endswith(cuda.tag)


def test_the_example_matrix_loads_two_cells():
    ex = load_matrix(ROOT / "examples" / "matrix.yaml")
    assert [c.id for c in ex.cells] == ["cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"]
    assert ex.warnings == ()
    assert ex.fragments_dir == (ROOT / "dockerfiles").resolve()


# --- the error corpus -------------------------------------------------------------------


def test_the_corpus_base_is_valid():
    good = load_matrix(DATA / "good.yaml")
    assert [c.id for c in good.cells] == ["cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"]
    assert good.warnings == ()


def test_the_corpus_covers_what_issue_2_lists():
    names = {p.stem for p in BAD}
    assert {
        "unknown-key",
        "unknown-key-nested",
        "missing-key",
        "wrong-type-number",
        "wrong-type-list",
        "unquoted-python",
        "bad-feature-name",
        "extends-unknown-target",
        "target-cycle",
        "phase-excluded-cell",
        "phase-unknown-cell",
        "duplicate-cell-in-phase",
        "duplicate-key",
        "duplicate-tags",
        "bad-image-name",
        "bad-tag-template",
        "bad-base-reference",
        "unknown-fragment",
        "bad-cron",
        "bad-yaml",
    } <= names
    for path in BAD:
        assert expected(path, "error"), f"{path.name} has no '# error:' header line"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_broken_file_reports_file_line_key_path_and_what_is_allowed(path):
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    err = info.value
    assert [str(p) for p in err.problems] == expected(path, "error")
    assert err.exit_code == 2
    n = len(err.problems)
    assert str(err).splitlines()[0] == f"{path}: {n} problem{'s' if n != 1 else ''} in the matrix file"
    assert all(p.line for p in err.problems), "every problem names its line"


@pytest.mark.parametrize("path", WARN, ids=[p.stem for p in WARN])
def test_suspicious_but_valid_file_warns(path):
    m = load_matrix(path)
    assert list(m.warnings) == expected(path, "warning")


def test_a_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(MatrixError, match=r"no such file \(pass --matrix FILE"):
        load_matrix(tmp_path / "nope.yaml")


def test_an_empty_file_asks_for_a_mapping(tmp_path):
    (tmp_path / "m.yaml").write_text("# nothing here\n")
    with pytest.raises(MatrixError, match="expected a mapping of keys"):
        load_matrix(tmp_path / "m.yaml")


def test_all_problems_are_reported_at_once(tmp_path):
    text = (DATA / "good.yaml").read_text()
    text = text.replace("image: example/corpus", "image: Bad/Name").replace('"0 2 * * 1"', '"0 2 * *"')
    text = text.replace("fragments_dir: fragments", f"fragments_dir: {DATA / 'fragments'}")
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(MatrixError) as info:
        load_matrix(tmp_path / "m.yaml")
    assert [p.path for p in info.value.problems] == [("image",), ("schedule", "runs", 0, "cron")]


# --- the pieces the validation is built on ---------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "ubuntu",
        "ubuntu:24.04",
        "nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04",
        "ghcr.io/org/a/b:v1_2",
        "localhost:5000/x:y",
        "debian@sha256:" + "a" * 64,
        "a.b-c__d:T.1-x",
    ],
)
def test_docker_accepts_these_references(ref):
    assert valid_reference(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "Ubuntu",
        "ubuntu:",
        "ubuntu:-x",
        "a b",
        "-a/b",
        "a//b",
        "a:" + "t" * 129,
        "debian@sha256:xyz",
        "",
    ],
)
def test_docker_rejects_these_references(ref):
    assert not valid_reference(ref)


@pytest.mark.parametrize("expr", ["0 2 * * 1", "*/15 0-5 1,15 * 1-5", "0 2 1 * *", "59 23 31 12 6", "0 2 29 2 *"])
def test_valid_cron(expr):
    assert cron_problem(expr) is None


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("0 2 * *", "has 4 fields"),
        ("60 2 * * 1", "minute 60 is out of range 0-59"),
        ("0 2 0 * *", "day of month 0 is out of range 1-31"),
        ("0 2 * 13 *", "month 13 is out of range 1-12"),
        ("0 2 * * mon", "only digits, *, ',', '-' and '/'"),
        ("*/0 2 * * *", "step /0"),
        ("0 2\n* * 1", "single spaces"),  # a newline would break the workflow's header comment
        ("0 5-1 * * *", "hour range 5-1 runs backwards"),
        ("* * * * *", "at most every 5 minutes"),
        ("0 2 30 2 *", "never due"),
        ("*/5 * * * *", "at most 24"),
    ],
)
def test_invalid_cron_says_which_field(expr, why):
    assert why in (cron_problem(expr) or "")


def test_json_schema_accepts_both_real_matrices_and_rejects_an_unknown_key():
    schema = matrix_json_schema()
    assert schema["title"] == "imagematrix matrix.yaml"
    validator = jsonschema.Draft202012Validator(schema)
    for path in (ROOT / "matrix.yaml", ROOT / "examples" / "matrix.yaml"):
        data = yaml.safe_load(path.read_text())
        # JSON object keys are strings; YAML gave the phase numbers as ints.
        data["phases"] = {str(k): v for k, v in data.get("phases", {}).items()}
        assert not list(validator.iter_errors(data)), path
    data["lables"] = {}
    assert any(re.search("lables", e.message) for e in validator.iter_errors(data))


def test_matrix_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(MatrixError, UsageError)
    assert MatrixError.exit_code == 2


def test_deleting_any_one_line_of_the_real_matrix_never_crashes_the_loader(tmp_path):
    lines = (
        (ROOT / "matrix.yaml")
        .read_text()
        .replace("fragments_dir: dockerfiles", f"fragments_dir: {ROOT / 'dockerfiles'}")
        .splitlines(keepends=True)
    )
    outcomes = {"ok": 0, "error": 0}
    for i in range(len(lines)):
        path = tmp_path / f"minus-{i + 1}.yaml"
        path.write_text("".join(lines[:i] + lines[i + 1 :]))
        try:
            load_matrix(path)
            outcomes["ok"] += 1
        except MatrixError as exc:
            assert all(p.message for p in exc.problems)
            outcomes["error"] += 1
    assert outcomes["error"] > 10 and outcomes["ok"] > 10  # both paths were exercised


# --- the cpu family ------------------------------------------------------------------------


def test_the_cpu_family_names_cells_and_tags_cpu_and_its_manifest_has_no_cuda():
    from imagematrix.core.contract import labels
    from imagematrix.matrix.render import render_cell

    m = load_matrix(ROOT / "examples" / "cpu.yaml")
    assert [c.id for c in m.cells] == ["cpu-py3.11-devel", "cpu-py3.11-runtime"]
    assert [c.tag for c in m.cells] == ["cpu-py3.11-devel", "cpu-py3.11-runtime"]
    r = render_cell(m, m.cells[0])
    assert r.manifest["cuda"] is None and r.manifest["torch_cuda"] is None and r.manifest["extensions"] == "cpu"
    assert "CPU only" in labels(r.manifest, "debian:bookworm-slim")["org.opencontainers.image.description"]
    assert "a CPU build (the cpu family)" in r.dockerfile


@pytest.mark.parametrize(
    ("family", "torch_cuda", "message"),
    [
        ("cpu", '"13.0"', "the cpu family has torch_cuda: null, and only it"),
        ('"13.0"', "null", "torch_cuda is null, which only the cpu family may be"),
        ("gpu", "null", "'gpu' is not a version"),
    ],
)
def test_only_the_cpu_family_goes_without_torch_cuda(tmp_path, family, torch_cuda, message):
    text = (DATA / "good.yaml").read_text().replace("fragments_dir: fragments", f"fragments_dir: {DATA / 'fragments'}")
    text = text.replace('"13.2":\n    torch_cuda: "13.2"', f"{family}:\n    torch_cuda: {torch_cuda}")
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(MatrixError, match=re.escape(message)):
        load_matrix(tmp_path / "m.yaml")


# --- the platforms axis ----------------------------------------------------------------------


def _platforms(tmp_path, platforms: str, extra: str = "") -> Path:
    text = (DATA / "good.yaml").read_text().replace("fragments_dir: fragments", f"fragments_dir: {DATA / 'fragments'}")
    text = text.replace('python: ["3.13"]', f'python: ["3.13"]\nplatforms: {platforms}\n{extra}', 1)
    (tmp_path / "m.yaml").write_text(text)
    return tmp_path / "m.yaml"


def test_several_platforms_give_each_cell_an_arch_suffix_and_per_platform_bases(tmp_path):
    from imagematrix.core.contract import labels
    from imagematrix.matrix.render import render_cell

    extra = (
        "overrides:\n  - platform: linux/arm64\n    reason: one platform per tag in a local engine\n"
        '    bases: {devel: "local/debian-arm64:trixie-slim"}\n'
    )
    m = load_matrix(_platforms(tmp_path, "[linux/amd64, linux/arm64]", extra))
    assert [c.id for c in m.cells] == [
        "cu13.2-py3.13-devel-amd64",
        "cu13.2-py3.13-devel-arm64",
        "cu13.2-py3.13-runtime-amd64",
        "cu13.2-py3.13-runtime-arm64",
    ]
    arm = m.cell("cu13.2-py3.13-devel-arm64")
    assert arm.tag == "cu13.2-py3.13-devel-arm64" and arm.platform == "linux/arm64" and arm.phases == (1,)
    assert arm.base("devel") == "local/debian-arm64:trixie-slim"
    assert m.cell("cu13.2-py3.13-devel-amd64").base("devel") == "debian:trixie-slim"
    r = render_cell(m, arm)
    assert r.manifest["platform"] == "linux/arm64" and "FROM local/debian-arm64:trixie-slim AS devel" in r.dockerfile
    assert labels(r.manifest, "x")["imagematrix.platform"] == "linux/arm64"


def test_one_platform_keeps_ids_and_tags_and_a_platform_override_must_name_one(tmp_path):
    m = load_matrix(_platforms(tmp_path, "[linux/arm64]"))
    assert [c.id for c in m.cells] == ["cu13.2-py3.13-devel", "cu13.2-py3.13-runtime"]
    assert {c.platform for c in m.cells} == {"linux/arm64"}
    with pytest.raises(MatrixError, match="unknown platform linux/riscv64"):
        load_matrix(
            _platforms(
                tmp_path, "[linux/arm64]", 'overrides:\n  - platform: linux/riscv64\n    bases: {devel: "x:y"}\n'
            )
        )
    with pytest.raises(MatrixError, match="is not a platform like"):
        load_matrix(_platforms(tmp_path, "[arm64]"))


def test_a_target_says_whether_it_holds_torch_and_its_children_inherit_it(repo_root):
    from imagematrix.matrix.render import manifest

    m = load_matrix(repo_root / "examples" / "notebooks.yaml")
    by_target = {c.target.name: c for c in m.cells}
    torch = {name: manifest(m, c, "")["torch"] for name, c in by_target.items()}
    # base says false; lab (extends) and lab-slim (slim of lab) inherit it; torch says true again.
    assert torch == {"base": None, "lab": None, "lab-slim": None, "torch": "2.13.0"}
    assert manifest(m, by_target["lab-slim"], "")["policy"] == {"keep_tests": True}
    assert "policy" not in manifest(m, by_target["lab"], "")

"""Arbitrary text in every string field of a matrix, and of a record: it is refused at load (a
MatrixError, exit 2), or every output keeps its structure. "Structure" is what a sink's consumer acts
on: the Dockerfile's instructions, the workflow's keys and `run:` scripts (env values aside), the
sheet's headings, tables, links and HTML as GitHub renders them. Never a traceback."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rendered import render

from imagematrix.core.errors import MatrixError, UsageError
from imagematrix.core.records import BuildRecord, CellRecord, HistoryEvent, SuiteRun
from imagematrix.matrix import workflow
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.plan import Selection, make_plan
from imagematrix.matrix.render import render_cell
from imagematrix.reports import sheet

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = [
    "x\nRUN touch /pwned",
    "$(touch pwned)",
    "`id`",
    "a;b",
    "'\"",
    "\r\n| x |",
    "${{ github.token }}",
    "<img src=http://x/y.png>",
    "[a](http://evil)",
    "![i](http://x/i.png)",
    "www.evil.com",
    "a@b.com",
    "\x1b[2J",
    "\x00",
    "\\",
    "# h",
    "- item",
    "---",
    "{{ 7*7 }}",
    "{% raw %}",
    "é☕",
    " ",
    "",
]
TEXT = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=30),
    st.builds(lambda a, b: a + b, st.sampled_from(PAYLOADS), st.text(max_size=10)),
)

# Every string field of examples/matrix.yaml (and a few the example leaves to defaults), as a key path.
FIELDS = [
    ("image",),
    ("tag",),
    ("labels", "org.opencontainers.image.source"),
    ("python", 0),
    ("cuda", "13.2", "torch_cuda"),
    ("cuda", "13.2", "torch_index"),
    ("cuda", "13.2", "arch_list"),
    ("cuda", "13.2", "bases", "devel"),
    ("packages", "torch"),
    ("targets", "devel", "description"),
    ("targets", "runtime", "options", "drop_packages"),
    ("targets", "runtime", "options", "env_dir"),
    ("phases", 1, "name"),
    ("schedule", "timezone"),
    ("schedule", "runs", 0, "cron"),
    ("ci", "state_dir"),
    ("ci", "gate_runs_on"),
    ("ci", "runs_on", 0),
    ("ci", "install"),
    ("ci", "workflow"),
    ("exclude", 0, "reason"),
    ("labels", "@key"),
    ("packages", "@key"),
]


def _base() -> dict:
    data = yaml.safe_load((ROOT / "examples" / "matrix.yaml").read_text())
    data["build"]["fragments_dir"] = str(ROOT / "dockerfiles")
    data["schedule"] = {"timezone": "Europe/Berlin", "runs": [{"cron": "0 2 * * 1", "phases": [1]}]}
    data["ci"] = {"state_dir": "/var/lib/im", "runs_on": ["gpu"], "gate_runs_on": "ubuntu-latest", "install": "."}
    data["exclude"] = [{"python": "3.99", "reason": "never"}]
    data["python"] = ["3.13", "3.99"]  # the excluded family: a second Python whose cells are all excluded
    data["targets"]["runtime"]["options"]["drop_packages"] = "placeholder"  # its RUN line is in the baseline
    return data


def _set(data: dict, path: tuple, value: str) -> None:
    d = data
    for key in path[:-1]:
        d = d[key]
    if path[-1] == "@key":  # the key itself: the first entry renamed
        first = next(iter(d))
        d[value] = d.pop(first)
    else:
        d[path[-1]] = value


def _instructions(dockerfile: str) -> list[str]:
    out, continued = [], False
    for line in dockerfile.split("\n"):
        if not continued and line.strip() and not line.lstrip().startswith("#"):
            out.append(line.split()[0])
        continued = line.endswith("\\")
    return out


def _shape(node, under: str = ""):
    """The workflow's keys and run: scripts, with every value set through env left out."""
    if isinstance(node, dict):
        return {
            k: (None if k in ("env", "options", "schedule", "name", "with") else _shape(v, k)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_shape(v, under) for v in node]
    return node if under in ("run", "uses", "shell", "if", "needs") else type(node).__name__


def _outputs(path: Path):
    m = load_matrix(path)
    dockerfiles = {c.id: _instructions(render_cell(m, c).dockerfile) for c in m.cells}
    wf = yaml.safe_load(workflow.render_workflow(m))
    return dockerfiles, _shape(wf)


BASELINE: dict = {}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=TEXT)
def test_a_hostile_matrix_value_is_refused_or_changes_no_structure(tmp_path_factory, field, value):
    if not BASELINE:
        base = tmp_path_factory.mktemp("base") / "matrix.yaml"
        base.write_text(yaml.safe_dump(_base(), sort_keys=False))
        BASELINE["out"] = _outputs(base)
    data = copy.deepcopy(_base())
    _set(data, field, value)
    path = tmp_path_factory.mktemp("m") / "matrix.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    try:
        dockerfiles, shape = _outputs(path)
    except MatrixError:
        return  # refused at load, with file, line and key: exit 2
    except UsageError as exc:  # only a fragment that needs a value the matrix no longer has (a renamed pin)
        assert re.match(r"\S+\.Dockerfile:\d+: ", str(exc)), exc
        return
    except workflow.CIError:
        return  # refused by the workflow writer (a value it will not put in a workflow)
    base_dockerfiles, base_shape = BASELINE["out"]
    assert list(dockerfiles.values()) == list(base_dockerfiles.values())
    assert shape == base_shape


SECTION_TEXT = st.text(max_size=60) | st.sampled_from(PAYLOADS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step=SECTION_TEXT, error=SECTION_TEXT, note=SECTION_TEXT, runner=SECTION_TEXT, gpu=SECTION_TEXT, cell=SECTION_TEXT
)
def test_a_hostile_record_keeps_the_sheets_structure(tmp_path_factory, step, error, note, runner, gpu, cell):
    m = load_matrix(ROOT / "examples" / "matrix.yaml")
    plan = make_plan(m, Selection(), tmp_path_factory.mktemp("b"))
    devel = plan.steps[0].cell.id
    failed = BuildRecord(state="failed", step=step, error=error, log=note, ended="2026-12-01T00:00:00Z")
    tested = SuiteRun(state="failed", note=note, gpu=gpu, suite=note, log=error)
    cells = {devel: CellRecord(build=failed, test=tested)}
    events = [
        HistoryEvent("build", cell or "c", "2026-12-01T00:00:00Z", runner, build=failed),
        HistoryEvent("test", devel, "2026-12-01T00:01:00Z", runner, test=tested),
    ]
    page = render(sheet.render_report(plan, cells, events, [note, error], None, None))
    assert len(page.tables) == 2 and len(page.headings) == 11
    assert [len(r) for r in page.tables[0]] == [10, 10, 10] and [len(r) for r in page.tables[1]] == [6, 6, 6]
    assert page.links == [] and page.tags <= {
        "h1",
        "h2",
        "h3",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "ul",
        "li",
        "input",
    }
    assert not re.search(r"<(img|a|script|iframe)\b", page.html)

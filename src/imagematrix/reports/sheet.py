"""`invoke report`: the progress sheet, written from the record instead of by hand.

``build/reports/BUILD_MATRIX.md`` from the matrix, ``status.json`` (each cell's
last build and test) and the history (every build and test run, merged from as
many runners as given). The same inputs give the same bytes: nothing here reads
the clock. The engine is asked one thing only, and only when it answers: which
image each base tag names now (drift since the last build).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagematrix.core import history
from imagematrix.core.status import read_status
from imagematrix.matrix.model import Cell, Matrix
from imagematrix.matrix.plan import Plan
from imagematrix.reports.sizeplot import PLOT_PATH
from imagematrix.reports.sizes import fmt_bytes, judge_budget

REPORT_PATH = Path("reports") / "BUILD_MATRIX.md"  # under the build directory
TROUBLE_ROWS = 20
DONE, WAITING, FAILED, WARN = "✅", "⏳", "❌", "⚠️"


@dataclass(frozen=True)
class Row:
    cell: Cell
    mark: str
    note: str
    build: Mapping[str, Any]
    test: Mapping[str, Any]


def judge(cell: Cell, input_hash: str, record: Mapping[str, Any]) -> tuple[str, str]:
    """The sheet's mark for one cell and why."""
    b, t = record.get("build") or {}, record.get("test") or {}
    state = b.get("state")
    if not b or state == "building":
        return WAITING, "building" if state == "building" else "not built"
    if state == "failed":
        return FAILED, f"build failed at {b.get('step') or '?'}"
    if state == "blocked":
        return FAILED, f"not built: {b.get('blocked_by')} failed"
    if b.get("input_hash") != input_hash:
        return WARN, "matrix.yaml or a fragment changed since this build: rebuild"
    if not t or t.get("image_id") != b.get("image_id"):
        return WAITING, "not tested" if not t else "not tested since the last build"
    if t.get("state") != "passed":
        return FAILED, f"{t.get('suite', 'smoke')} suite {t.get('state')}"
    if not (t.get("gpu_info") or {}).get("devices") and t.get("gpu") in (None, "", "none"):
        return WARN, "tested without a GPU"
    if judge_budget(b.get("size_bytes"), cell.target.budget_gb).state == "over":
        return WARN, f"over its {cell.target.budget_gb:g} GB budget"
    return DONE, ""


def rows(plan: Plan, records: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    out = []
    for step in plan.steps:
        rec = records.get(step.cell.id, {})
        mark, note = judge(step.cell, step.rendered.input_hash, rec)
        out.append(Row(step.cell, mark, note, rec.get("build") or {}, rec.get("test") or {}))
    return out


def _when(stamp: str | None) -> str:
    return (stamp or "")[:16].replace("T", " ") or "-"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _cold(ev: Mapping[str, Any]) -> bool:
    """A build that reused no cached step."""
    return not ev.get("steps_cached")


def _build_time(b: Mapping[str, Any]) -> str:
    if b.get("state") == "skipped":
        return "unchanged (skipped)"
    if b.get("duration_s") is None:
        return ""
    return f"{_minutes(b['duration_s'])} {'cold' if _cold(b) else 'cached'}"


def _gpu(test: Mapping[str, Any]) -> str:
    info = test.get("gpu_info") or {}
    devices = info.get("devices") or []
    if not devices:  # older records name only how the GPU was handed over
        return "-" if not test else "no GPU" if test.get("gpu") in (None, "", "none") else str(test["gpu"])
    names = sorted({f"{d.get('name')} (sm_{str(d.get('compute_capability', '')).replace('.', '')})" for d in devices})
    return f"{len(devices)} x {', '.join(names)} · driver {info.get('driver') or '?'}"


def expected_times(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, tuple[float, int]]]:
    """Cell -> {"cold"|"cached": (median minutes, builds)} over its successful builds in the history."""
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for ev in events:
        if ev["kind"] == "build" and ev.get("state") == "built" and ev.get("duration_s") is not None:
            found[ev["cell"]]["cold" if _cold(ev) else "cached"].append(float(ev["duration_s"]))
    return {cid: {k: (statistics.median(v) / 60, len(v)) for k, v in kinds.items()} for cid, kinds in found.items()}


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(cell(c) for c in r) + " |" for r in body)]


def summary_section(rs: list[Row]) -> list[str]:
    body = []
    for r in rs:
        b, t = r.build, r.test
        budget = f" (≤ {r.cell.target.budget_gb:g} GB)" if r.cell.target.budget_gb is not None else ""
        took = _build_time(b) or "-"
        tested = "-" if not t else (f"{t.get('suite')} {t.get('state')} {t.get('passed', 0)}/{t.get('failed', 0)}/"
                                    f"{t.get('skipped', 0)} · {_when(t.get('finished'))}")
        built = b.get("image_created") if b.get("state") == "skipped" else b.get("ended")  # when the image was made
        body.append([r.cell.cuda.version, r.cell.python, r.cell.target.name, r.mark, _when(built),
                     f"{fmt_bytes(b.get('size_bytes'))}{budget}", took, tested, _gpu(t), r.note])
    counts = {m: sum(r.mark == m for r in rs) for m in (DONE, WAITING, FAILED, WARN)}
    return [
        "## Summary", "",
        " · ".join(f"{m} {n}" for m, n in counts.items()) + f" of {len(rs)} cells", "",
        *_table(["CUDA", "Python", "target", "state", "last build (UTC)", "size (budget)", "build time",
                 "test: passed/failed/skipped", "GPU", "note"], body),
        "",
        f"{DONE} built and its suite passed on this very image, on a GPU · {WAITING} not built, or not tested "
        f"since it was built · {FAILED} build or suite failed · {WARN} passed, but: tested without a GPU, "
        "over budget, or the matrix changed since the build",
        "",
    ]


def phases_section(m: Matrix, rs: list[Row], expected: Mapping[str, Mapping[str, tuple[float, int]]]) -> list[str]:
    by_id = {r.cell.id: r for r in rs}
    out = ["## Phases", ""]
    for number, phase in sorted(m.phases.items()):
        mine = [by_id[c] for c in phase.cells if c in by_id]
        if not mine:
            continue
        done = sum(r.mark == DONE for r in mine)
        out += [f"### Phase {number}{' — ' + phase.name if phase.name else ''} ({done}/{len(mine)} done)", ""]
        for r in mine:
            took = _build_time(r.build)
            took = f"; {took}" if took else ""
            exp = expected.get(r.cell.id, {})
            hist = ", ".join(f"{k} {v[0]:.1f} min (median of {v[1]})" for k, v in sorted(exp.items()))
            out.append(f"- [{'x' if r.mark == DONE else ' '}] {r.cell.id} {r.mark}{took}"
                       f"{'; expected ' + hist if hist else ''}{' — ' + r.note if r.note else ''}")
        out.append("")
    return out


def compatibility_section(events: list[Mapping[str, Any]]) -> list[str]:
    """Image x driver x GPU -> result, from the test runs that saw a GPU (the latest per combination)."""
    latest: dict[tuple, Mapping[str, Any]] = {}
    for ev in events:
        info = ev.get("gpu_info") or {}
        if ev["kind"] != "test" or not info.get("devices"):
            continue
        for d in info["devices"]:
            key = (ev["cell"], str(ev.get("image_id", ""))[:19], d.get("name"), d.get("compute_capability"), info.get("driver"))
            latest[key] = {**ev, "device": d}
    out = ["## Compatibility (from test runs on GPUs)", ""]
    if not latest:
        return [*out, "No test run has seen a GPU yet (`nox -s gpu_smoke-X.Y -- --require-gpu` on a GPU runner).", ""]
    body = [[cell, image.removeprefix("sha256:")[:12], name or "?", cc or "?", drv or "?",
             (ev.get("gpu_info") or {}).get("driver_cuda") or "?", ev.get("suite", ""),
             f"{ev.get('state')} ({ev.get('passed', 0)}/{ev.get('failed', 0)}/{ev.get('skipped', 0)})",
             _when(ev.get("at")), ev.get("runner", "")]
            for (cell, image, name, cc, drv), ev in sorted(latest.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
    return [*out, *_table(["cell", "image", "GPU", "compute capability", "driver", "driver CUDA", "suite", "result",
                           "when (UTC)", "runner"], body), ""]


def trouble_section(events: list[Mapping[str, Any]]) -> list[str]:
    bad = [ev for ev in events if ev.get("state") in ("failed", "error", "timeout", "blocked")][-TROUBLE_ROWS:]
    out = ["## Trouble log", ""]
    if not bad:
        return [*out, "No failed build or test run in the history.", ""]
    body = []
    for ev in reversed(bad):
        if ev["kind"] == "build":
            where, first = ev.get("step") or "-", (ev.get("error") or "").strip().splitlines()[:1]
        else:
            fails = ev.get("failures") or []
            where = fails[0].get("test", "-") if fails and isinstance(fails[0], dict) else "-"
            first = [(fails[0].get("message") or "").strip().splitlines()[0]] if fails and isinstance(fails[0], dict) and fails[0].get("message") else [ev.get("note") or ""]
        body.append([_when(ev.get("at")), ev["cell"], ev["kind"], where[:120], (first[0] if first else "")[:200],
                     ev.get("log") or "-"])
    return [*out, *_table(["when (UTC)", "cell", "what", "step / test", "first error line", "log"], body), ""]


def published_section(records: Mapping[str, Mapping[str, Any]], rs: list[Row]) -> list[str]:
    out = ["## Published", ""]
    body = [[r.cell.id, f"{p.get('repository')}@{p.get('digest')}", ", ".join(p.get("tags") or []), _when(p.get("published"))]
            for r in rs if (p := records.get(r.cell.id, {}).get("publish"))]
    if not body:
        return [*out, "Nothing published yet (`invoke publish` promotes what passed on a GPU).", ""]
    return [*out, *_table(["cell", "pushed", "tags", "when (UTC)"], body), ""]


def bases_section(rs: list[Row], now: Mapping[str, str | None] | None) -> list[str]:
    recorded: dict[str, set[str]] = defaultdict(set)
    for r in rs:
        for ref, image_id in (r.build.get("bases") or {}).items():
            recorded[ref].add(str(image_id))
    out = ["## Base images", ""]
    if not recorded:
        return [*out, "No build has recorded its base images yet.", ""]
    body = []
    for ref in sorted(recorded):
        ids = sorted(recorded[ref])
        current = None if now is None else now.get(ref)
        if now is None:
            drift = "not checked (no engine)"
        elif current is None:
            drift = "not on this host"
        elif any(i != current for i in ids):
            drift = f"{WARN} the tag now names another image: rebuild to pick it up"
        else:
            drift = "none"
        body.append([ref, ", ".join(i.removeprefix("sha256:")[:12] for i in ids),
                     "-" if current is None else current.removeprefix("sha256:")[:12], drift])
    return [*out, *_table(["base", "built from", "now", "drift"], body), ""]


def _stamp(kind: str, rec: Mapping[str, Any]) -> str:
    return str(rec.get("ended") if kind == "build" else rec.get("finished") or rec.get("at") or "")


def latest_records(records: Mapping[str, Mapping[str, Any]], events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each cell's newest build and test: this runner's status.json, or a newer event from any
    merged history (several runners may each build part of a phase)."""
    out = {cid: dict(rec) for cid, rec in records.items()}
    for ev in events:  # oldest first: later events win
        mine = out.setdefault(ev["cell"], {})
        if ev.get("state") is None or _stamp(ev["kind"], ev) < _stamp(ev["kind"], mine.get(ev["kind"]) or {}):
            continue
        mine[ev["kind"]] = dict(ev)
    return out


def render_report(plan: Plan, records: Mapping[str, Mapping[str, Any]], events: list[Mapping[str, Any]],
                  notes: list[str], bases_now: Mapping[str, str | None] | None, plot: Path | None) -> str:
    m = plan.matrix
    rs = rows(plan, latest_records(records, events))
    runners = sorted({str(e.get("runner")) for e in events})
    latest = max((str(e.get("at") or "") for e in events), default="")
    lines = [
        f"# Build matrix: {m.image}", "",
        f"Written by `invoke report` from `{m.path}`, `status.json` and {len(events)} history event(s)"
        f"{' from ' + ', '.join(runners) if runners else ''}{'; latest ' + _when(latest) + ' UTC' if latest else ''}.",
        "",
        *summary_section(rs),
        *phases_section(m, rs, expected_times(events)),
        *compatibility_section(events),
        *trouble_section(events),
        *published_section(records, rs),
        *bases_section(rs, bases_now),
        "## Sizes", "",
        f"![image sizes by part]({plot.as_posix()})" if plot else "No size plot yet: `invoke sizes` draws one.",
        "",
    ]
    if notes:
        lines += ["## Notes on the history", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def write_report(plan: Plan, merge: Iterable[Path] = (), check_bases: bool = True) -> Path:
    """Write ``REPORT_PATH`` under the plan's build directory; returns its path."""
    build_dir = plan.build_dir
    events, notes = history.read([history.history_path(build_dir), *merge])
    bases_now = _bases_now(plan) if check_bases else None
    out = build_dir / REPORT_PATH
    plot = build_dir / PLOT_PATH
    rel_plot = Path(PLOT_PATH.name) if plot.is_file() and plot.parent == out.parent else None
    text = render_report(plan, read_status(build_dir), events, notes, bases_now, rel_plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _bases_now(plan: Plan) -> dict[str, str | None] | None:
    from imagematrix.build.engine import base_image_ids, docker_client
    from imagematrix.build.preflight import base_images
    from imagematrix.core.errors import ImagematrixError

    try:
        client = docker_client(timeout=10)
    except ImagematrixError:
        return None
    return base_image_ids(client, base_images(plan))

"""`invoke report`: the progress sheet, written from the record instead of by hand.

``build/reports/BUILD_MATRIX.md`` from the matrix, ``status.json`` (each cell's last build and test)
and the history (every build and test run, merged from as many runners as given). The same inputs give
the same bytes: nothing here reads the clock. The engine is asked one thing only, and only when it
answers: which image each base tag names now (drift since the last build).

Every value that comes from a record, the history or the matrix goes through ``markdown.md`` (one
line of inert text, capped); the sheet's own words are written as they are. Sections that list
history are capped (``TROUBLE_ROWS``, ``COMPAT_ROWS``): a long history never makes a long sheet.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from imagematrix.core import history
from imagematrix.core.errors import DiskWriteError
from imagematrix.core.options import program
from imagematrix.core.records import BuildRecord, CellRecord, HistoryEvent, SuiteRun
from imagematrix.core.status import Records, read_status
from imagematrix.core.text import fmt_bytes
from imagematrix.core.verdict import Mark
from imagematrix.matrix.model import Cell, Matrix
from imagematrix.matrix.plan import Plan
from imagematrix.reports.markdown import link, md, table
from imagematrix.reports.sizeplot import PLOT_PATH
from imagematrix.reports.sizes import judge_budget

REPORT_PATH = Path("reports") / "BUILD_MATRIX.md"  # under the build directory
TROUBLE_ROWS = 20
COMPAT_ROWS = 100
NOTE_ROWS = 20
DONE, WAITING, FAILED, WARN = "✅", "⏳", "❌", "⚠️"


@dataclass(frozen=True)
class Row:
    cell: Cell
    mark: str
    note: str
    build: BuildRecord | None
    test: SuiteRun | None


def judge(cell: Cell, input_hash: str, record: CellRecord) -> tuple[str, str]:
    """The sheet's mark for one cell and why."""
    b, t = record.build, record.test
    if b is None or b.state == "building":
        return WAITING, "building" if b is not None else "not built"
    if b.state == "failed":
        return FAILED, f"build failed at {b.step or '?'}"
    if b.state == "blocked":
        return FAILED, f"not built: {b.blocked_by} failed"
    if b.input_hash != input_hash:
        return WARN, "matrix.yaml or a fragment changed since this build: rebuild"
    if t is None or t.image_id != b.image_id:
        return WAITING, "not tested" if t is None else "not tested since the last build"
    if t.state != "passed":
        return FAILED, f"{t.suite or 'smoke'} suite {t.state}"
    if not t.on_gpu:
        return WARN, "tested without a GPU (--require-gpu)"
    if judge_budget(b.size_bytes, cell.target.budget_gb).state == "over":
        return WARN, f"over its {cell.target.budget_gb:g} GB budget"
    return DONE, ""


def rows(plan: Plan, records: Mapping[str, CellRecord]) -> list[Row]:
    out = []
    for step in plan.steps:
        rec = records.get(step.cell.id) or CellRecord()
        mark, note = judge(step.cell, step.rendered.input_hash, rec)
        out.append(Row(step.cell, mark, note, rec.build, rec.test))
    return out


def _when(stamp: str | None) -> str:
    return (stamp or "")[:16].replace("T", " ") or "-"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _cold(b: BuildRecord) -> bool:
    """A build that reused no cached step."""
    return not b.steps_cached


def _build_time(b: BuildRecord | None) -> str:
    if b is None:
        return ""
    if b.state == "skipped":
        return "unchanged (skipped)"
    if b.duration_s is None:
        return ""
    return f"{_minutes(b.duration_s)} {'cold' if _cold(b) else 'cached'}"


def _gpu(test: SuiteRun | None) -> str:
    if test is None:
        return "-"
    devices = test.gpu_info.devices if test.gpu_info else ()
    if not devices:  # older records name only how the GPU was handed over
        return "no GPU" if test.gpu in (None, "", "none") else str(test.gpu)
    names = sorted({f"{d.name} (sm_{str(d.compute_capability or '').replace('.', '')})" for d in devices})
    return f"{len(devices)} x {', '.join(names)} · driver {test.gpu_info.driver or '?'}"  # type: ignore[union-attr]


def expected_times(events: Iterable[HistoryEvent]) -> dict[str, dict[str, tuple[float, int]]]:
    """Cell -> {"cold"|"cached": (median minutes, builds)} over its successful builds in the history."""
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for ev in events:
        b = ev.build
        if b is not None and b.state == "built" and b.duration_s is not None:
            found[ev.cell]["cold" if _cold(b) else "cached"].append(b.duration_s)
    return {cid: {k: (statistics.median(v) / 60, len(v)) for k, v in kinds.items()} for cid, kinds in found.items()}


def summary_section(rs: list[Row]) -> list[str]:
    body = []
    for r in rs:
        b, t = r.build, r.test
        budget = f" (≤ {r.cell.target.budget_gb:g} GB)" if r.cell.target.budget_gb is not None else ""
        tested = "-" if t is None else f"{t.suite} {t.state} {t.counts} · {_when(t.finished)}"
        body.append(
            [md(x) for x in (r.cell.cuda.version, r.cell.python, r.cell.target.name)]
            + [
                r.mark,
                md(_when(b.made if b else None)),
                md(f"{fmt_bytes(b.size_bytes if b else None)}{budget}"),
                md(_build_time(b) or "-"),
                md(tested),
                md(_gpu(t)),
                md(r.note),
            ]
        )
    counts = {m: sum(r.mark == m for r in rs) for m in (DONE, WAITING, FAILED, WARN)}
    return [
        "## Summary",
        "",
        " · ".join(f"{m} {n}" for m, n in counts.items()) + f" of {len(rs)} cells",
        "",
        *table(
            [
                "CUDA",
                "Python",
                "target",
                "state",
                "last build (UTC)",
                "size (budget)",
                "build time",
                "test: passed/failed/skipped",
                "GPU",
                "note",
            ],
            body,
        ),
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
        out += [f"### Phase {number}{' — ' + md(phase.name) if phase.name else ''} ({done}/{len(mine)} done)", ""]
        for r in mine:
            took = _build_time(r.build)
            took = f"; {took}" if took else ""
            exp = expected.get(r.cell.id, {})
            hist = ", ".join(f"{k} {v[0]:.1f} min (median of {v[1]})" for k, v in sorted(exp.items()))
            out.append(
                f"- [{'x' if r.mark == DONE else ' '}] {md(r.cell.id)} {r.mark}{md(took)}"
                f"{md('; expected ' + hist) if hist else ''}{' — ' + md(r.note) if r.note else ''}"
            )
        out.append("")
    return out


def compatibility_section(events: list[HistoryEvent]) -> list[str]:
    """Image x driver x GPU -> result, from the test runs that saw a GPU (the latest per combination)."""
    latest: dict[tuple, tuple[HistoryEvent, str, str]] = {}
    for ev in events:
        t = ev.test
        if t is None or t.gpu_info is None:
            continue
        for d in t.gpu_info.devices:
            key = (ev.cell, (t.image_id or "")[:19], d.name, d.compute_capability, t.gpu_info.driver)
            latest[key] = (ev, d.name or "?", d.compute_capability or "?")
    out = ["## Compatibility (from test runs on GPUs)", ""]
    if not latest:
        return [*out, "No test run has seen a GPU yet (`imagematrix test --require-gpu` on a GPU runner).", ""]
    ordered = sorted(latest.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
    body = []
    for (cell, image, _, _, drv), (ev, name, cc) in ordered[:COMPAT_ROWS]:
        t = ev.test
        assert t is not None
        body.append(
            [
                md(cell),
                md(image.removeprefix("sha256:")[:12]),
                md(name),
                md(cc),
                md(drv or "?"),
                md((t.gpu_info.driver_cuda if t.gpu_info else None) or "?"),
                md(t.suite or ""),
                md(f"{t.state} ({t.counts})"),
                md(_when(ev.at)),
                md(ev.runner),
            ]
        )
    more = (
        [f"… and {len(ordered) - COMPAT_ROWS} older combination(s) not shown", ""] if len(ordered) > COMPAT_ROWS else []
    )
    return [
        *out,
        *table(
            [
                "cell",
                "image",
                "GPU",
                "compute capability",
                "driver",
                "driver CUDA",
                "suite",
                "result",
                "when (UTC)",
                "runner",
            ],
            body,
        ),
        "",
        *more,
    ]


MEASURED_FAILURES = (
    "no kernel image",
    "unsupported toolchain",
    "driver version is insufficient",
    "CUDA driver version is insufficient",
    "forward compatibility",
)


def measured(events: list[HistoryEvent]) -> dict[tuple[str, str, str, str], tuple[HistoryEvent, SuiteRun]]:
    """(cell, image id, compute capability, driver branch) -> the latest run there on a GPU."""
    out: dict[tuple[str, str, str, str], tuple[HistoryEvent, SuiteRun]] = {}
    for ev in events:
        t = ev.test
        if t is None or t.gpu_info is None or not t.image_id:
            continue
        for d in t.gpu_info.devices:
            out[(ev.cell, t.image_id, d.compute_capability or "?", str(t.gpu_info.driver or "?").split(".")[0])] = (
                ev,
                t,
            )
    return out


def disagreements(records: Mapping[str, CellRecord], events: list[HistoryEvent]) -> list[tuple[str, str, str]]:
    """(cell, when, what) for each run whose outcome the image's audit did not predict: predicted ❌ but
    passed, or predicted to run but failed with a CUDA compatibility error."""
    from imagematrix.oracle.gpus import GPUS

    out = []
    for (cell, image_id, cc, branch), (ev, t) in measured(events).items():
        audit = (records.get(cell) or CellRecord()).audit
        if audit is None or audit.image_id != image_id:
            continue
        g = next((g for g in GPUS if f"{g.cc[0]}.{g.cc[1]}" == cc), None)
        verdict = ((audit.prediction.get(g.name) or {}).get(f"R{branch}") if g else None) or {}
        mark = Mark.parse(verdict.get("mark"))
        text = " ".join([t.note or "", *(f.message or "" for f in t.failures)])
        if mark is Mark.FAILS and t.state == "passed":
            out.append((cell, ev.at, f"predicted ❌ on {g.name if g else cc} with R{branch}, measured passed"))
        elif mark in (Mark.RUNS, Mark.WARNS) and t.state != "passed" and any(s in text for s in MEASURED_FAILURES):
            out.append(
                (
                    cell,
                    ev.at,
                    f"predicted {mark} on {g.name if g else cc} with R{branch}, measured {t.state} "
                    "with a CUDA compatibility error",
                )
            )
    return out


def predicted_section(
    records: Mapping[str, CellRecord], rs: list[Row], events: list[HistoryEvent], today: str = ""
) -> list[str]:
    """Per audited image: its coverage line, and where the catalogue's GPUs run it (predicted from its
    bytes), each GPU with the measured result beside it where a run on that compute capability exists; the
    JIT toolchains' verdicts in a table of their own. An image without device code says so in its line."""
    from imagematrix.core import nvidia
    from imagematrix.oracle.gpus import GPUS
    from imagematrix.oracle.predict import coverage_line, jit_reach, reach

    today = today or datetime.now(timezone.utc).date().isoformat()
    out = ["## Predicted compatibility (from each image's audit; not measured)", ""]
    audited = [(r, a) for r in rs if (a := (records.get(r.cell.id) or CellRecord()).audit) is not None]
    if not audited:
        return [*out, "No image audited yet (`invoke build` audits each new image; `imagematrix audit` any image).", ""]
    seen = measured(events)
    lines, body, jit_body = [], [], []
    for r, a in audited:
        lines.append(f"- {md(r.cell.id, start=True)}: {md(coverage_line(a.to_json()), 400)}")
        if not _has_device_code(a):
            continue
        row, jit_row = [md(r.cell.id)], [md(r.cell.id)]
        for g in GPUS:
            cell = md(reach(a.prediction[g.name], today)) if a.prediction.get(g.name) else "?"
            runs = [
                (k, v)
                for k, v in seen.items()
                if k[0] == r.cell.id and k[1] == a.image_id and k[2] == f"{g.cc[0]}.{g.cc[1]}"
            ]
            if runs:
                (_, _, _, branch), (_, t) = runs[-1]
                cell += f" · measured R{md(branch)} {md(t.state)}"
            row.append(cell)
            jit_row.append(md(jit_reach(a.prediction.get(g.name) or {}, today)) or "-")
        body.append(row)
        if any(c != "-" for c in jit_row[1:]):
            jit_body.append(jit_row)
    header = ["cell", *(md(f"{g.name} ({g.cc[0]}.{g.cc[1]})") for g in GPUS)]
    ended = [f"R{b.branch} ({b.end_of_life})" for b in nvidia.BRANCH_DATA if b.ended(today)]
    legend = (
        "✅ runs from that driver branch · ⚠️ runs by PTX JIT or minor-version compatibility · ❌ does not run; "
        "`imagematrix audit --gpu NAME --driver VERSION` says why and what fixes it."
    )
    if ended:
        legend += f" Past their end of life: {', '.join(ended)}."
    tables: list[str] = []
    if body:
        tables += ["", *table(header, body), "", legend]
    if jit_body:
        tables += [
            "",
            "JIT toolchains (code compiled at run time: torch.compile's Triton ptxas, NVRTC, cpp_extension's nvcc):",
            "",
            *table(header, jit_body),
        ]
    return [*out, *lines, *tables, ""]


def _has_device_code(a) -> bool:
    """An audit record with device code a process loads (not only static archives)."""
    counts = a.counts or {}
    return (a.objects or 0) - int(counts.get("kind_archive") or 0) > 0


def trouble_section(events: list[HistoryEvent], records: Mapping[str, CellRecord] | None = None) -> list[str]:
    bad = [ev for ev in events if ev.state in ("failed", "error", "timeout", "blocked")][-TROUBLE_ROWS:]
    wrong = disagreements(records or {}, events)[-TROUBLE_ROWS:]
    out = ["## Trouble log", ""]
    if not bad and not wrong:
        return [*out, "No failed build or test run in the history.", ""]
    body = [[md(_when(at)), md(cell), "prediction", "-", md(what), "-"] for cell, at, what in wrong]
    for ev in reversed(bad):
        if ev.build is not None:
            where, first, log = ev.build.step or "-", (ev.build.error or "").strip().splitlines()[:1], ev.build.log
        else:
            t = ev.test
            assert t is not None
            fail = t.failures[0] if t.failures else None
            where = fail.test if fail else "-"
            first = fail.message.strip().splitlines()[:1] if fail and fail.message else [t.note or ""]
            log = t.log
        body.append(
            [md(_when(ev.at)), md(ev.cell), md(ev.kind), md(where, 120), md(first[0] if first else ""), md(log or "-")]
        )
    return [*out, *table(["when (UTC)", "cell", "what", "step / test", "first error line", "log"], body), ""]


def published_section(records: Mapping[str, CellRecord], rs: list[Row]) -> list[str]:
    out = ["## Published", ""]
    body = [
        [
            md(r.cell.id),
            md(f"{p.repository}@{p.digest}"),
            md(", ".join(p.tags)),
            md(_when(p.published)),
            link(f"{p.sbom_packages} packages", f"../sbom/{r.cell.id}.cdx.json") if p.sbom else "-",
            md(f"{len(p.attestations)} signed") if p.attestations else "unsigned",
        ]
        for r in rs
        if (p := (records.get(r.cell.id) or CellRecord()).publish)
    ]
    if not body:
        return [*out, "Nothing published yet (`invoke publish` promotes what passed on a GPU).", ""]
    return [*out, *table(["cell", "pushed", "tags", "when (UTC)", "SBOM", "attestations"], body), ""]


def bases_section(rs: list[Row], now: Mapping[str, str | None] | None) -> list[str]:
    recorded: dict[str, set[str]] = defaultdict(set)
    for r in rs:
        for ref, image_id in (r.build.bases if r.build else {}).items():
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
        body.append(
            [
                md(ref),
                md(", ".join(i.removeprefix("sha256:")[:12] for i in ids)),
                md("-" if current is None else current.removeprefix("sha256:")[:12]),
                drift,
            ]
        )
    return [*out, *table(["base", "built from", "now", "drift"], body), ""]


def latest_records(records: Mapping[str, CellRecord], events: Iterable[HistoryEvent]) -> dict[str, CellRecord]:
    """Each cell's newest build and test: this runner's status.json, or a newer event from any
    merged history (several runners may each build part of a phase)."""
    out = dict(records)
    for ev in events:  # oldest first: later events win
        mine = out.get(ev.cell) or CellRecord()
        if ev.build is not None:
            if mine.build is None or (ev.build.ended or ev.at) >= (mine.build.ended or ""):
                out[ev.cell] = replace(mine, build=ev.build)
        elif ev.test is not None and (mine.test is None or (ev.test.finished or ev.at) >= (mine.test.finished or "")):
            out[ev.cell] = replace(mine, test=ev.test)
    return out


def render_report(
    plan: Plan,
    records: Records | Mapping[str, CellRecord],
    events: list[HistoryEvent],
    notes: list[str],
    bases_now: Mapping[str, str | None] | None,
    plot: Path | None,
) -> str:
    m = plan.matrix
    cells = records.cells if isinstance(records, Records) else dict(records)
    notes = [*notes, *(records.notes if isinstance(records, Records) else ())]
    rs = rows(plan, latest_records(cells, events))
    runners = sorted({e.runner for e in events})
    latest = max((e.at for e in events), default="")
    shown_runners = ", ".join(runners[:10]) + (f" and {len(runners) - 10} more" if len(runners) > 10 else "")
    lines = [
        f"# Build matrix: {md(m.image)}",
        "",
        f"Written by `{program()} report` from {md(m.path.name)}, status.json and {len(events)} history event(s)"
        f"{' from ' + md(shown_runners, 600) if runners else ''}"
        f"{'; latest ' + md(_when(latest)) + ' UTC' if latest else ''}.",
        "",
        *summary_section(rs),
        *phases_section(m, rs, expected_times(events)),
        *compatibility_section(events),
        *predicted_section(cells, rs, events),
        *trouble_section(events, cells),
        *published_section(cells, rs),
        *bases_section(rs, bases_now),
        "## Sizes",
        "",
        f"![image sizes by part]({plot.as_posix()})" if plot else "No size plot yet: `invoke sizes` draws one.",
        "",
    ]
    if notes:
        lines += [
            "## Notes on the record and the history",
            "",
            *(f"- {md(n, 400, start=True)}" for n in notes[:NOTE_ROWS]),
        ]
        lines += [f"- … and {len(notes) - NOTE_ROWS} more"] if len(notes) > NOTE_ROWS else []
        lines.append("")
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
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DiskWriteError.of(out, exc, len(text.encode())) from None
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

"""What each CLI task does. ``tasks.py`` (the collection behind `imagematrix` and `invoke`) only parses
options and calls these."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from rich.table import Table

from imagematrix import terminal as output
from imagematrix.build.buildkit import BuildOptions
from imagematrix.core import status
from imagematrix.core.builddir import build_lock
from imagematrix.core.errors import UsageError
from imagematrix.core.text import printable
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.model import Matrix
from imagematrix.matrix.plan import Plan, Selection, excluded_lines, make_plan, select_cells
from imagematrix.matrix.render import render_cell, write_context
from imagematrix.matrix.schema import matrix_json_schema
from imagematrix.reports import sizes, status_view
from imagematrix.terminal import styled

console = output.console


def load(matrix: str | Path) -> Matrix:
    m = load_matrix(matrix)
    err = console(stderr=True)
    for w in m.warnings:
        err.print(output.styled(("warning:", "yellow"), f" {w}"), soft_wrap=True)
    return m


def show_matrix(matrix: str | Path, sel: Selection) -> int:
    m = load(matrix)
    cells = select_cells(m, sel)
    table = Table(title=f"{m.image} — {len(cells)} of {len(m.cells)} cells ({sel.describe()})", title_justify="left")
    for col in ("cell", "CUDA", "Python", "target", "parent", "phase", "tag"):
        table.add_column(col, no_wrap=True)
    for c in cells:
        t = c.target
        parent = f"{t.parent} ({t.relation})" if t.parent else "-"
        table.add_row(c.id, c.cuda.version, c.python, t.name, parent, ",".join(map(str, c.phases)) or "-", c.tag)
    out = console()
    out.print(table)
    for line in excluded_lines(m, sel):
        out.print(line, markup=False, soft_wrap=True)
    return 0


def render(matrix: str | Path, sel: Selection, out_dir: Path) -> int:
    m = load(matrix)
    out = console()
    cells = select_cells(m, sel)
    with build_lock(out_dir, "invoke render"):  # never rewrite a context a running build is reading
        for c in cells:
            ctx = write_context(render_cell(m, c), out_dir)
            out.print(f"{c.id}: {ctx / 'Dockerfile'}  {ctx / 'cell.json'}")
    return 0


def plan(matrix: str | Path, sel: Selection, build_dir: Path) -> Plan:
    return make_plan(load(matrix), sel, build_dir)


def _build_options(p: Plan, ca_cert: str | None, **kw: Any) -> BuildOptions:
    return BuildOptions(ca_cert=Path(ca_cert) if ca_cert else p.matrix.ca_cert, **kw)


def build(p: Plan, v: dict[str, Any]) -> int:
    """`invoke build`: the plan run (or shown, with --dry-run), then candidates pushed if asked."""
    from imagematrix.build.executor import run_build

    options = _build_options(
        p,
        v["ca_cert"],
        no_cache=v["no_cache"],
        pull=v["pull"],
        cache_from=v["cache_from"],
        cache_to=v["cache_to"],
        builder=v["builder"] or "",
    )
    if v["dry_run"]:
        return print_dry_run(p, options, force=v["force"])
    run_build(p, options, force=v["force"], skip_preflight=v["skip_preflight"], console=console(), jobs=v["jobs"])
    if not v["no_audit"]:
        audit_built(p)
    if v["push_candidates"]:
        from imagematrix.build.candidates import push_candidates
        from imagematrix.build.engine import docker_client

        return push_candidates(p, docker_client(), console(), v["push_candidates"])
    return 0


def audit_built(p: Plan) -> None:
    """After a build: audit each selected cell whose image the record has no audit of yet (an image that
    did not change keeps its audit). A failed audit is a warning; the build stands."""
    from docker.errors import ImageNotFound

    from imagematrix.build.engine import docker_client
    from imagematrix.core import status
    from imagematrix.core.errors import ImagematrixError
    from imagematrix.oracle.audit import audit_image, save
    from imagematrix.oracle.predict import coverage_line

    client, out = docker_client(), console()
    records = status.read_status(p.build_dir)
    for step in p.steps:
        try:
            image = client.images.get(step.cell.ref)
        except ImageNotFound:
            continue  # failed or blocked: the build's own lines said so
        audited = records.get(step.cell.id).audit
        if audited is not None and audited.image_id == image.id:
            continue
        try:
            result = audit_image(client, image.id, p.build_dir)
            save(result, p.build_dir)
            summary = result.summary()
            status.update_cell(p.build_dir, step.cell.id, "audit", summary, replace=True)
        except ImagematrixError as exc:
            out.print(
                f"audit {step.cell.id}: not audited ({printable(exc, 600)}); `imagematrix audit` retries",
                markup=False,
                highlight=False,
            )
            continue
        out.print(
            f"audit {step.cell.id}: {printable(coverage_line(summary), 600)} ({result.seconds:.1f}s)",
            markup=False,
            highlight=False,
        )


def bake(p: Plan, ca_cert: str | None) -> int:
    from imagematrix.build.bake import write_bake
    from imagematrix.build.engine import docker_client

    path = write_bake(p, _build_options(p, ca_cert), docker_client())
    console().print(
        f"wrote {path}: {len(p.steps)} target(s); build them with `docker buildx bake -f {path}`",
        markup=False,
        highlight=False,
    )
    return 0


def doctor(p: Plan, ca_cert: str | None, need_gpu: bool) -> int:
    from imagematrix.cli.doctor import run_doctor

    return run_doctor(p, _build_options(p, ca_cert), need_gpu=need_gpu, console=console())


def clean(out: Path, matrix: str, sel: Selection | None, history: bool) -> int:
    """`invoke clean`; with a selection, the selected cells' images too."""
    from imagematrix.build.clean import clean as run_clean

    cells = select_cells(load(matrix), sel) if sel is not None else None
    return run_clean(out, cells, console=console(), history=history)


def test(v: dict[str, Any]) -> int:
    """`invoke test`: the runner with the same options `python -m imagematrix.testing` parses; no argv round trip."""
    from imagematrix.core.errors import ImagematrixError
    from imagematrix.testing.run import run
    from imagematrix.testing.suite import EXIT_MEANING, Options

    code = run(Options.from_values(v))
    if code:
        raise ImagematrixError(EXIT_MEANING.get(code, f"exit {code}"))
    return 0


def lint(matrix: str | Path, sel: Selection, code: bool = True, dockerfiles: bool = True) -> int:
    """ruff on the code, hadolint on the selected cells' rendered Dockerfiles; 1 if anything is found."""
    from imagematrix.cli import (
        lint as linters,  # the linters are dev tools: load them only for this task
    )

    out = console()
    findings: list[linters.Finding] = []
    if code:
        found = linters.ruff(linters.CODE_PATHS)
        out.print(f"ruff: {len(found)} finding(s) in {', '.join(p for p in linters.CODE_PATHS if Path(p).exists())}")
        findings += found
    if dockerfiles:
        m = load(matrix)
        cells = select_cells(m, sel)
        config = linters.config_for(Path(matrix), m.fragments_dir)
        found = linters.lint_cells(m, cells, config)
        out.print(
            f"hadolint: {len(found)} finding(s) in {len(cells)} rendered Dockerfile(s) (config: {config or 'none'})"
        )
        findings += found
        if m.ci is not None and m.ci.workflow.is_file():
            found = linters.actionlint(m.ci.workflow, m.ci.runs_on) + linters.zizmor(m.ci.workflow)
            out.print(f"actionlint, zizmor: {len(found)} finding(s) in {m.ci.workflow}")
            findings += found
    for f in findings:
        out.print(str(f), markup=False, soft_wrap=True)
    return 1 if findings else 0


def print_schema() -> int:
    """The JSON Schema of matrix.yaml on stdout (plain print: no wrapping, no markup)."""
    print(json.dumps(matrix_json_schema(), indent=2))
    return 0


def print_dry_run(p: Plan, options: BuildOptions, force: bool = False) -> int:
    """The plan, and per cell what a real `invoke build` would do: skip it or run this command."""
    from imagematrix.build.executor import (
        preview,  # the executor's own decisions, so the two cannot disagree
    )

    previews, note = preview(p, options, force=force)
    out = console()
    out.print(f"plan: {len(p.steps)} cell(s) for {p.selection.describe()} (parents first; nothing is run)")
    if note:
        out.print(f"note: {note}", markup=False)
    for i, pv in enumerate(previews, 1):
        step = pv.step
        needs = f"  after {', '.join(step.needs)}" if step.needs else ""
        out.print(f"{i:>3}. {step.cell.id}  stages {' -> '.join(step.rendered.stages)}{needs}", markup=False)
        if pv.action == "skip":
            out.print(f"     skip: unchanged, image {pv.image_id} (--force builds it anyway)", markup=False)
            continue
        env = " ".join(f"{k}={v}" for k, v in pv.env.items())
        out.print(f"     {env} {shlex.join(pv.argv)}", soft_wrap=True, markup=False)
    return 0


# --- invoke sizes ------------------------------------------------------------------------


def _print_sizes(reports: list[sizes.CellReport], console) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="image sizes (decimal GB, as `docker images`)", title_justify="left")
    for col in ("cell", "size", "budget", "state", "vs devel", "env", "layer overhead", "biggest directory"):
        table.add_column(col, no_wrap=True)
    style = {"ok": "green", "over": "bold red", "missing": "yellow", "no budget": "dim"}
    for r in reports:
        meas, b = r.meas, r.cell.target.budget_gb
        saved = "-"
        if r.parent and not r.parent.get("missing"):
            saved = (
                f"-{sizes.fmt_bytes(r.parent['saved_bytes'])}"
                if r.parent["saved_bytes"] >= 0
                else f"+{sizes.fmt_bytes(-r.parent['saved_bytes'])}"
            )
        elif r.parent:
            saved = "devel not built"
        top = "-"
        if meas and meas.dirs:
            d, n = meas.dirs[0]
            top = f"{sizes.short_path(d, meas.site_dirs)} {sizes.fmt_bytes(n)}"
        table.add_row(
            r.cell.id,
            sizes.fmt_bytes(meas.size_bytes) if meas else "-",
            f"{b:g} GB" if b is not None else "-",
            Text(r.verdict.state, style=style.get(r.verdict.state, "")),
            saved,
            sizes.fmt_bytes(meas.env_bytes) if meas else "-",
            sizes.fmt_bytes(meas.layer_overhead_bytes) if meas else "-",
            top,
        )
    console.print(table)
    for r in reports:
        meas = r.meas
        if meas is None:
            console.print(
                styled(("missing", "yellow"), f" {r.cell.id}: {r.cell.ref} was never built; build it: {r.rebuild}"),
                soft_wrap=True,
            )
            continue
        console.print(styled("\n", (r.cell.id, "bold"), f" {r.cell.ref}: {r.verdict.summary}"))
        console.print("  buckets: " + " · ".join(f"{k} {sizes.fmt_bytes(v)}" for k, v in meas.buckets.items() if v))
        for i, layer in enumerate(meas.layers):
            console.print(
                f"  {'layers:' if i == 0 else '':8} {sizes.fmt_bytes(layer['bytes']):>8}  {layer['command']}",
                soft_wrap=True,
            )
        for i, (d, n) in enumerate(meas.dirs):
            console.print(
                f"  {'dirs:' if i == 0 else '':8} {sizes.fmt_bytes(n):>8}  {sizes.short_path(d, meas.site_dirs)}"
            )
        p = r.parent
        if p and p.get("missing"):
            console.print(f"  vs devel: {p['cell']} was never built ({p['build']})")
        elif p:
            moved = ", ".join(f"{k} {sizes.fmt_bytes(v)}" for k, v in p["buckets_saved"].items() if abs(v) >= 1e6)
            console.print(
                f"  vs devel: {p['cell']} {sizes.fmt_bytes(p['size_bytes'])} -> {sizes.fmt_bytes(meas.size_bytes)}: "
                f"saves {sizes.fmt_bytes(p['saved_bytes'])} (env {sizes.fmt_bytes(p['env_saved_bytes'])}; by bucket: "
                f"{moved or 'none'})"
            )
        for note in meas.notes:
            console.print(f"  note: {note}")


def sizes_report(matrix: str, sel: Selection, build_dir: Path, top: int = 5, plot: bool = True) -> int:
    """`invoke sizes`: measure, record, print, plot; 1 when an image is over its budget."""
    out = console()
    m = load(matrix)
    cells = select_cells(m, sel)
    reports = sizes.measure_cells(m, cells, Path(build_dir), sizes.Prober(sizes._client(), top), matrix)
    _print_sizes(reports, out)
    if plot:
        from imagematrix.reports.sizeplot import PLOT_PATH, plot_records

        plot_path = Path(build_dir) / PLOT_PATH
        drawn = plot_records(Path(build_dir), [c.id for c in m.cells], plot_path)  # every recorded cell, not just these
        out.print(f"\nplot: {plot_path} ({drawn} cell(s))" if drawn else "\nplot: nothing measured to draw")
    missing = [r for r in reports if r.meas is None]
    over = [r for r in reports if r.verdict.failed]
    out.print(
        f"\n{len(reports) - len(missing)} measured, {len(missing)} missing, {len(over)} over budget "
        f"(recorded in {Path(build_dir) / 'status.json'}, section '{sizes.SECTION}')"
    )
    if over:
        err = console(stderr=True)
        for r in over:
            err.print(styled(("over budget", "bold red"), f" {r.cell.id}: {r.verdict.summary}. Look at:"))
            for tip in r.tips:
                err.print(f"  - {tip}", soft_wrap=True)
        return 1
    return 0


# --- invoke status -----------------------------------------------------------------------


def show_status(build_dir: Path, matrix: str | Path | None, sel: Selection) -> int:
    """Print the table; with a matrix, its selected cells (recorded or not) in plan order."""
    cells = select_cells(load(matrix), sel) if matrix else None
    table, rows, warning = status_view.status_table(build_dir, cells)
    out = console()
    if warning:
        console(stderr=True).print(f"warning: {printable(warning, 1000)}", markup=False, highlight=False)
    if rows == 0:
        out.print(
            f"{status.status_path(build_dir)}: no cell recorded yet (run `invoke build`, or pass --matrix to list "
            "cells)"
        )
        return 0
    out.print(table)
    return 0


def report(matrix: str | Path, sel: Selection, build_dir: Path, merge: list[Path]) -> int:
    from imagematrix.reports.sheet import write_report

    for path in merge:
        if not path.is_file():
            raise UsageError(
                f"--merge {path}: no such file (another runner's history.jsonl, e.g. from its CI artifact)"
            )
    out = write_report(plan(matrix, sel, build_dir), merge)
    console().print(f"wrote {out}", markup=False, highlight=False)
    return 0


def diff_packages(refs: list[str]) -> int:
    """What two builds' images (or SBOM files) differ in, package by package (Python distributions, Debian packages)."""
    from imagematrix.build.engine import docker_client
    from imagematrix.reports import packages

    if len(refs) != 2:
        raise UsageError(f"--diff-packages takes two images, OLD then NEW (got {len(refs)})")
    client = None

    def listing(ref: str) -> dict:
        nonlocal client
        if ref.endswith(".json") and Path(ref).is_file():  # an SBOM that publish wrote (build/sbom/<cell>.cdx.json)
            from imagematrix.core.status import read_json_file
            from imagematrix.evidence.sbom import packages_of

            try:
                doc = read_json_file(Path(ref), 64 << 20, ref)
            except ValueError as exc:
                raise UsageError(f"{ref} is not an SBOM: {exc}") from None
            if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
                raise UsageError(f"{ref} is not a CycloneDX SBOM (no bomFormat: CycloneDX)")
            return packages_of(doc)
        client = client or docker_client()
        return packages.manifest(client, ref)

    lines = packages.diff(listing(refs[0]), listing(refs[1]))
    out = console()
    out.print(f"packages {refs[0]} -> {refs[1]}: {len(lines)} difference(s)", markup=False, highlight=False)
    for line in lines:
        out.print(line, markup=False, highlight=False)
    return 0


def ci_workflow(matrix: str | Path, check: bool) -> int:
    from imagematrix.matrix.workflow import write_or_check

    path, diff = write_or_check(load(matrix), check)
    if diff is None:
        console().print(
            f"{path} is up to date with {matrix}" if check else f"wrote {path}", markup=False, highlight=False
        )
        return 0
    console().print(
        f"{path} does not match {matrix}; run `invoke ci` and commit the result:\n{diff}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 1


# --- imagematrix audit -----------------------------------------------------------------------


def audit(
    matrix: str, sel: Selection, build_dir: Path, images: tuple[str, ...], gpu: str | None, driver: str | None
) -> int:
    """Audit the selected cells' images (recorded), or any image references (printed); with --gpu and
    --driver, the verdict for that GPU and driver; else the catalogue in a line per GPU."""
    from imagematrix.build.engine import docker_client
    from imagematrix.core import status
    from imagematrix.oracle import gpus
    from imagematrix.oracle.audit import audit_image, save

    if bool(gpu) != bool(driver):
        raise UsageError("--gpu and --driver go together (e.g. --gpu H100 --driver 580.159.04)")
    try:
        target = gpus.gpu(gpu) if gpu else None
    except KeyError:
        raise UsageError(
            f"--gpu {gpu!r}: not in the catalogue ({', '.join(g.name for g in gpus.GPUS)}) and not a "
            "compute capability such as 9.0"
        ) from None
    if driver and not re.fullmatch(r"\d{3}(\.\d{1,3}){0,2}", driver):
        raise UsageError(f"--driver {driver!r}: a driver version such as 580.159.04, or a branch such as 580")
    client = docker_client()
    todo: list[tuple[str, str, Any]] = []
    if images:
        todo = [(ref, ref, None) for ref in images]
    else:
        from docker.errors import ImageNotFound

        for cell in select_cells(load(matrix), sel):
            try:
                client.images.get(cell.ref)
            except ImageNotFound:
                console().print(f"{cell.id}: not built ({cell.ref}); nothing to audit", markup=False, highlight=False)
                continue
            todo.append((cell.id, cell.ref, cell))
    out, worst = console(), 0
    for label, ref, cell in todo:
        result = audit_image(client, ref, build_dir)
        save(result, build_dir)
        summary = result.summary()
        if cell is not None:
            status.update_cell(build_dir, cell.id, "audit", summary, replace=True)
        lines, fails = audit_lines(label, result, target, driver)
        worst = max(worst, int(fails))
        for line in lines:
            out.print(line, markup=False, highlight=False)
    return worst


def audit_lines(label: str, result, target=None, driver: str | None = None) -> tuple[list[str], bool]:
    """What `imagematrix audit` prints for one image, and whether the verdict asked for is ❌. Paths and
    reasons come from the image's own files: each goes through ``printable``."""
    from imagematrix.oracle.predict import FAILS, coverage_line, predict, reach

    summary = result.summary()
    counts = summary.get("counts") or {}
    lines = [
        f"{printable(label, 300)}: {printable(coverage_line(summary), 600)} ({result.how}, {result.seconds:.1f}s; "
        f"{counts.get('cached', 0)} of {counts.get('objects', 0)} from the cache)"
    ]
    if target is not None and driver:
        v = predict(result.doc, target, driver)
        lines.append(
            f"  {target.name} ({target.sm}), driver {driver}: {v.mark} {printable('; '.join(v.reasons), 1000)}"
        )
        if v.fix and v.mark != "✅":
            lines.append(f"  fix: {printable(v.fix, 600)}")
        return lines, v.mark == FAILS
    return lines + [f"  {name:<9} {reach(row)}" for name, row in summary["prediction"].items()], False


# --- evidence: keygen, verify ------------------------------------------------------------------


def keygen(directory: Path) -> int:
    from imagematrix.evidence.attest import keygen as make

    private, public = make(directory)
    console().print(
        f"wrote {private} (private, mode 0600: keep it on the runner, e.g. IMAGEMATRIX_SIGNING_KEY_FILE) "
        f"and {public} (public: give it to `imagematrix verify --key` and publish.verify_key)",
        markup=False,
        highlight=False,
    )
    return 0


def verify(v: dict[str, Any]) -> int:
    from imagematrix.evidence import verify as check

    if not v["key"]:
        raise UsageError("--key FILE: the public key the results must be signed with")
    cc = check.gpu_cc(v["gpu"], v["cc"])
    ref = v["image"] or ""
    if ref.endswith((".json", ".jsonl")) and Path(ref).is_file():  # a signed envelope file, e.g. from a GPU runner
        if not v["digest"]:
            raise UsageError(
                f"{ref} is an envelope file: give --digest, the image digest (or local image id) its "
                "statement must be about"
            )
        answer = check.verify_envelopes(
            check.read_envelope(Path(ref)),
            Path(v["key"]),
            v["digest"],
            cc=cc,
            driver=v["driver"],
            suite=v["suite"],
            max_age_days=v["max_age"],
        )
    else:
        if not ref:
            raise UsageError(
                "give the image to verify: imagematrix verify REF --key FILE (or an envelope FILE --digest SHA256)"
            )
        from imagematrix.evidence.registry import attestations_of

        digest, envelopes = attestations_of(ref)
        answer = check.verify_envelopes(
            envelopes, Path(v["key"]), digest, cc=cc, driver=v["driver"], suite=v["suite"], max_age_days=v["max_age"]
        )
    for line in answer.lines:
        console().print(printable(line, 2000), markup=False, highlight=False, soft_wrap=True)
    return 0 if answer.ok else 1

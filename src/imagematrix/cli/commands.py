"""What each CLI task does. ``tasks.py`` (the collection behind `imagematrix` and `invoke`) only parses
options and calls these."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from rich.table import Table

from imagematrix import terminal as output
from imagematrix.build.buildkit import BuildOptions
from imagematrix.cli.args import BuildArgs, VerifyArgs
from imagematrix.core import status
from imagematrix.core.builddir import build_lock
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.reference import check_image
from imagematrix.core.text import printable
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.model import Matrix
from imagematrix.matrix.plan import Plan, Selection, excluded_lines, make_plan, select_cells
from imagematrix.matrix.render import render_cell, write_context
from imagematrix.matrix.schema import matrix_json_schema
from imagematrix.reports import sizes, status_view
from imagematrix.reports.sizes_view import print_sizes
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


def build(p: Plan, v: BuildArgs) -> int:
    """`invoke build`: the plan run (or shown, with --dry-run), then candidates pushed if asked."""
    from imagematrix.build.executor import run_build

    options = _build_options(
        p,
        v.ca_cert,
        no_cache=v.no_cache,
        pull=v.pull,
        cache_from=v.cache_from,
        cache_to=v.cache_to,
        builder=v.builder or "",
    )
    if v.dry_run:
        return print_dry_run(p, options, force=v.force)
    run_build(p, options, force=v.force, skip_preflight=v.skip_preflight, console=console(), jobs=v.jobs)
    if not v.no_audit:
        audit_built(p)
    if v.push_candidates:
        from imagematrix.build.candidates import push_candidates
        from imagematrix.build.engine import docker_client

        return push_candidates(p, docker_client(), console(), v.push_candidates)
    return 0


def audit_built(p: Plan) -> None:
    """After a build: audit each selected cell whose image the record has no audit of yet (an image that
    did not change keeps its audit). A failed audit is a warning; the build stands."""
    from imagematrix.build.engine import docker_client
    from imagematrix.oracle.audit import audit_and_record, unaudited
    from imagematrix.oracle.predict import coverage_line

    client, out = docker_client(), console()
    for cell, image in unaudited(client, p.build_dir, [s.cell for s in p.steps]):
        try:
            with output.status_line(out, f"audit {cell.id}") as progress:
                result = audit_and_record(client, image.id, p.build_dir, cell.id, say=progress)
        except ImagematrixError as exc:
            say(out, f"audit {cell.id}: not audited ({printable(exc, 600)}); `imagematrix audit` retries")
            continue
        say(out, f"audit {cell.id}: {printable(coverage_line(result.summary()), 600)} ({result.seconds:.1f}s)")


def say(out, line: str) -> None:
    """One line of plain text: no markup, no highlighting (values come from files and images), never wrapped
    (a line a script or a test reads stays one line)."""
    out.print(line, markup=False, highlight=False, soft_wrap=True)


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


def sizes_report(matrix: str, sel: Selection, build_dir: Path, top: int = 5, plot: bool = True) -> int:
    """`invoke sizes`: measure, record, print, plot; 1 when an image is over its budget."""
    out = console()
    m = load(matrix)
    cells = select_cells(m, sel)
    reports = sizes.measure_cells(m, cells, Path(build_dir), sizes.Prober(sizes._client(), top), matrix)
    print_sizes(reports, out)
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
    from imagematrix.reports import packages

    if len(refs) != 2:
        raise UsageError(f"--diff-packages takes two images, OLD then NEW (got {len(refs)})")
    listings = packages.listings(refs)
    lines = packages.diff(*listings)
    out = console()
    say(out, f"packages {refs[0]} -> {refs[1]}: {len(lines)} difference(s)")
    for line in lines:
        say(out, line)
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
    --driver, the verdict for that GPU and driver; else the catalogue in a line per GPU. 1 when the
    verdict asked for is ❌."""
    from imagematrix.build.engine import docker_client
    from imagematrix.oracle import gpus
    from imagematrix.oracle.audit import audit_and_record, built
    from imagematrix.reports.audit_view import audit_lines

    target, driver = gpus.asked(gpu, driver)
    todo = [(ref, check_image("--image", ref), None) for ref in images]
    client, out, worst = docker_client(), console(), 0
    if not images:
        cells = select_cells(load(matrix), sel)
        todo = [(c.id, c.ref, c.id) for c in built(client, cells, lambda line: say(out, line))]
    for label, ref, cell in todo:
        with output.status_line(out, f"audit {label}") as progress:
            result = audit_and_record(client, ref, build_dir, cell, say=progress)
        lines, fails = audit_lines(label, result, target, driver)
        worst = max(worst, int(fails))
        for line in lines:
            say(out, line)
    return worst


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


def verify(v: VerifyArgs) -> int:
    from imagematrix.evidence import verify as check

    if v.chain:
        ok, lines = check.verify_chain(
            v.image or "",
            v.key,
            Path(v.out),
            cc=check.gpu_cc(v.gpu, v.cc),
            driver=v.driver,
            suite=v.suite,
            max_age_days=v.max_age,
        )
        for line in lines:
            say(console(), printable(line, 2000))
        return 0 if ok else 1
    answer = check.verify_asked(
        v.image or "",
        v.key,
        digest=v.digest,
        cc=check.gpu_cc(v.gpu, v.cc),
        driver=v.driver,
        suite=v.suite,
        max_age_days=v.max_age,
    )
    for line in answer.lines:
        say(console(), printable(line, 2000))
    return 0 if answer.ok else 1

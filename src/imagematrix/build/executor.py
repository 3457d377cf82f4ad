"""Run a build plan on the real engine, one cell after another, parents first.

For each planned cell: skip it when its image is already here with the same
build hash (what goes into the image: the rendered Dockerfile and context
files, the stage, tag and build labels, and the ids of the base images), else
run BuildKit with its output in ``build/logs/<cell>.log``. A failed cell
blocks its planned dependants and nothing else. Every transition lands in
``build/status.json`` (section "build"), so a rerun resumes exactly where
this one left off, whatever stopped it.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imagematrix import terminal as output
from imagematrix.build.buildkit import (
    BUILDX,
    Builder,
    BuildkitLog,
    BuildOptions,
    Vertex,
    build_argv,
    build_env,
    describe_builder,
    for_builder,
    proxy_build_args,
)
from imagematrix.build.engine import START_DOCKER, base_image_ids, docker_client
from imagematrix.build.preflight import base_images, preflight
from imagematrix.build.progress import Progress, make_progress
from imagematrix.core import history, procs
from imagematrix.core.builddir import (
    LOGS_DIR,
    build_lock,
    utcnow,
)
from imagematrix.core.contract import BUILD_HASH_LABEL, CELL_LABEL
from imagematrix.core.errors import EngineLost, HostFault, ImagematrixError
from imagematrix.core.interrupts import sigterm_as_interrupt
from imagematrix.core.records import BuildRecord
from imagematrix.core.status import StatusError, read_status, update_cell
from imagematrix.core.text import fmt_bytes, human_duration
from imagematrix.matrix.plan import BuildStep, Plan
from imagematrix.matrix.render import file_sha256, write_context

SECTION = "build"
HISTORY_STATES = ("built", "failed", "blocked")  # final states worth a history line (skips are not builds)
HISTORY_FILE, HISTORY_LOCK = history.HISTORY_FILE, history.HISTORY_LOCK
# What the docker SDK raises when the engine's socket is gone or stops answering.
_ENGINE_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
TAIL_LINES = 15


class BuildFailed(ImagematrixError):
    """At least one cell failed (exit 1)."""


class BuildInterrupted(ImagematrixError):
    """Ctrl-C or SIGTERM; the record was written first (exit 130)."""

    exit_code = 130


# --- what makes a cell's image ---------------------------------------------------------


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def cell_bases(step: BuildStep, plan: Plan) -> list[str]:
    """Base images of the stages of ``step``'s lineage."""
    targets = plan.matrix.targets
    return [step.cell.base(targets[n].base) for n in step.cell.target.lineage if targets[n].base]


def build_hash(step: BuildStep, options: BuildOptions, base_ids: dict[str, str | None], bases: list[str]) -> str:
    """Hash of everything that decides the image; options that only affect how (cache, pull, CA) are left out."""
    doc = {
        "dockerfile": _sha(step.rendered.dockerfile),
        "files": {k: _sha(v) for k, v in sorted(step.rendered.files.items())},
        "target": step.rendered.stage,
        "ref": step.cell.ref,
        "labels": {k: v for k, v in sorted(options.labels.items()) if k != BUILD_HASH_LABEL},
        "bases": {ref: base_ids.get(ref) for ref in bases},
    }
    if step.rendered.links:  # only then: matrices without a wheelhouse keep their hashes
        doc["links"] = {k: file_sha256(p) for k, p in sorted(step.rendered.links.items())}
    return "sha256:" + _sha(json.dumps(doc, sort_keys=True))


def local_image(client, ref: str):
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


# --- running one docker build ----------------------------------------------------------


def run_docker_build(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    parsed: BuildkitLog,
    on_output: Callable[[Vertex | None], None],
) -> int:
    """Run one docker build (procs.run_logged): its output to the cell's log and to BuildKit's
    parser; ``on_output`` gets each line's new vertex (None for other lines)."""
    rc, _ = procs.run_logged(argv, env, log_path, on_line=lambda line: on_output(parsed.feed(line)))
    return -1 if rc is None else rc


# --- the executor ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    cell: str
    state: str  # built, skipped, failed, blocked
    duration_s: float | None = None
    size_bytes: int | None = None
    note: str = ""
    record: BuildRecord | None = None  # the cell's "build" section as written


def mark_stale(build_dir: Path) -> list[str]:
    """Cells recorded as building by a process that is gone (we hold the lock): failed, interrupted."""
    stale = [cid for cid, rec in read_status(build_dir).cells.items() if rec.build and rec.build.state == "building"]
    for cid in stale:
        update_cell(
            build_dir,
            cid,
            SECTION,
            {
                "state": "failed",
                "interrupted": True,
                "ended": utcnow(),
                "error": "the build process ended without recording a result (killed, or the host went down)",
            },
        )
    return stale


class Executor:
    def __init__(
        self,
        plan: Plan,
        options: BuildOptions,
        builder: Builder,
        client,
        progress: Progress | None,
        force: bool = False,
    ):
        self.plan, self.options, self.builder, self.client = plan, options, builder, client
        self._progress, self.force = progress, force
        self.build_dir = plan.build_dir
        self.env = {**os.environ, **build_env(builder.kind)}
        self.base_ids = base_image_ids(client, base_images(plan)) if client is not None else {}
        self.outcomes: list[Outcome] = []
        self.cause: dict[str, str] = {}  # cell -> the failed cell that blocks it
        self.fresh: set[str] = set()  # cells built without cache in this run (--no-cache)
        self.running: dict[str, tuple[float, BuildkitLog]] = {}  # parallel builds in progress
        self.stopping = False  # Ctrl-C during parallel builds: the main thread records the running ones

    @property
    def progress(self) -> Progress:
        """The build's progress view; an Executor made to inspect (bake, a dry run) has none and never builds."""
        assert self._progress is not None, "this Executor only inspects; it was given no progress view"
        return self._progress

    def log_path(self, cid: str) -> Path:
        return self.build_dir / LOGS_DIR / f"{cid}.log"

    def record(self, cid: str, rec: BuildRecord, merge: bool = False) -> BuildRecord:
        """Write this cell's "build" section (the whole section; with ``merge``, over what is there) and,
        once it is final, a history event; returns the section as written."""
        written = update_cell(self.build_dir, cid, SECTION, rec.to_json(), replace=not merge)[SECTION]
        out = BuildRecord.from_json(written, f"{cid}.build")
        if out.state in HISTORY_STATES:
            history.append(self.build_dir, SECTION, cid, written)
        return out

    def finish(self, o: Outcome, detail: str | None = None) -> None:
        """The cell's end, on the progress view and among the outcomes."""
        self.progress.finished(o.cell, o.state, o.note if detail is None else detail, o.duration_s)
        self.outcomes.append(o)

    def run(self, jobs: int = 1) -> list[Outcome]:
        """Every planned cell, up to ``jobs`` at once, each only after the planned ancestors it builds on are
        done; a failed cell blocks its dependants, a host fault stops new builds and records the rest as not
        attempted, and Ctrl-C (or SIGTERM) stops what runs and records it: one path for one job or many."""
        for step in self.plan.steps:
            write_context(step.rendered, self.build_dir)
        planned = {s.cell.id for s in self.plan.steps}
        waiting, finished = list(self.plan.steps), set()
        running: dict[cf.Future, BuildStep] = {}
        fault: BaseException | None = None
        pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build")
        try:
            while waiting or running:
                while fault is None and len(running) < max(1, jobs):
                    ready = next((s for s in waiting if all(n in finished or n not in planned for n in s.needs)), None)
                    if ready is None:
                        break
                    waiting.remove(ready)
                    running[pool.submit(self._one, ready)] = ready
                if not running:
                    break
                for fut in cf.wait(running, return_when=cf.FIRST_COMPLETED)[0]:
                    step = running.pop(fut)
                    finished.add(step.cell.id)
                    if isinstance(fut.exception(), KeyboardInterrupt):  # a signal seen inside the build
                        raise KeyboardInterrupt(str(fut.exception()))
                    if fut.exception() is not None and fault is None:
                        fault = fut.exception()
                        if isinstance(fault, HostFault):
                            self._not_attempted(waiting, fault, step.cell.id)
        except KeyboardInterrupt as exc:
            self._stop(pool, running, str(exc) or "SIGINT")
        pool.shutdown(wait=True)
        if fault is not None:
            raise fault
        return self.outcomes

    def _stop(self, pool: cf.ThreadPoolExecutor, running: dict, why: str) -> None:
        """Ctrl-C: every running build stopped and recorded as failed (interrupted); BuildInterrupted."""
        self.stopping = True
        # The step each build was in, read before it is stopped: a stopped build prints more that is not a step.
        steps = {
            cid: f"#{v.number} {v.name}" if (v := parsed.running) else "" for cid, (_, parsed) in self.running.items()
        }
        procs.stop_all()
        cf.wait(running)
        pool.shutdown(wait=True)
        stopped = list(self.running.items())
        for cid, (t0, parsed) in stopped:
            self._interrupted(cid, t0, parsed, why, steps.get(cid, ""))
        if len(stopped) <= 1:
            raise BuildInterrupted(self._interrupt_message(stopped[0][0] if stopped else None, why)) from None
        raise BuildInterrupted(
            f"interrupted ({why}): {', '.join(c for c, _ in stopped)} were stopped and recorded as failed "
            f"(interrupted). The record {self.build_dir}/status.json is intact; rerun `invoke build` to resume "
            "(finished cells are skipped)."
        ) from None

    def _one(self, step: BuildStep) -> None:
        """One cell: blocked, skipped or built (in a worker thread when parallel). A cell interrupted
        mid-build stays in ``self.running`` for the caller to record."""
        cid = step.cell.id
        if cid in self.cause:
            self._blocked(step)
            return
        parsed = BuildkitLog(tail_lines=TAIL_LINES + 10)
        try:
            digest = self.digest(step)
            image = self.unchanged_image(step, digest)
            if image is not None:
                self._skipped(step, image, digest)
                return
            write_context(step.rendered, self.build_dir)
            self.running[cid] = (time.monotonic(), parsed)
            self._build(step, digest, parsed)
        except HostFault as fault:
            self._host_fault(step, fault, (cid, *self.running[cid]) if cid in self.running else None)
            raise
        except _ENGINE_ERRORS as exc:
            lost = self._engine_lost(exc)
            self._host_fault(step, lost, (cid, *self.running[cid]) if cid in self.running else None)
            raise lost from None
        if not self.stopping:
            self.running.pop(cid, None)

    def _not_attempted(self, rest: list[BuildStep], fault: HostFault, cause: str) -> None:
        """After a host fault while building ``cause``: every cell not started yet, recorded as such."""
        try:
            for s in rest:
                why = f"not attempted: {fault.reason} while building {cause}"
                rec = self.record(s.cell.id, self._blocked_record(s, cause, why, host_fault=fault.reason))
                self.finish(Outcome(s.cell.id, "blocked", note=f"not attempted ({fault.reason})", record=rec))
        except StatusError as exc:
            fault.args = (f"{fault}\nThe record could not be updated either: {exc}",)

    def _blocked_record(self, step: BuildStep, cause: str, error: str, **more: Any) -> BuildRecord:
        return BuildRecord(
            "blocked",
            blocked_by=cause,
            ended=utcnow(),
            ref=step.cell.ref,
            input_hash=step.rendered.input_hash,
            error=error,
            **more,
        )

    def _blocked(self, step: BuildStep) -> None:
        cid, cause = step.cell.id, self.cause[step.cell.id]
        why = f"not attempted: {cause} failed (see {self.log_path(cause)})"
        rec = self.record(cid, self._blocked_record(step, cause, why))
        self.finish(Outcome(cid, "blocked", note=f"by {cause}", record=rec), f"{cause} failed")

    def _skipped(self, step: BuildStep, image, digest: str) -> None:
        cid, now = step.cell.id, utcnow()
        previous = read_status(self.build_dir).get(cid).build
        rec = self.record(
            cid,
            BuildRecord(
                "skipped",
                cached=True,
                started=now,
                ended=now,
                duration_s=0.0,
                ref=step.cell.ref,
                image_id=image.id,
                size_bytes=image.attrs.get("Size"),
                image_created=image.attrs.get("Created"),
                input_hash=step.rendered.input_hash,
                build_hash=digest,
                log=previous.log if previous and previous.build_hash == digest else None,
                bases=self.bases(step),  # the build hash covers their ids: an unchanged image was built from these
            ),
        )
        short = image.short_id.removeprefix("sha256:")
        self.finish(
            Outcome(cid, "skipped", None, image.attrs.get("Size"), "unchanged", rec), f"unchanged, image {short}"
        )

    def bases(self, step: BuildStep) -> dict[str, str | None]:
        """Which image each of the cell's base tags names now: `invoke report` shows later drift."""
        return {ref: self.base_ids.get(ref) for ref in dict.fromkeys(cell_bases(step, self.plan))}

    def digest(self, step: BuildStep) -> str:
        return build_hash(step, self.options, self.base_ids, cell_bases(step, self.plan))

    def unchanged_image(self, step: BuildStep, digest: str):
        """The cell's local image when it was built from exactly these inputs, else None."""
        if self.force or self.client is None:
            return None
        image = local_image(self.client, step.cell.ref)
        return image if image is not None and image.labels.get(BUILD_HASH_LABEL) == digest else None

    def command(self, step: BuildStep, digest: str) -> tuple[BuildOptions, list[str]]:
        """The options and the exact docker command that build ``step``."""
        options = replace(self.options, labels={**self.options.labels, BUILD_HASH_LABEL: digest})
        options = self._no_cache_for(step, options)
        return options, build_argv(step, options, self.builder.kind)

    def _build(self, step: BuildStep, digest: str, parsed: BuildkitLog) -> None:
        cid, log = step.cell.id, self.log_path(step.cell.id)
        options, argv = self.command(step, digest)
        building = BuildRecord(
            "building",
            started=utcnow(),
            cached=False,
            ref=step.cell.ref,
            input_hash=step.rendered.input_hash,
            build_hash=digest,
            log=str(log),
            builder=self.builder.describe(),
            command=shlex.join(argv),
            bases=self.bases(step),  # which image each base tag named when this was built: `report` shows drift
        )
        self.record(cid, building)
        previous = local_image(self.client, step.cell.ref)
        self.progress.started(cid, str(log))
        t0 = time.monotonic()
        rc = run_docker_build(
            argv, self.env, log, parsed, lambda v: self.progress.step(cid, v) if v else self.progress.tick(cid)
        )
        took = round(time.monotonic() - t0, 1)
        if self.stopping:
            return  # stopped by Ctrl-C: the scheduler records it as interrupted
        image = local_image(self.client, step.cell.ref) if rc == 0 else None
        if image is not None and image.labels.get(BUILD_HASH_LABEL) == digest:
            return self._built(step, building, image, previous, parsed, took, options)
        if rc and not self.engine_alive():
            raise self._engine_lost()
        self._failed(step, building, rc, parsed, took)

    def _built(self, step: BuildStep, building: BuildRecord, image, previous, parsed, took, options) -> None:
        cid, counts = step.cell.id, parsed.counts()
        rec = self.record(
            cid,
            replace(
                building,
                state="built",
                ended=utcnow(),
                duration_s=took,
                image_id=image.id,
                size_bytes=image.attrs.get("Size"),
                image_created=image.attrs.get("Created"),
                replaced_image_id=self._drop_superseded(previous, image, cid),
                steps_run=counts["steps_run"],
                steps_cached=counts["steps_cached"],
            ),
        )
        if options.no_cache or options.no_cache_filter:
            self.fresh.add(cid)
        note = f"{counts['steps_run']} steps run, {counts['steps_cached']} cached"
        self.finish(Outcome(cid, "built", took, image.attrs.get("Size"), note, rec))

    def _failed(self, step: BuildStep, building: BuildRecord, rc: int, parsed: BuildkitLog, took: float) -> None:
        cid, counts = step.cell.id, parsed.counts()
        failing = parsed.failing_step() or (
            "(no failing step in the output)" if rc else "(build succeeded but no image was loaded)"
        )
        error = parsed.error() or (
            f"docker exited with {rc}"
            if rc
            else f"{step.cell.ref} is not in the image store with build hash {building.build_hash}"
        )
        failed = replace(
            building,
            state="failed",
            ended=utcnow(),
            duration_s=took,
            exit_code=rc,
            step=failing,
            error=error,
            tail=tuple(parsed.failure_tail(TAIL_LINES)),
            error_lines=tuple(parsed.error_lines),
            steps_run=counts["steps_run"],
            steps_cached=counts["steps_cached"],
        )
        rec = self.record(cid, failed)
        for d in self.plan.dependants(cid):
            self.cause.setdefault(d, cid)
        self.finish(Outcome(cid, "failed", took, note=failing, record=rec))

    def _drop_superseded(self, old, new, cid: str) -> str | None:
        """Remove the image this build replaced once nothing names it any more.

        Docker keeps a replaced image as a dangling copy; with 6-30 GB per cell every
        --force/--no-cache run would pile them up. Only an image labelled as this very
        cell goes, and only when untagged and unused (removal without force)."""
        from docker.errors import DockerException

        if old is None or old.id == new.id or old.labels.get(CELL_LABEL) != cid:
            return None
        try:
            old.reload()
            if old.tags:
                return None
            self.client.images.remove(old.id)
        except DockerException:
            return None  # used by a container, or already gone: leave it
        return old.id

    def _no_cache_for(self, step: BuildStep, options: BuildOptions) -> BuildOptions:
        """--no-cache builds each shared stage once: a cell whose ancestors were just rebuilt
        without cache takes their stages from that fresh cache and rebuilds only its own."""
        if not options.no_cache or self.builder.kind != BUILDX:
            return options
        ancestors = step.cell.target.lineage[:-1]
        ids = [self.plan.matrix.stage_cell(step.cell, t).id for t in ancestors]
        if not ids or not all(i in self.fresh for i in ids):
            return options
        own = tuple(s for s in step.rendered.stages if s not in ancestors)
        return replace(options, no_cache=False, no_cache_filter=own)

    def _engine_lost(self, exc: BaseException | None = None) -> EngineLost:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        why = f" ({str(exc).splitlines()[0][:200]})" if exc is not None and str(exc) else ""
        return EngineLost(
            f"cannot reach the Docker engine at {host} any more{why}: it stopped or restarted during the build. "
            f"{START_DOCKER}; then rerun `invoke build` to resume (finished cells are skipped)"
        )

    def engine_alive(self) -> bool:
        try:
            self.client.ping()
        except Exception:  # any failure to answer a ping means the engine is gone
            return False
        return True

    def _host_fault(self, step: BuildStep, fault: HostFault, current) -> None:
        """Record the cell failed: the host's fault (a full disk, a lost engine)."""
        cid = step.cell.id
        took = round(time.monotonic() - current[1], 1) if current and current[0] == cid else None
        parsed = current[2] if current and current[0] == cid else None
        step_text = f"#{v.number} {v.name}" if parsed and (v := parsed.running) else ""
        tail = tuple(parsed.failure_tail(TAIL_LINES)) if parsed else ()
        failed = BuildRecord(
            "failed",
            ended=utcnow(),
            duration_s=took,
            host_fault=fault.reason,
            step=step_text,
            error=str(fault),
            tail=tail,
        )
        try:
            rec = self.record(cid, failed, merge=True)
            self.finish(Outcome(cid, "failed", took, note=fault.reason, record=rec))
        except StatusError as exc:
            fault.args = (f"{fault}\nThe record could not be updated either: {exc}",)

    def _interrupted(self, cid: str, t0: float, parsed: BuildkitLog, why: str, step: str = "") -> None:
        took = round(time.monotonic() - t0, 1)
        rec = self.record(
            cid,
            BuildRecord(
                "failed",
                interrupted=True,
                ended=utcnow(),
                duration_s=took,
                step=step,
                error=f"interrupted ({why}) during the build",
                tail=tuple(parsed.failure_tail(TAIL_LINES)),
            ),
            merge=True,
        )
        self.finish(Outcome(cid, "failed", took, note="interrupted", record=rec), f"interrupted ({why})")

    def _interrupt_message(self, cid: str | None, why: str) -> str:
        where = (
            f"{cid} was stopped and recorded as failed (interrupted); log {self.log_path(cid)}"
            if cid
            else "no build was running"
        )
        return (
            f"interrupted ({why}): {where}. The record {self.build_dir}/status.json is intact; "
            "rerun `invoke build` to resume (finished cells are skipped)."
        )


# --- the task ---------------------------------------------------------------------------


def summary_table(outcomes: list[Outcome]) -> Table:
    counts = {s: sum(o.state == s for o in outcomes) for s in ("built", "skipped", "failed", "blocked")}
    title = ", ".join(f"{n} {s}" for s, n in counts.items())
    table = Table(title=f"build summary: {title}", title_justify="left")
    for col in ("cell", "state", "time", "size", "detail"):
        table.add_column(col, no_wrap=col != "detail")
    for o in outcomes:
        style = {"failed": "red", "blocked": "yellow"}.get(o.state, "")
        table.add_row(
            o.cell, Text(o.state, style=style), human_duration(o.duration_s), fmt_bytes(o.size_bytes), Text(o.note)
        )
    return table


def failure_message(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if o.state == "failed"]
    blocked = [o for o in outcomes if o.state == "blocked"]
    done = sum(o.state in ("built", "skipped") for o in outcomes)
    lines = [f"{len(failed)} cell(s) failed, {len(blocked)} blocked, {done} built or unchanged"]
    for o in failed:
        rec = o.record or BuildRecord("failed")
        lines.append(f"cell {o.cell} failed at step {rec.step or '?'}: {rec.error or '?'}")
        if rec.error_lines:
            lines.append("  first error lines in the step's output:")
            lines += [f"  ! {t}" for t in rec.error_lines]
        lines.append(f"  log: {rec.log} (last lines below)")
        lines += [f"  | {t}" for t in rec.tail]
        deps = [b.cell for b in blocked if b.record is not None and b.record.blocked_by == o.cell]
        if deps:
            lines.append(f"  blocked, not attempted: {', '.join(deps)}")
    lines.append("Fix the cause and rerun the same `invoke build`: only failed, blocked and missing cells are built.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Preview:
    step: BuildStep
    action: str  # "build" or "skip"
    argv: list[str]
    env: dict[str, str]
    image_id: str | None = None


def preview(plan: Plan, options: BuildOptions, *, force: bool = False) -> tuple[list[Preview], str | None]:
    """What `invoke build` would do for each planned cell, without building: the same
    hash, skip decision and command as a real run. Returns (previews, note on what is unknown)."""
    builder = describe_builder(name=options.builder)
    options = for_builder(options, builder)
    options = replace(options, build_args=tuple(dict.fromkeys((*options.build_args, *proxy_build_args(os.environ)))))
    try:
        client, note = docker_client(timeout=10, host=builder.engine), None
    except ImagematrixError as exc:
        client, note = (
            None,
            f"{exc} (so no cell is shown as skipped, and build-hash labels assume the base images are absent)",
        )
    ex = Executor(plan, options, builder, client, progress=None, force=force or options.no_cache)
    out: list[Preview] = []
    for step in plan.steps:
        digest = ex.digest(step)
        image = ex.unchanged_image(step, digest)
        if image is not None:
            out.append(Preview(step, "skip", [], {}, image.id))
            continue
        opts, argv = ex.command(step, digest)
        if opts.no_cache or opts.no_cache_filter:
            ex.fresh.add(step.cell.id)
        out.append(Preview(step, "build", argv, build_env(builder.kind)))
    return out, note


def run_build(
    plan: Plan,
    options: BuildOptions,
    *,
    force: bool = False,
    skip_preflight: bool = False,
    console: Console | None = None,
    jobs: int = 1,
) -> list[Outcome]:
    """Preflight, then build every planned cell; raises BuildFailed (exit 1) if any failed."""
    console = console or output.console()
    with build_lock(plan.build_dir):
        builder = describe_builder(name=options.builder)
        options = for_builder(options, builder)
        client = docker_client(host=builder.engine)  # where the builder's images land: skips look there
        options = replace(
            options, build_args=tuple(dict.fromkeys((*options.build_args, *proxy_build_args(os.environ))))
        )
        preflight(plan, options, builder, client, console, skip=skip_preflight)
        for cid in mark_stale(plan.build_dir):
            console.print(f"{cid}: an earlier build of it was killed; recorded as failed (interrupted)", markup=False)
        force = force or options.no_cache  # --no-cache means "build it again", not "skip it"
        at_once = f", {jobs} at a time" if jobs > 1 else ""
        console.print(
            f"building {len(plan.steps)} cell(s){at_once} with {builder.describe()}; logs in "
            f"{plan.build_dir / LOGS_DIR}",
            markup=False,
        )
        progress = make_progress(console, [s.cell.id for s in plan.steps])
        executor = Executor(plan, options, builder, client, progress, force=force)
        try:
            with sigterm_as_interrupt(), progress:
                outcomes = executor.run(jobs)
        except HostFault:
            console.print(summary_table(executor.outcomes))
            raise
    console.print(summary_table(outcomes))
    if any(o.state == "failed" for o in outcomes):
        raise BuildFailed(failure_message(outcomes))
    return outcomes

"""The GPU suite inside every built image: one container per cell (the docker backend of testrun).

Per cell: one container from the built image, GPUs requested when the engine can hand them
out (the NVIDIA runtime, or CDI), the suite, this package and pytest mounted read-only,
caches from ``build/test-cache/<cell>`` (so a second run is warm), JUnit and the log to
``build/test-results/``, a time limit, and the container removed whatever happens (Ctrl-C and
SIGTERM too). ``--jobs N`` runs N cells at once, each on its own GPU while there are enough.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imagematrix.core.builddir import utcnow
from imagematrix.core.contract import CELL_LABEL, UNPRIVILEGED_UID, UNPRIVILEGED_USER
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.options import build_command
from imagematrix.testing import grid as testgrid
from imagematrix.testing import reuse
from imagematrix.testing.decide import Action, Decision, decide
from imagematrix.testing.grid import ERROR, INCOMPATIBLE, MISSING, PASSED, CellResult
from imagematrix.testing.suite import (
    CACHE_IN,
    PACKAGE_ROOT,
    SUITE_ENV,
    CellPaths,
    Options,
    cache_env,
    ensure_tools,
    judge_files,
    prepare_dirs,
    pytest_args,
    record_result,
    resolve_workers,
    tools_versions,
)

# Where things live inside the test container.
TESTS_IN = "/opt/imagematrix/tests"
TOOLS_IN = "/opt/imagematrix/site"
PACKAGE_IN = "/opt/imagematrix/pkg"  # this package (the suite imports imagematrix.core.contract from it)
RESULTS_IN = "/var/lib/imagematrix/results"
JUNIT_NAME = "junit.xml"

# Root on the host runs the container as this uid (no passwd entry, like most
# `docker run --user N` in CI); anyone else runs it as themselves.
CONTAINER_UID = UNPRIVILEGED_UID
SHM_SIZE = "1g"  # Docker's 64 MB /dev/shm breaks DataLoader workers and Ray

# GPU access: the engine's NVIDIA runtime, else a CDI spec for NVIDIA GPUs.
NVIDIA_RUNTIME = "nvidia"
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
CDI_KIND = "nvidia.com/gpu"
GPU_FIX = (
    "Fix on a GPU host: install nvidia-container-toolkit and run "
    "`nvidia-ctk runtime configure --runtime=docker` (or `nvidia-ctk cdi generate`), then restart dockerd"
)


# Labels of a test container: which run owns it (`docker ps --filter label=imagematrix.testrun`).
TESTRUN_LABEL = "imagematrix.testrun"
BUILD_DIR_LABEL = "imagematrix.testrun.build-dir"
OWNER_PID_LABEL = "imagematrix.testrun.pid"
OWNER_HOST_LABEL = "imagematrix.testrun.host"


@dataclass(frozen=True)
class GpuAccess:
    device_requests: tuple[dict, ...]
    how: str  # the whole story, printed once per run
    label: str  # a word or two for the grid and status.json
    devices: tuple[str, ...] = ()  # GPUs a container can be given alone ("0", "1", ...), when known

    @property
    def requested(self) -> bool:
        return bool(self.device_requests)

    def only(self, device: str) -> GpuAccess:
        """The same access, narrowed to one GPU (parallel cells each get their own)."""
        if self.label == "cdi":
            request: dict[str, Any] = {"driver": "cdi", "device_ids": [f"{CDI_KIND}={device}"]}
        else:
            request = {"driver": "nvidia", "device_ids": [device], "capabilities": [["gpu"]]}
        return replace(
            self,
            device_requests=(request,),
            how=f"GPU {device} ({self.label})",
            label=f"{self.label} gpu {device}",
            devices=(device,),
        )


_CDI_DEVICE = re.compile(r"""name["']?\s*:\s*["']?(\d+)["']?\s*[,}\n]""")


def gpu_access(info: dict, cdi_specs: dict[str, str], gpu_count: int = 0) -> GpuAccess:
    """How to give containers the GPUs, from `docker info`, the CDI spec files' texts and the
    number of GPUs the host reports (nvidia-smi -L; 0 when unknown)."""
    runtimes = sorted(info.get("Runtimes") or {})
    if NVIDIA_RUNTIME in runtimes or info.get("DefaultRuntime") == NVIDIA_RUNTIME:
        return GpuAccess(
            ({"count": -1, "capabilities": [["gpu"]]},),
            "all GPUs (NVIDIA runtime)",
            "nvidia runtime",
            tuple(str(i) for i in range(gpu_count)),
        )
    specs = sorted(p for p, text in cdi_specs.items() if CDI_KIND in text)
    if specs and info.get("CDISpecDirs"):
        # One CDI device per GPU, named by index as nvidia-ctk names them ("nvidia.com/gpu=0").
        names = sorted({n for p in specs for n in _CDI_DEVICE.findall(cdi_specs[p])}, key=int)
        return GpuAccess(
            ({"driver": "cdi", "device_ids": [f"{CDI_KIND}=all"]},), f"all GPUs (CDI: {specs[0]})", "cdi", tuple(names)
        )
    if specs:
        why = (
            f"none: {specs[0]} describes NVIDIA GPUs but this engine has CDI off (docker info shows no "
            "CDISpecDirs; Docker >= 25 with the 'cdi' feature enabled reads it)"
        )
    else:
        why = (
            f"none: the engine has no NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'}) and "
            f"no CDI spec for {CDI_KIND} is in {', '.join(info.get('CDISpecDirs') or CDI_DIRS)}"
        )
    return GpuAccess((), f"{why}. GPU checks skip (fail with --require-gpu). {GPU_FIX}", "none")


def container_user(euid: int, egid: int) -> str:
    return f"{CONTAINER_UID}:{CONTAINER_UID}" if euid == 0 else f"{euid}:{egid}"


def container_spec(
    image_ref: str,
    image_env: list[str],
    opts: Options,
    cell_id: str,
    paths: CellPaths,
    tools: Path,
    gpu: GpuAccess,
    user: str,
    name: str,
) -> dict:
    """Keyword arguments of docker's ``containers.create`` for one cell's run."""
    inherited = dict(e.split("=", 1) for e in image_env if "=" in e)
    pythonpath = ":".join(p for p in (TOOLS_IN, PACKAGE_IN, inherited.get("PYTHONPATH")) if p)
    env = {
        **cache_env(CACHE_IN),
        **SUITE_ENV,
        "PYTHONPATH": pythonpath,
        "IMAGEMATRIX_ARTIFACTS": f"{RESULTS_IN}/artifacts",
        "USER": UNPRIVILEGED_USER,  # getpass.getuser() works for a uid without a passwd entry
    }
    argv = ["python", "-m", "pytest", *pytest_args(opts, TESTS_IN, f"{RESULTS_IN}/{JUNIT_NAME}", cell_id)]
    volumes = {
        str(opts.tests_dir.resolve()): {"bind": TESTS_IN, "mode": "ro"},
        str(tools.resolve()): {"bind": TOOLS_IN, "mode": "ro"},
        str(PACKAGE_ROOT / "imagematrix"): {"bind": f"{PACKAGE_IN}/imagematrix", "mode": "ro"},
        str(paths.cache.resolve()): {"bind": CACHE_IN, "mode": "rw"},
        str(paths.results.resolve()): {"bind": RESULTS_IN, "mode": "rw"},
    }
    return {
        "image": image_ref,
        "command": argv,
        "name": name,
        "user": user,
        "environment": env,
        "volumes": volumes,
        "working_dir": "/tmp",
        "shm_size": SHM_SIZE,
        "device_requests": [dict(r) for r in gpu.device_requests],
        # Which run owns a container: `docker ps --filter label=imagematrix.testrun` finds strays.
        "labels": {
            TESTRUN_LABEL: cell_id,
            BUILD_DIR_LABEL: str(paths.cache.parent.parent.resolve()),
            # The run that owns it: a later run removes containers whose owner is gone (SIGKILL, a lost runner).
            OWNER_PID_LABEL: str(os.getpid()),
            OWNER_HOST_LABEL: socket.gethostname(),
        },
        "detach": True,
    }


def docker_run_line(spec: dict) -> str:
    """The same run as a `docker run` command line, to rerun one cell by hand."""
    argv = ["docker", "run", "--rm", "--user", spec["user"], "--shm-size", spec["shm_size"], "-w", spec["working_dir"]]
    for req in spec["device_requests"]:
        if req.get("driver") == "cdi":
            argv += ["--device", req["device_ids"][0]]
        else:
            argv += ["--gpus", f"device={','.join(req['device_ids'])}" if req.get("device_ids") else "all"]
    for host, m in spec["volumes"].items():
        argv += ["-v", f"{host}:{m['bind']}:{m['mode']}"]
    for k, v in spec["environment"].items():
        argv += ["-e", f"{k}={v}"]
    return shlex.join([*argv, spec["image"], *spec["command"]])


# --- docker backend --------------------------------------------------------------------


def _client():
    try:
        import docker  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the docker backend needs the docker SDK ({exc}): pip install -e '.[dev]', or use --backend host"
        ) from None
    from imagematrix.build.engine import docker_client

    for noisy in ("docker", "urllib3"):  # nox logs at DEBUG; every API call would be printed
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return docker_client(timeout=120)
    except ImagematrixError as exc:
        raise ImagematrixError(f"{exc}; or test this host's interpreter with --backend host") from None


def _gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def detect_gpu(info: dict) -> GpuAccess:
    specs: dict[str, str] = {}
    for d in info.get("CDISpecDirs") or CDI_DIRS:
        for p in sorted(Path(d).glob("*")) if Path(d).is_dir() else ():
            if p.suffix in (".json", ".yaml", ".yml"):
                with contextlib.suppress(OSError):
                    specs[str(p)] = p.read_text(errors="replace")
    return gpu_access(info, specs, _gpu_count())


def _stream_logs(container, log: Path, watch: Callable[[bytes], None] | None) -> threading.Thread:
    def pump():
        # The stream ends (or breaks) when the container goes; either way the log is complete.
        with open(log, "ab") as f, contextlib.suppress(Exception):
            for chunk in container.logs(stream=True, follow=True):
                f.write(chunk)
                f.flush()
                if watch:
                    watch(chunk)

    t = threading.Thread(target=pump, name=f"logs-{container.name}", daemon=True)
    t.start()
    return t


def done_line(r: CellResult) -> str:
    s = r.summary
    return f"{r.cell}: {r.state} ({s.passed} passed, {s.failed} failed, {s.skipped} skipped) in {r.seconds:.0f}s"


@contextlib.contextmanager
def _watching(cell_id: str, shown: bool, verbose: bool):
    """What to do with each chunk of a running suite's output: write it (verbose), count it for the
    progress line (a terminal), or nothing (a log, or cells run side by side)."""
    if not shown:
        yield None
    elif verbose:

        def echo(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

        yield echo
    else:
        from imagematrix.terminal import console, status_line

        tally = testgrid.Tally()
        with status_line(console(), f"test {cell_id}") as progress:

            def count(chunk: bytes) -> None:
                tally.feed(chunk)
                progress(tally.line())

            yield count


@dataclass(frozen=True)
class Outcome:
    """What one container did: its exit code (None: it never ran to an end), whether the limit stopped it."""

    code: int | None
    timed_out: bool
    seconds: float
    note: str = ""


class TrackedContainer:
    """One test container from creation to removal (docker-stacks' ``tracked_container`` is the model):
    created from the spec, started, its log streamed to a file, waited for within the limit, killed
    past it, and removed by name whatever happens (an interrupt between create and start included)."""

    def __init__(self, client, spec: dict):
        self.client, self.spec = client, spec

    def run(self, limit: float, log: Path, watch: Callable[[bytes], None] | None = None) -> Outcome:
        import docker
        import requests

        start, code, timed_out, note = time.monotonic(), None, False, ""
        try:
            container = self.client.containers.create(**self.spec)
            try:
                container.start()
            except docker.errors.APIError as exc:
                note = f"the container did not start: {exc.explanation or exc}"
            else:
                pump = _stream_logs(container, log, watch)
                try:
                    code = container.wait(timeout=limit)["StatusCode"]
                except requests.exceptions.RequestException:  # the time limit (or a lost engine)
                    timed_out = True
                    with contextlib.suppress(docker.errors.APIError):
                        container.kill()
                pump.join(timeout=30)
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(self.spec["name"]).remove(force=True)
        return Outcome(code, timed_out, time.monotonic() - start, note)


def run_in_image(
    client,
    m,
    cell,
    opts: Options,
    gpu: GpuAccess,
    tools: Callable[[], Path],
    shown: bool = True,
    host: HostFacts | None = None,
    evidence: Evidence | None = None,
) -> CellResult:
    """One cell: its image found, one decision (``decide``), then the container if it must run, the
    result signed where a key is configured, and recorded once."""
    evidence = evidence or Evidence()
    base = CellResult(cell.id, "", opts.suite.name, "docker", gpu=gpu.label, require_gpu=opts.require_gpu)
    image, digest, problem = _the_image(client, m, cell, opts)
    if image is None:
        return record_result(replace(base, finished=utcnow(), **problem), opts.build_dir)
    site = tools()
    host = host or HostFacts()
    handed = host.handed(gpu)
    prediction = _prediction(opts.build_dir, image.id, handed, host)
    key = reuse.Key(
        digest or image.id,
        _suite_part(opts, site),
        reuse.host_part(handed, host.driver, host.driver_cuda, _libcuda(opts.build_dir, image.id)),
    )
    lookup = reuse.lookup(opts.build_dir, cell.id, key, opts.reuse_max_age_days) if opts.reuse else None
    unbacked = evidence.unbacked(lookup.found if lookup else None, digest or image.id)
    d = decide(prediction, lookup, unbacked, run_anyway=opts.run_anyway, stale=problem.get("note", ""))
    base = replace(base, image_id=image.id, digest=digest or "", key=key.to_json(), prediction=prediction or {})
    if d.action is Action.REFUSE:
        result = _refused(base, d)
    elif d.action is Action.REUSE:
        result = _reused(base, d)
    else:
        result = _ran(client, image, cell, opts, site, gpu, base, d.notes, shown)
        if opts.require_gpu:
            subject = opts.candidates if digest and opts.candidates else cell.ref
            result = evidence.sign(opts.build_dir, cell.id, result, subject, digest)
    return record_result(result, opts.build_dir)


def _the_image(client, m, cell, opts: Options) -> tuple[Any, str | None, dict]:
    """The cell's image (pulled by digest from the candidates when asked), its registry digest, and what
    to record instead when there is none, or a note when it is stale."""
    import docker

    from imagematrix.matrix.render import is_current, render_cell

    rebuild = build_command(opts.matrix, cell.cuda.version, cell.python, cell.target.name)
    digest = None
    if opts.candidates:  # a GPU runner: test what the build host pushed, and keep its digest in the record
        from imagematrix.build.candidates import RegistryError, pull_candidate

        try:
            _, digest = pull_candidate(client, opts.candidates, cell, render_cell(m, cell).input_hash)
        except RegistryError as exc:
            return None, None, {"state": MISSING, "note": str(exc)}
    try:
        image = client.images.get(cell.ref)
    except docker.errors.ImageNotFound:
        return None, None, {"state": MISSING, "note": f"image {cell.ref} was never built; build it: {rebuild}"}
    found = (image.labels or {}).get(CELL_LABEL)
    if found != cell.id:
        note = f"{cell.ref} is labelled imagematrix.cell={found!r}, not {cell.id}; rebuild: {rebuild}"
        return None, None, {"state": ERROR, "note": note, "image_id": image.id}
    if not is_current(m, cell, image.labels or {}):
        return image, digest, {"note": f"stale: built from other inputs than the matrix renders now ({rebuild})"}
    return image, digest, {}


def _refused(base: CellResult, d: Decision) -> CellResult:
    check = testgrid.Failure("imagematrix::gpu_compatibility", "failure", d.refusal)
    return replace(
        base,
        state=INCOMPATIBLE,
        note="; ".join((d.refusal, *d.notes)),
        decision=d.action.value,
        summary=testgrid.Summary(failed=1, failures=(check,)),
        finished=utcnow(),
    )


def _reused(base: CellResult, d: Decision) -> CellResult:
    assert d.reused is not None
    run, event = d.reused.run, d.reused.event
    return replace(
        base,
        state=PASSED,
        note="; ".join(d.notes),
        decision=d.action.value,
        summary=testgrid.Summary(passed=run.passed or 0, failed=0, skipped=run.skipped or 0),
        require_gpu=bool(run.require_gpu),
        gpu_info=run.gpu_info.to_json() if run.gpu_info else {},
        reused_from={"runner": event.runner, "finished": run.finished or event.at},
        attestation=run.attestation or "",  # the original run's signed result stands for this one too
        finished=utcnow(),
    )


def _ran(client, image, cell, opts: Options, site: Path, gpu: GpuAccess, base: CellResult, notes, shown) -> CellResult:
    """The suite in a container of ``image``: the result as the JUnit file and the log judge it. Shown (one
    cell at a time): pytest's output with --verbose, else one progress line on a terminal."""
    paths = CellPaths.of(opts.build_dir, cell.id)
    euid = os.geteuid()
    prepare_dirs(paths, owner=CONTAINER_UID if euid == 0 else None)
    name = f"imagematrix-test-{cell.id}-{os.getpid()}-{int(time.time())}"
    env = image.attrs.get("Config", {}).get("Env") or []
    spec = container_spec(image.id, env, opts, cell.id, paths, site, gpu, container_user(euid, os.getegid()), name)
    command = docker_run_line(spec)
    paths.log.write_text(f"$ {command}\n")
    print(f"\n==> {cell.id}: {cell.ref} (GPUs: {gpu.label}; limit {opts.limit:.0f}s)", flush=True)
    if opts.verbose:
        print(f"    {command}", flush=True)
    with _watching(cell.id, shown, opts.verbose) as watch:
        out = TrackedContainer(client, spec).run(opts.limit, paths.log, watch)
    junit_in = paths.results / JUNIT_NAME
    if junit_in.is_file():
        junit_in.replace(paths.junit)
        os.chown(paths.junit, euid, os.getegid())  # the container's uid wrote it; the result is ours
    note = "; ".join(n for n in (*notes, out.note) if n)
    judged = judge_files(cell.id, opts, paths, out.code, out.timed_out, out.seconds, note=note)
    if shown:
        print(f"<== {done_line(judged)}; log {judged.log}", flush=True)
    return replace(
        judged, image_id=base.image_id, gpu=base.gpu, digest=base.digest, key=base.key, prediction=base.prediction
    )


@dataclass(frozen=True)
class Evidence:
    """The run's evidence keys, read once before any cell: ``signer`` signs each GPU result (a key
    configured); ``verify_key`` (the signer's public key, else the matrix's publish.verify_key) must
    verify the attestation of any result reused."""

    signer: Any = None
    verify_key: Any = None

    @classmethod
    def load(cls, signing_key: str | None, publish_key: Path | None) -> Evidence:
        from imagematrix.evidence import attest

        signer = attest.signer(signing_key)
        if signer is not None:
            return cls(signer, signer.public_key)
        return cls(None, attest.public_key(publish_key) if publish_key else None)

    def unbacked(self, found: reuse.Reusable | None, digest: str) -> str | None:
        """Why ``found``'s result is not backed by an attestation this run's key verifies (None: it is,
        or no key asks for one)."""
        if self.verify_key is None or found is None:
            return None
        from imagematrix.core.errors import UsageError
        from imagematrix.evidence import verify as check

        run = found.run
        if not run.attestation:
            return "its run carries no signed attestation (a key is configured: results must be signed)"
        try:
            envelopes = check.read_envelope(Path(run.attestation))
        except UsageError as exc:
            return f"its attestation cannot be read ({exc})"
        answer = check.verify_envelopes(envelopes, self.verify_key, digest, suite=run.suite, run_key=run.key)
        return None if answer.ok else "its attestation does not verify: " + "; ".join(answer.lines)

    def sign(self, build_dir: Path, cell: str, result: CellResult, subject: str, digest: str | None) -> CellResult:
        """With a signer: the signed statement of a GPU run of ``subject`` (the cell's reference, or the
        candidates' repository), written beside the record (and attached beside a candidate's digest in its
        registry); the result then names it."""
        if self.signer is None:
            return result
        from imagematrix.evidence import attest
        from imagematrix.evidence.store import write_attestation

        subject_digest = digest or result.image_id
        run = {**result.record(), "image_id": result.image_id, "suite": result.suite}
        tests = testgrid.test_names(result.junit)
        signed = [
            (ptype, attest.sign(st, self.signer))
            for ptype, st in attest.result_statements(subject, subject_digest, cell, run, tests)
        ]
        key = str(result.key.get("value", ""))
        path = write_attestation(build_dir, cell, result.suite, key, [e for _, e in signed])
        where = str(path)
        if digest:  # a candidate tested by digest: the attestation goes beside it, for publish and verify
            from imagematrix.evidence.registry import RegistryError, attach

            try:
                where = attach(subject, digest, signed).where[0]
            except RegistryError as exc:
                print(f"    warning: the signed result stays in {path} only: {exc}", flush=True)
        keyid = self.signer.public_key.keyid[:12]
        print(f"    signed: {where} (key {keyid}, subject {subject}@{subject_digest[:19]})", flush=True)
        return replace(result, attestation=str(path))


@dataclass(frozen=True)
class HostFacts:
    """What one probe per run saw of this host's GPUs and driver (the reuse key's host part)."""

    devices: tuple[dict, ...] = ()  # index, name, compute_capability
    driver: str | None = None
    driver_cuda: str | None = None
    how: str = "none"

    def handed(self, gpu: GpuAccess) -> list[dict]:
        """The devices a container of this access gets: the ones it names, or all."""
        if not gpu.requested:
            return []
        if len(gpu.devices) == 1 and gpu.label.endswith(f"gpu {gpu.devices[0]}"):
            return [d for d in self.devices if str(d.get("index")) == gpu.devices[0]]
        return list(self.devices)


def probe_host(gpu: GpuAccess) -> HostFacts:
    """One probe per run, on the engine's host (the driver and GPUs a container is handed): driver_probe in
    this host's Python when the engine is local; nothing when containers get no GPU."""
    if not gpu.requested:
        return HostFacts()
    done = subprocess.run(
        [sys.executable, "-m", "imagematrix.core.driver_probe"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
    )
    try:
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return HostFacts(how="unreadable")
    from imagematrix.core.cuda_compat import cuda_int, fmt_mm

    raw = seen.get("driver_cuda")
    devices = tuple(d for d in seen.get("devices") or [] if isinstance(d, dict))
    return HostFacts(
        devices, seen.get("driver"), fmt_mm(cuda_int(raw)) if isinstance(raw, int) and raw > 0 else None, "host"
    )


def _suite_part(opts: Options, site: Path) -> dict:
    return reuse.suite_part(
        [opts.tests_dir, PACKAGE_ROOT / "imagematrix"],
        tools_versions(site),
        opts.suite.name,
        opts.suite.markers,
        opts.require_gpu,
        opts.pytest_extra,
    )


def _audit(build_dir: Path, image_id: str) -> dict | None:
    from imagematrix.oracle.audit import load

    return load(build_dir, image_id)


def _prediction(build_dir: Path, image_id: str, handed: list[dict], host: HostFacts | None) -> dict | None:
    """The oracle's verdict for the first GPU this container gets and the host's driver (None: no audit, no GPU)."""
    audit = _audit(build_dir, image_id)
    if audit is None or not handed or host is None or not host.driver:
        return None
    from imagematrix.oracle.gpus import Gpu
    from imagematrix.oracle.predict import predict

    cc = str(handed[0].get("compute_capability") or "")
    major, _, minor = cc.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    from imagematrix.oracle.gpus import GPUS

    known = next((g for g in GPUS if g.cc == (int(major), int(minor))), None)
    gpu = known or Gpu(str(handed[0].get("name") or f"sm_{major}{minor}"), (int(major), int(minor)))
    return predict(audit, gpu, host.driver).to_json()


def _libcuda(build_dir: Path, image_id: str) -> str:
    """Which libcuda a container of the image loads, predicted from its audit: a forward-compatibility copy
    the image carries, else the host's driver (the run's gpu.json confirms it)."""
    audit = _audit(build_dir, image_id) or {}
    compat = [
        e.get("path") for e in (audit.get("libraries") or {}).get("libcuda") or [] if "compat" in str(e.get("path"))
    ]
    return f"compat:{compat[0]}" if compat else "host-driver"


def _owner_gone(labels: dict[str, str], host: str) -> bool:
    """True when the run that started a container was on this host and its process no longer exists."""
    pid = labels.get(OWNER_PID_LABEL, "")
    if labels.get(OWNER_HOST_LABEL) != host or not pid.isdigit():
        return False  # another host's run, or a container from before these labels: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def remove_stale_containers(client, build_dir: Path) -> list[str]:
    """Remove test containers of ``build_dir`` whose run is gone (killed with SIGKILL); their names."""
    import docker

    where = str(Path(build_dir).resolve())
    host = socket.gethostname()
    removed = []
    for c in client.containers.list(all=True, filters={"label": f"{BUILD_DIR_LABEL}={where}"}):
        if _owner_gone(c.labels or {}, host):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
            removed.append(c.name)
    return removed


def run_docker(opts: Options) -> list[CellResult]:
    from imagematrix.matrix.load import load_matrix
    from imagematrix.matrix.plan import Selection, select_cells

    m = load_matrix(opts.matrix)
    evidence = Evidence.load(opts.signing_key, m.publish_verify_key)  # every key read before any work
    cells = select_cells(
        m,
        Selection.from_options(
            phase=opts.phases, cuda=opts.cudas, python=opts.pythons, target=opts.targets, platform=opts.platforms
        ),
    )
    client = _client()
    for name in remove_stale_containers(client, opts.build_dir):
        print(f"removed stale test container {name}: the run that started it is gone (killed?)", flush=True)
    gpu = detect_gpu(client.info())
    print(f"GPUs for the containers: {gpu.how}", flush=True)
    host = probe_host(gpu)
    if host.devices:
        print(
            f"host: driver {host.driver} (CUDA {host.driver_cuda}); "
            + ", ".join(f"GPU {d.get('index')} {d.get('name')} ({d.get('compute_capability')})" for d in host.devices),
            flush=True,
        )

    lock = threading.Lock()

    @functools.cache
    def installed() -> Path:
        site = ensure_tools(opts.build_dir)
        print(f"test tools: {tools_versions(site)} from {site}", flush=True)
        return site

    def tools() -> Path:  # only once an image exists: a matrix of missing images needs no pip
        with lock:  # parallel cells: install once
            return installed()

    jobs = max(1, min(opts.jobs, len(cells)))
    if jobs == 1:
        results: list[CellResult] = []
        try:
            for cell in cells:
                results.append(run_in_image(client, m, cell, opts, gpu, tools, host=host, evidence=evidence))
        except KeyboardInterrupt:
            if results:
                testgrid.print_grid(results, opts.suite.name)
            raise
        return results
    # N containers at once share the CPUs (measured: 56 s -> 46 s for 3 cells on 32 cores)
    opts = replace(opts, workers=resolve_workers(opts.workers, jobs))
    return _run_parallel(client, m, cells, opts, gpu, tools, jobs, host, evidence)


def gpu_slots(gpu: GpuAccess, jobs: int) -> list[GpuAccess]:
    """What each of ``jobs`` concurrent containers gets: its own GPU while there are enough,
    round-robin beyond that; all GPUs for each when the host's GPUs are not known one by one."""
    if len(gpu.devices) < 2:
        return [gpu] * jobs
    return [gpu.only(gpu.devices[k % len(gpu.devices)]) for k in range(jobs)]


def _run_parallel(
    client,
    m,
    cells,
    opts: Options,
    gpu: GpuAccess,
    tools,
    jobs: int,
    host: HostFacts | None = None,
    evidence: Evidence | None = None,
) -> list[CellResult]:
    """Up to ``jobs`` cells' containers at once, each holding a GPU slot; results in plan order."""
    import concurrent.futures as cf
    import queue

    slots: queue.Queue[GpuAccess] = queue.Queue()
    for slot in gpu_slots(gpu, jobs):
        slots.put(slot)
    print(
        f"running {len(cells)} cells, {jobs} at a time ({', '.join(s.how for s in gpu_slots(gpu, jobs))})", flush=True
    )

    def one(cell) -> CellResult:
        slot = slots.get()
        try:
            r = run_in_image(client, m, cell, opts, slot, tools, shown=False, host=host, evidence=evidence)
        finally:
            slots.put(slot)
        print(f"<== {done_line(r)} on {slot.label}; log {r.log}", flush=True)
        return r

    pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell")
    futures = [pool.submit(one, c) for c in cells]
    try:
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        # Stop our containers so their threads return, then let each remove its own.
        for c in client.containers.list(filters={"label": f"{OWNER_PID_LABEL}={os.getpid()}"}):
            with contextlib.suppress(Exception):
                c.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)

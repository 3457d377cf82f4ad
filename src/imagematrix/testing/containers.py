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

from imagematrix.core import status
from imagematrix.core.builddir import utcnow
from imagematrix.core.contract import CELL_LABEL, UNPRIVILEGED_UID, UNPRIVILEGED_USER
from imagematrix.core.errors import ImagematrixError, UsageError
from imagematrix.core.options import build_command
from imagematrix.testing import grid as testgrid
from imagematrix.testing import reuse
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


def _stream_logs(container, log: Path, echo: bool) -> threading.Thread:
    def pump():
        # The stream ends (or breaks) when the container goes; either way the log is complete.
        with open(log, "wb") as f, contextlib.suppress(Exception):
            for chunk in container.logs(stream=True, follow=True):
                f.write(chunk)
                f.flush()
                if echo:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()

    t = threading.Thread(target=pump, name=f"logs-{container.name}", daemon=True)
    t.start()
    return t


def run_in_image(
    client,
    m,
    cell,
    opts: Options,
    gpu: GpuAccess,
    tools: Callable[[], Path],
    echo: bool = True,
    host: HostFacts | None = None,
) -> CellResult:
    import docker
    import requests

    from imagematrix.matrix.render import is_current

    paths = CellPaths.of(opts.build_dir, cell.id)
    rebuild = build_command(opts.matrix, cell.cuda.version, cell.python, cell.target.name)
    fixed: dict[str, Any] = {"suite": opts.suite.name, "backend": "docker", "gpu": gpu.label}

    def done(state: str, note: str, **extra) -> CellResult:
        return record_result(CellResult(cell.id, state, note=note, finished=utcnow(), **fixed, **extra), opts.build_dir)

    digest = None
    if opts.candidates:  # a GPU runner: test what the build host pushed, and keep its digest in the record
        from imagematrix.matrix.render import render_cell
        from imagematrix.build.candidates import RegistryError, pull_candidate

        try:
            _, digest = pull_candidate(client, opts.candidates, cell, render_cell(m, cell).input_hash)
        except RegistryError as exc:
            return done(MISSING, str(exc))
        fixed["digest"] = digest
    try:
        image = client.images.get(cell.ref)
    except docker.errors.ImageNotFound:
        return done(MISSING, f"image {cell.ref} was never built; build it: {rebuild}")
    labels = image.labels or {}
    if labels.get(CELL_LABEL) != cell.id:
        found = labels.get(CELL_LABEL)
        return done(
            ERROR,
            f"{cell.ref} is labelled imagematrix.cell={found!r}, not {cell.id}; rebuild: {rebuild}",
            image_id=image.id,
        )
    notes = []
    if not is_current(m, cell, labels):
        notes.append(f"stale: built from other inputs than the matrix renders now ({rebuild})")
    # One decision per cell before any container: refuse what the oracle predicts to fail on this host,
    # reuse a passed result of the very same image, suite and host, or run.
    site = tools()
    handed = host.handed(gpu) if host else []
    prediction = _prediction(opts.build_dir, image.id, handed, host)
    key = reuse.Key(
        digest or image.id,
        _suite_part(opts, site),
        reuse.host_part(
            handed,
            host.driver if host else None,
            host.driver_cuda if host else None,
            _libcuda(opts.build_dir, image.id),
        ),
    )
    fixed.update(key=key.to_json(), prediction=prediction or {}, image_id=image.id)
    if prediction and prediction["mark"] == "❌" and not opts.run_anyway:
        check = testgrid.Failure(
            "imagematrix::gpu_compatibility",
            "failure",
            f"predicted to fail here: "
            f"{'; '.join(prediction['reasons'])}. Fix: {prediction['fix']} (--run-anyway tests it all the same)",
        )
        return done(
            INCOMPATIBLE,
            f"{check.message}",
            decision="incompatible",
            summary=testgrid.Summary(failed=1, failures=(check,)),
            require_gpu=opts.require_gpu,
        )
    if prediction and prediction["mark"] == "⚠️":
        notes.append(f"predicted ⚠️: {prediction['reasons'][0]}")
    if opts.reuse:
        found = reuse.find(opts.build_dir, cell.id, key, opts.reuse_max_age_days)
        if found is not None:
            run = found.run
            reused = testgrid.Summary(passed=run.passed or 0, failed=0, skipped=run.skipped or 0)
            return done(
                PASSED,
                "; ".join([found.describe(), *notes]),
                decision="reused",
                summary=reused,
                require_gpu=bool(run.require_gpu),
                gpu_info=run.gpu_info.to_json() if run.gpu_info else {},
                reused_from={"runner": found.event.runner, "finished": run.finished or found.event.at},
            )
    euid = os.geteuid()
    prepare_dirs(paths, owner=CONTAINER_UID if euid == 0 else None)
    name = f"imagematrix-test-{cell.id}-{os.getpid()}-{int(time.time())}"
    spec = container_spec(
        image.id,
        image.attrs.get("Config", {}).get("Env") or [],
        opts,
        cell.id,
        paths,
        site,
        gpu,
        container_user(euid, os.getegid()),
        name,
    )
    print(f"\n==> {cell.id}: {cell.ref} (GPUs: {fixed['gpu']}; limit {opts.limit:.0f}s)", flush=True)
    print(f"    {docker_run_line(spec)}", flush=True)
    start = time.monotonic()
    code, timed_out = None, False
    try:
        container = client.containers.create(**spec)
        try:
            container.start()
        except docker.errors.APIError as exc:
            notes.append(f"the container did not start: {exc.explanation or exc}")
        else:
            pump = _stream_logs(container, paths.log, echo)
            try:
                code = container.wait(timeout=opts.limit)["StatusCode"]
            except requests.exceptions.RequestException:  # the time limit (or a lost engine)
                timed_out = True
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
            pump.join(timeout=30)
    finally:
        # By name: this also covers an interrupt that lands between create() and the assignment.
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    junit_in = paths.results / JUNIT_NAME
    if junit_in.is_file():
        junit_in.replace(paths.junit)
        os.chown(paths.junit, euid, os.getegid())  # the container's uid wrote it; the result is ours
    result = judge_files(cell.id, opts, paths, code, timed_out, time.monotonic() - start, note="; ".join(notes))
    result = record_result(
        replace(
            result,
            image_id=image.id,
            gpu=fixed["gpu"],
            digest=digest or "",
            key=key.to_json(),
            prediction=prediction or {},
        ),
        opts.build_dir,
    )
    if opts.require_gpu:
        _attest(opts, cell, f"{opts.candidates}" if digest else cell.ref, digest or image.id, result)
    return result


def _attest(opts: Options, cell, subject: str, digest: str, result: CellResult) -> None:
    """With a signing key: the signed statement of a GPU run, beside the record (and its path in the record)."""
    from imagematrix.evidence import attest
    from imagematrix.evidence.store import write_attestation

    key = attest.signer(opts.signing_key)
    if key is None:
        return
    run = result.record()
    envelope = attest.sign(
        attest.statement(subject, digest, cell.id, {**run, "image_id": result.image_id, "suite": result.suite}), key
    )
    path = write_attestation(opts.build_dir, cell.id, result.suite, envelope)
    where = str(path)
    if subject != cell.ref:  # a candidate tested by digest: the attestation goes beside it, for publish and verify
        from imagematrix.evidence.registry import RegistryError, attach

        try:
            where = attach(subject, digest, [(attest.PREDICATE_TYPE, envelope)])[0]
        except RegistryError as exc:
            print(f"    warning: the signed result stays in {path} only: {exc}", flush=True)
    recorded = status.read_status(opts.build_dir).get(cell.id).suites.get(result.suite)
    if recorded is not None:
        status.update_cell(
            opts.build_dir, cell.id, "suites", {result.suite: {**recorded.to_json(), "attestation": str(path)}}
        )
    print(f"    signed: {where} (key {key.public_key.keyid[:12]}, subject {subject}@{digest[:19]})", flush=True)


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
    from imagematrix.oracle.audit import AUDITS_DIR

    path = Path(build_dir) / AUDITS_DIR / f"{image_id.removeprefix('sha256:')}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
                results.append(run_in_image(client, m, cell, opts, gpu, tools, host=host))
        except KeyboardInterrupt:
            if results:
                testgrid.print_grid(results, opts.suite.name)
            raise
        return results
    # N containers at once share the CPUs (measured: 56 s -> 46 s for 3 cells on 32 cores)
    opts = replace(opts, workers=resolve_workers(opts.workers, jobs))
    return _run_parallel(client, m, cells, opts, gpu, tools, jobs, host)


def gpu_slots(gpu: GpuAccess, jobs: int) -> list[GpuAccess]:
    """What each of ``jobs`` concurrent containers gets: its own GPU while there are enough,
    round-robin beyond that; all GPUs for each when the host's GPUs are not known one by one."""
    if len(gpu.devices) < 2:
        return [gpu] * jobs
    return [gpu.only(gpu.devices[k % len(gpu.devices)]) for k in range(jobs)]


def _run_parallel(
    client, m, cells, opts: Options, gpu: GpuAccess, tools, jobs: int, host: HostFacts | None = None
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
            r = run_in_image(client, m, cell, opts, slot, tools, echo=False, host=host)
        finally:
            slots.put(slot)
        s = r.summary
        print(
            f"<== {cell.id}: {r.state} ({s.passed} passed, {s.failed} failed, {s.skipped} skipped) "
            f"in {r.seconds:.0f}s on {slot.label}; log {r.log}",
            flush=True,
        )
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

"""Run the GPU suite (``tests/gpu``) inside every built image of a selection, or on the host.

The one place a test suite is launched: nox's ``gpu_<suite>-<python>`` sessions,
CI and ``python -m imagematrix.testrun`` all come here.

Docker backend, per cell: one container from the built image, GPUs requested
when the engine can hand them out, the suite mounted read-only, pytest from a
host directory (images do not carry it), caches from ``build/test-cache/<cell>``
(so a second run is warm), JUnit and the log to ``build/test-results/``, a time
limit, and the container removed whatever happens (Ctrl-C and SIGTERM too).

Host backend: the same suite against a host interpreter, described by
``tests/gpu/describe_host.py``.

Only the stdlib is imported up front: docker, pydantic (the matrix) and rich
are imported where they are used, so host mode runs with ``PYTHONPATH=src`` on a
GPU machine that has nothing but torch and pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import status, testgrid
from .builddir import utcnow
from .contract import CELL_LABEL
from .errors import ImagematrixError, UsageError, outcome
from .interrupts import sigterm_as_interrupt
from .procs import run_logged
from .testgrid import ERROR, MISSING, CellResult

MATRIX_ENV = "IMAGEMATRIX_MATRIX"
DEFAULT_MATRIX = "matrix.yaml"
BACKENDS = ("docker", "host")


@dataclass(frozen=True)
class Suite:
    name: str
    markers: str  # pytest -m expression
    timeout: float  # seconds per image unless --timeout says otherwise
    what: str

    def describe(self, python: str) -> str:
        return f"GPU suite, {self.what}, in each built Python {python} image (-- --help: options)"


SUITES = {
    "smoke": Suite("smoke", "smoke", 900, "fast checks"),
    "full": Suite("full", "smoke or full", 3600, "every check"),
}

# Where things live inside the test container.
TESTS_IN = "/opt/imagematrix/tests"
TOOLS_IN = "/opt/imagematrix/site"
PACKAGE_IN = "/opt/imagematrix/pkg"  # this package (the suite imports imagematrix.contract from it)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds imagematrix/
CACHE_IN = "/var/cache/imagematrix"
RESULTS_IN = "/var/lib/imagematrix/results"
JUNIT_NAME = "junit.xml"
# Cache variables -> subdirectory of the cell's cache dir. HOME is kept on the
# host: overriding it there would hide `pip install --user` packages.
CACHE_DIRS = {
    "TORCH_EXTENSIONS_DIR": "torch_extensions",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "XDG_CACHE_HOME": "xdg",
    "HOME": "home",
    # Bytecode of the image's own packages (installed without .pyc): a warm run skips
    # recompiling torch on every fresh-process probe, and nothing lands beside any source.
    "PYTHONPYCACHEPREFIX": "pycache",
}
# A host's own environment normally has its bytecode already; a prefix would ignore it.
HOST_KEEPS = ("HOME", "PYTHONPYCACHEPREFIX")
# Root on the host runs the container as this uid (no passwd entry, like most
# `docker run --user N` in CI); anyone else runs it as themselves.
CONTAINER_UID = 10001
SHM_SIZE = "1g"  # Docker's 64 MB /dev/shm breaks DataLoader workers and Ray
TOOLS = ("pytest", "pytest-xdist")

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


# What main()'s exit code means, for the nox session's last line.
EXIT_MEANING = {
    1: "not every cell passed (the grid above says which and why), or the run could not start (see above)",
    2: "usage error (the message above says what to change)",
    130: "interrupted; the running container was removed",
    143: "terminated; the running container was removed",
}


@dataclass(frozen=True)
class Options:
    suite: Suite
    pythons: tuple[str, ...] = ()
    cudas: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    matrix: str = DEFAULT_MATRIX
    backend: str = "docker"
    require_gpu: bool = False
    timeout: float | None = None
    workers: str = "auto"  # pytest-xdist -n; "0": one process (measured: 2 workers 1.6x faster on 2 cores)
    jobs: int = 1  # cells tested at once (docker backend); each gets its own GPU while there are enough
    build_dir: Path = Path("build")
    tests_dir: Path = Path("tests/gpu")
    interpreter: str | None = None
    pytest_extra: tuple[str, ...] = ()  # after a second `--`: handed to pytest as they are

    @property
    def limit(self) -> float:
        return self.timeout or self.suite.timeout


@dataclass(frozen=True)
class CellPaths:
    junit: Path  # build/test-results/<cell>.xml
    log: Path  # build/test-results/<cell>.log
    results: Path  # build/test-results/<cell>/: artifacts, cell.json (host)
    cache: Path  # build/test-cache/<cell>

    @classmethod
    def of(cls, build_dir: Path, cell_id: str) -> CellPaths:
        res = build_dir / "test-results"
        return cls(res / f"{cell_id}.xml", res / f"{cell_id}.log", res / cell_id, build_dir / "test-cache" / cell_id)


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
            request = {"driver": "cdi", "device_ids": [f"{CDI_KIND}={device}"]}
        else:
            request = {"driver": "nvidia", "device_ids": [device], "capabilities": [["gpu"]]}
        return replace(self, device_requests=(request,), how=f"GPU {device} ({self.label})",
                       label=f"{self.label} gpu {device}", devices=(device,))


# --- pure parts ------------------------------------------------------------------------


def default_matrix() -> str:
    return os.environ.get(MATRIX_ENV) or DEFAULT_MATRIX


def session_pythons(matrix: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """The matrix's Pythons for nox's session names, or () and why (never a traceback)."""
    path = matrix or default_matrix()
    try:
        from .matrix import load_matrix

        return load_matrix(path).pythons, None
    except ImagematrixError as exc:
        return (), str(exc)
    except ImportError as exc:
        return (), f"cannot read {path}: {exc} (pip install -e '.[dev]')"


_CDI_DEVICE = re.compile(r"""name["']?\s*:\s*["']?(\d+)["']?\s*[,}\n]""")


def gpu_access(info: dict, cdi_specs: dict[str, str], gpu_count: int = 0) -> GpuAccess:
    """How to give containers the GPUs, from `docker info`, the CDI spec files' texts and the
    number of GPUs the host reports (nvidia-smi -L; 0 when unknown)."""
    runtimes = sorted(info.get("Runtimes") or {})
    if NVIDIA_RUNTIME in runtimes or info.get("DefaultRuntime") == NVIDIA_RUNTIME:
        return GpuAccess(({"count": -1, "capabilities": [["gpu"]]},), "all GPUs (NVIDIA runtime)", "nvidia runtime",
                         tuple(str(i) for i in range(gpu_count)))
    specs = sorted(p for p, text in cdi_specs.items() if CDI_KIND in text)
    if specs and info.get("CDISpecDirs"):
        # One CDI device per GPU, named by index as nvidia-ctk names them ("nvidia.com/gpu=0").
        names = sorted({n for p in specs for n in _CDI_DEVICE.findall(cdi_specs[p])}, key=int)
        return GpuAccess(({"driver": "cdi", "device_ids": [f"{CDI_KIND}=all"]},), f"all GPUs (CDI: {specs[0]})", "cdi",
                         tuple(names))
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


def pytest_args(
    opts: Options, tests: str, junit: str, cell_id: str, cell_file: str | None = None
) -> list[str]:
    """pytest's arguments (after `python -m pytest`), the same for both backends."""
    args = [
        tests, "-m", opts.suite.markers, "-v", "-ra", "--color=no",
        "-p", "no:cacheprovider",  # the suite's folder is read-only
        f"--junitxml={junit}", "-o", f"junit_suite_name={cell_id}",
    ]
    if cell_file:
        args += ["--cell", cell_file]
    if opts.require_gpu:
        args.append("--require-gpu")
    if opts.workers not in ("", "0"):
        args += ["-n", opts.workers, "--dist", "loadgroup"]  # the suite groups tests that share one probe
    return [*args, *opts.pytest_extra]


def cache_env(root: str, keep: tuple[str, ...] = ()) -> dict[str, str]:
    return {var: f"{root}/{sub}" for var, sub in CACHE_DIRS.items() if var not in keep}


def container_user(euid: int, egid: int) -> str:
    return f"{CONTAINER_UID}:{CONTAINER_UID}" if euid == 0 else f"{euid}:{egid}"


def container_spec(
    image_ref: str, image_env: list[str], opts: Options, cell_id: str, paths: CellPaths,
    tools: Path, gpu: GpuAccess, user: str, name: str,
) -> dict:
    """Keyword arguments of docker's ``containers.create`` for one cell's run."""
    inherited = dict(e.split("=", 1) for e in image_env if "=" in e)
    pythonpath = ":".join(p for p in (TOOLS_IN, PACKAGE_IN, inherited.get("PYTHONPATH")) if p)
    env = {
        **cache_env(CACHE_IN),
        "PYTHONPATH": pythonpath,
        "IMAGEMATRIX_ARTIFACTS": f"{RESULTS_IN}/artifacts",
        "USER": "imagematrix",  # getpass.getuser() works for a uid without a passwd entry
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


def build_command(matrix: str, cuda: str, python: str, target: str) -> str:
    argv = ["invoke", "build"] + (["--matrix", matrix] if matrix != DEFAULT_MATRIX else [])
    return shlex.join([*argv, "--cuda", cuda, "--python", python, "--target", target])


# --- shared plumbing -------------------------------------------------------------------


def ensure_tools(build_dir: Path) -> Path:
    """pytest + pytest-xdist in ``build/test-tools/site``: pure Python, mounted into every image."""
    site = build_dir / "test-tools" / "site"
    if site.is_dir():
        return site
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".site-", dir=site.parent))
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--only-binary=:all:", "--target", str(tmp), *TOOLS,
    ]
    print(f"installing the test tools once: {shlex.join(argv)}", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ImagematrixError(
            f"pip could not install {' '.join(TOOLS)} into {site}:\n{tail}\n"
            "Fix: check the network or proxy (PIP_INDEX_URL, PIP_CERT), or fill the directory yourself: "
            f"pip install --target {site} {' '.join(TOOLS)}"
        )
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from the container's unprivileged uid
    try:
        tmp.rename(site)  # atomic; a concurrent run that got there first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def tools_versions(site: Path) -> str:
    names = sorted(p.name[: -len(".dist-info")] for p in site.glob("*.dist-info"))
    wanted = {t.replace("-", "_") for t in TOOLS}
    return ", ".join(n.replace("-", " ", 1) for n in names if n.rsplit("-", 1)[0].lower() in wanted)


def _prepare_dirs(paths: CellPaths, keep: tuple[str, ...] = (), owner: int | None = None) -> None:
    for stale in (paths.junit, paths.log):
        stale.unlink(missing_ok=True)  # a result file is always from this run
    dirs = [paths.results, paths.results / "artifacts", paths.cache,
            *(paths.cache / sub for var, sub in CACHE_DIRS.items() if var not in keep)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(d, owner, owner)


def _finish(result: CellResult, build_dir: Path) -> CellResult:
    """Record the cell's result next to its build record (status.json, section "test")."""
    status.update_cell(build_dir, result.cell, "test", result.record(), replace=True)
    return result


def _judge_files(
    cell_id: str, opts: Options, paths: CellPaths, code: int | None, timed_out: bool, seconds: float, **extra
) -> CellResult:
    summary = None
    if paths.junit.is_file():
        try:
            summary = testgrid.parse_junit(paths.junit)
        except Exception as exc:  # a truncated file from a killed run is an error, not a crash
            extra["note"] = f"unreadable JUnit {paths.junit}: {exc}"
    state, note = testgrid.judge(code, summary, timed_out)
    note = "; ".join(n for n in (note, extra.pop("note", "")) if n)
    tail = "" if summary and not timed_out else _tail(paths.log)  # no JUnit to explain it: the log must
    return CellResult(
        cell_id, state, opts.suite.name, opts.backend, summary or testgrid.Summary(), seconds,
        str(paths.junit) if summary else "", str(paths.log), note, tail=tail, finished=utcnow(), **extra,
    )


def _tail(log: Path, lines: int = 12) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


# --- docker backend --------------------------------------------------------------------


def _client():
    try:
        import docker  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the docker backend needs the docker SDK ({exc}): pip install -e '.[dev]', or use --backend host") from None
    from .preflight import docker_client

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


def run_in_image(client, m, cell, opts: Options, gpu: GpuAccess, tools: Callable[[], Path], echo: bool = True) -> CellResult:
    import docker
    import requests

    from .render import is_current

    paths = CellPaths.of(opts.build_dir, cell.id)
    rebuild = build_command(opts.matrix, cell.cuda.version, cell.python, cell.target.name)
    fixed = {"suite": opts.suite.name, "backend": "docker", "gpu": gpu.label}

    def done(state: str, note: str, **extra) -> CellResult:
        return _finish(CellResult(cell.id, state, note=note, finished=utcnow(), **fixed, **extra), opts.build_dir)

    try:
        image = client.images.get(cell.ref)
    except docker.errors.ImageNotFound:
        return done(MISSING, f"image {cell.ref} was never built; build it: {rebuild}")
    labels = image.labels or {}
    if labels.get(CELL_LABEL) != cell.id:
        found = labels.get(CELL_LABEL)
        return done(ERROR, f"{cell.ref} is labelled imagematrix.cell={found!r}, not {cell.id}; rebuild: {rebuild}", image_id=image.id)
    notes = []
    if not is_current(m, cell, labels):
        notes.append(f"stale: built from other inputs than the matrix renders now ({rebuild})")
    euid = os.geteuid()
    _prepare_dirs(paths, owner=CONTAINER_UID if euid == 0 else None)
    name = f"imagematrix-test-{cell.id}-{os.getpid()}-{int(time.time())}"
    spec = container_spec(
        image.id, image.attrs.get("Config", {}).get("Env") or [], opts, cell.id, paths, tools(), gpu,
        container_user(euid, os.getegid()), name,
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
    result = _judge_files(cell.id, opts, paths, code, timed_out, time.monotonic() - start, note="; ".join(notes))
    return _finish(replace(result, image_id=image.id, gpu=fixed["gpu"]), opts.build_dir)


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
    from .matrix import load_matrix
    from .plan import Selection, select_cells

    m = load_matrix(opts.matrix)
    cells = select_cells(m, Selection.from_options(cuda=opts.cudas, python=opts.pythons, target=opts.targets))
    client = _client()
    for name in remove_stale_containers(client, opts.build_dir):
        print(f"removed stale test container {name}: the run that started it is gone (killed?)", flush=True)
    gpu = detect_gpu(client.info())
    print(f"GPUs for the containers: {gpu.how}", flush=True)

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
                results.append(run_in_image(client, m, cell, opts, gpu, tools))
        except KeyboardInterrupt:
            if results:
                testgrid.print_grid(results, opts.suite.name)
            raise
        return results
    if opts.workers == "auto":  # N containers at once share the CPUs (measured: 56 s -> 46 s for 3 cells on 32 cores)
        opts = replace(opts, workers=str(max(1, (os.cpu_count() or 1) // jobs)))
    return _run_parallel(client, m, cells, opts, gpu, tools, jobs)


def gpu_slots(gpu: GpuAccess, jobs: int) -> list[GpuAccess]:
    """What each of ``jobs`` concurrent containers gets: its own GPU while there are enough,
    round-robin beyond that; all GPUs for each when the host's GPUs are not known one by one."""
    if len(gpu.devices) < 2:
        return [gpu] * jobs
    return [gpu.only(gpu.devices[k % len(gpu.devices)]) for k in range(jobs)]


def _run_parallel(client, m, cells, opts: Options, gpu: GpuAccess, tools, jobs: int) -> list[CellResult]:
    """Up to ``jobs`` cells' containers at once, each holding a GPU slot; results in plan order."""
    import concurrent.futures as cf
    import queue

    slots: queue.Queue[GpuAccess] = queue.Queue()
    for slot in gpu_slots(gpu, jobs):
        slots.put(slot)
    print(f"running {len(cells)} cells, {jobs} at a time ({', '.join(s.how for s in gpu_slots(gpu, jobs))})", flush=True)

    def one(cell) -> CellResult:
        slot = slots.get()
        try:
            r = run_in_image(client, m, cell, opts, slot, tools, echo=False)
        finally:
            slots.put(slot)
        s = r.summary
        print(f"<== {cell.id}: {r.state} ({s.passed} passed, {s.failed} failed, {s.skipped} skipped) "
              f"in {r.seconds:.0f}s on {slot.label}; log {r.log}", flush=True)
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


# --- host backend ----------------------------------------------------------------------


def host_interpreter(opts: Options) -> str:
    if opts.interpreter:
        return opts.interpreter
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not opts.pythons or opts.pythons == (running,):
        return sys.executable
    if len(opts.pythons) > 1:
        raise UsageError("--backend host tests one interpreter: give one --python (or --interpreter PATH)")
    want = opts.pythons[0]
    found = shutil.which(f"python{want}")
    problem = _interpreter_problem(found, want) if found else "is not on PATH"
    if problem:
        raise UsageError(
            f"--backend host tests the host's Python {want}, but python{want} {problem} (this is Python {running}). "
            "Fix: install it, pass --interpreter PATH, or run `python -m imagematrix.testrun --backend host` "
            "with the interpreter to test"
        )
    return found


def _interpreter_problem(exe: str, want: str) -> str | None:
    """Why ``exe`` is not a working Python ``want`` (a pyenv shim is on PATH even when it cannot run)."""
    done = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()
        return f"({exe}) does not run: {first[0] if first else f'exit {done.returncode}'}"
    if done.stdout.strip() != want:
        return f"({exe}) is Python {done.stdout.strip()}"
    return None


def run_host(opts: Options) -> list[CellResult]:
    if opts.cudas or opts.targets:
        raise UsageError("--cuda and --target select images; --backend host tests this host's interpreter")
    interp = host_interpreter(opts)
    describe = opts.tests_dir / "describe_host.py"
    suite_path = ":".join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([interp, str(describe)], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": suite_path})
    if proc.returncode != 0:
        raise ImagematrixError(f"{interp} {describe} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}\nFix: torch must import in {interp}")
    manifest = json.loads(proc.stdout)
    cid = manifest["id"]
    has_xdist = subprocess.run([interp, "-c", "import xdist"], capture_output=True, check=False).returncode == 0
    if not has_xdist and opts.workers not in ("", "0"):
        print(f"note: pytest-xdist is not installed for {interp}: running in one process", flush=True)
        opts = replace(opts, workers="0")
    paths = CellPaths.of(opts.build_dir, cid)
    _prepare_dirs(paths, keep=HOST_KEEPS)
    cell_file = paths.results / "cell.json"
    cell_file.write_text(proc.stdout)
    # An empty ini: the repository's pytest settings are for its own tests, not the suite.
    ini = paths.results / "pytest.ini"
    ini.write_text("[pytest]\n")
    argv = [
        interp, "-m", "pytest",
        *pytest_args(opts, str(opts.tests_dir), str(paths.junit), cid, str(cell_file)),
        "-c", str(ini), "--rootdir", str(opts.tests_dir),
    ]
    env = {**os.environ, **cache_env(str(paths.cache.resolve()), HOST_KEEPS), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": suite_path,
           "IMAGEMATRIX_ARTIFACTS": str((paths.results / "artifacts").resolve())}
    print(f"\n==> {cid}: {interp} (limit {opts.limit:.0f}s)\n    {shlex.join(argv)}", flush=True)
    start = time.monotonic()
    code, timed_out = run_logged(argv, env, paths.log, echo=True, limit=opts.limit, header=False)
    return [_finish(_judge_files(cid, opts, paths, code, timed_out, time.monotonic() - start, gpu="host"), opts.build_dir)]


# --- entry point -----------------------------------------------------------------------


def run(opts: Options) -> int:
    with sigterm_as_interrupt():
        results = run_host(opts) if opts.backend == "host" else run_docker(opts)
    print(flush=True)
    testgrid.print_grid(results, opts.suite.name)
    return testgrid.exit_code(results)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m imagematrix.testrun",
        description="Run the GPU suite in every built image of the selection (or on this host) and print one grid.",
        epilog="Results: build/test-results/<cell>.xml (JUnit) and .log; build/status.json (section 'test').",
    )
    p.add_argument("--suite", choices=SUITES, default="smoke", help="smoke: fast checks; full: every check (default: smoke)")
    p.add_argument("--python", action="append", default=[], help="only images of this Python (repeatable)")
    p.add_argument("--cuda", action="append", default=[], help="only images of this CUDA version (repeatable)")
    p.add_argument("--target", action="append", default=[], help="only this target, e.g. runtime (repeatable)")
    p.add_argument("--matrix", default=None, help=f"matrix file (default: ${MATRIX_ENV}, else {DEFAULT_MATRIX})")
    p.add_argument("--backend", choices=BACKENDS, default="docker", help="docker: inside each built image (default); host: this host's interpreter")
    p.add_argument("--require-gpu", action="store_true", help="fail GPU checks that find no GPU instead of skipping them (GPU runners)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per image before it is killed (default: smoke 900, full 3600)")
    p.add_argument("--workers", default="auto", help="pytest-xdist workers per image: a number, 'auto' (default: one per CPU) or 0 (no xdist)")
    p.add_argument("--jobs", type=int, default=1, help="cells tested at once, each container on its own GPU while there are enough (default: 1)")
    p.add_argument("--build-dir", default="build", help="where results, caches and status.json live (default: build)")
    p.add_argument("--interpreter", default=None, help="--backend host: the Python to test (default: this one, or python<X.Y> for --python)")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARG", help="after `--`: more pytest arguments, e.g. -- -k abi")
    return p


def options(argv: list[str] | None = None) -> Options:
    a = parser().parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    if a.pytest_args and "--" not in raw:
        raise UsageError(f"unexpected argument(s) {' '.join(a.pytest_args)}: arguments for pytest go after `--`")
    if a.jobs < 1:
        raise UsageError(f"--jobs takes a number of cells >= 1, not {a.jobs}")
    if a.timeout is not None and a.timeout <= 0:
        raise UsageError(f"--timeout takes a positive number of seconds, not {a.timeout:g}")
    return Options(
        suite=SUITES[a.suite], pythons=tuple(a.python), cudas=tuple(a.cuda), targets=tuple(a.target),
        matrix=a.matrix or default_matrix(), backend=a.backend, require_gpu=a.require_gpu, timeout=a.timeout,
        workers=a.workers, jobs=a.jobs, build_dir=Path(a.build_dir), interpreter=a.interpreter, pytest_extra=tuple(a.pytest_args),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        code, message = outcome(lambda: run(options(argv)), stopped="the running container was removed")
    except SystemExit as exc:  # --help, or argparse's own usage error: a code for nox, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if message:
        print(message, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

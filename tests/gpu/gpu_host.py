"""What the suite reads from the host: the driver through ctypes, /proc, subprocesses.

Stdlib only (no torch): conftest uses it before torch is imported, and the
decisions it feeds live in gpu_policy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagematrix.core import contract

RESULT_MARK = "IMAGEMATRIX-PROBE-RESULT "
PROBE_SOURCE = Path(__file__).with_name("gpu_probe.py")
# A uid with no passwd entry, like `docker run --user 10001`: HOME falls back
# to "/", getpass.getuser() fails, nothing under HOME is writable.
NONROOT_UID = contract.UNPRIVILEGED_UID
NAMELESS_USER = contract.UNPRIVILEGED_USER  # $USER for a uid without a passwd entry (the runner sets the same)
CACHE_VARS = contract.COMPILE_CACHE_VARS


@dataclass(frozen=True)
class DriverProbe:
    error: str | None = None  # why libcuda.so.1 could not be loaded
    path: str | None = None
    init_code: int | None = None
    init_name: str | None = None
    init_text: str | None = None
    driver_cuda: tuple[int, int] | None = None
    driver_version: str | None = None
    compat: bool = False  # libcuda comes from a cuda-compat directory (forward compatibility)


def _cu_error(lib, code: int) -> tuple[str | None, str | None]:
    name, text = ctypes.c_char_p(), ctypes.c_char_p()
    try:
        lib.cuGetErrorName(code, ctypes.byref(name))
        lib.cuGetErrorString(code, ctypes.byref(text))
    except Exception:
        return None, None
    dec = lambda p: p.value.decode(errors="replace") if p.value else None  # noqa: E731
    return dec(name), dec(text)


def libcuda_loads() -> bool:
    """Whether the driver's library loads at all (no cuInit: cheap enough for the session's start)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def probe_driver() -> DriverProbe:
    """cuInit(0) and cuDriverGetVersion through ctypes on libcuda.so.1."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return DriverProbe(error=str(exc))
    path = next((p for p, _ in _maps_libs("libcuda")), None)
    code = int(lib.cuInit(0))
    name, text = _cu_error(lib, code) if code else (None, None)
    version = ctypes.c_int(0)
    driver_cuda = None
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
        driver_cuda = (version.value // 1000, (version.value % 1000) // 10)
    return DriverProbe(
        path=path,
        init_code=code,
        init_name=name,
        init_text=text,
        driver_cuda=driver_cuda,
        driver_version=driver_version(path),
        compat=bool(path and "/compat/" in path),
    )


def driver_version(libcuda_path: str | None = None) -> str | None:
    """The kernel driver's version: NVML, else /proc/driver/nvidia/version, else libcuda's file name."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() == 0:
            buf = ctypes.create_string_buffer(96)
            ok = nvml.nvmlSystemGetDriverVersion(buf, 96) == 0
            nvml.nvmlShutdown()
            if ok and buf.value:
                return buf.value.decode()
    except (OSError, AttributeError):
        pass
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
        if m:
            return m.group(1)
    except OSError:
        pass
    if libcuda_path:
        m = re.search(r"libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$", os.path.realpath(libcuda_path))
        if m:
            return m.group(1)
    return None


def self_maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:
        return ""


def _maps_libs(stem: str) -> list[tuple[str, int | None]]:
    from gpu_policy import loaded_library, mapped_paths

    return loaded_library(mapped_paths(self_maps()), stem)


def dist_owning(path: str) -> str | None:
    """Name of the installed distribution that holds `path` (pip's RECORD), if any."""
    import importlib.metadata as md

    real = os.path.realpath(path)
    for dist in md.distributions():
        name = dist.metadata.get("Name") or ""
        if not name.lower().startswith("nvidia"):
            continue
        for f in dist.files or ():
            if f.name == os.path.basename(path) and os.path.realpath(dist.locate_file(f)) == real:
                return name
    return None


def shm_bytes() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


# --------------------------------------------------------------------------
# Subprocess probes
# --------------------------------------------------------------------------


@dataclass
class ProbeResult:
    name: str
    returncode: int | None
    seconds: float
    timed_out: bool
    data: dict = field(default_factory=dict)
    output: str = ""
    user: str = ""

    @property
    def crashed(self) -> bool:
        return self.timed_out or not self.data

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])

    def why(self) -> str:
        if self.timed_out:
            return f"probe {self.name!r} ({self.user}) hung: killed after {self.seconds:.0f}s"
        return f"probe {self.name!r} ({self.user}) exited with {self.returncode} before reporting"


def timeout_scale() -> float:
    try:
        return max(0.1, float(os.environ.get("IMAGEMATRIX_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def _probe_command(name: str, args: Sequence[str], env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    code = PROBE_SOURCE.read_text()
    full_env = dict(os.environ if env is None else env)
    if not full_env.get("PYTHONPYCACHEPREFIX"):  # bytecode only into a cache dir, never beside sources
        full_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # One compile worker: a pool per probe, times pytest-xdist's workers, swamps the CPUs.
    full_env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    full_env["PYTHONUNBUFFERED"] = "1"
    return [sys.executable, "-c", code, name, *args], full_env


def _probe_result(
    name: str, returncode: int | None, seconds: float, timed_out: bool, out: str, user: str
) -> ProbeResult:
    data: dict = {}
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(line[len(RESULT_MARK) :])
            break
    visible = "\n".join(line for line in out.splitlines() if not line.startswith(RESULT_MARK))
    return ProbeResult(name, returncode, seconds, timed_out, data, visible, user)


def run_python(
    name: str,
    args: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    uid: int | None = None,
    cwd: str | None = None,
) -> ProbeResult:
    """Run gpu_probe.py's `name` in a fresh interpreter; kill the whole group on timeout.

    The source travels with -c so an unprivileged uid needs no read access to
    the suite's folder; the result is the last RESULT_MARK line on stdout. A
    probe the session started early (start_probes) with the same arguments and
    environment is taken over instead of run twice.
    """
    if env is None and uid is None and cwd is None:
        early = _take_started(name, args, timeout)
        if early is not None:
            return early
    cmd, full_env = _probe_command(name, args, env)
    kwargs: dict = {}
    if uid is not None:
        kwargs.update(user=uid, group=uid, extra_groups=[])
    timeout = timeout * timeout_scale()
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd or "/tmp",
        start_new_session=True,
        text=True,
        errors="replace",
        **kwargs,
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    who = f"uid {uid}" if uid is not None else f"uid {os.geteuid()}"
    return _probe_result(name, proc.returncode, time.monotonic() - start, timed_out, out, who)


# --------------------------------------------------------------------------
# Probes started with the session
# --------------------------------------------------------------------------
# The slowest smoke probes (a fresh `import torch_geometric` pulls in torch._dynamo) would start only
# once a worker has started, imported torch and collected. The controller starts them first, in a
# folder named by STARTED_ENV; the test that needs one takes its result (one taker: a rename).

STARTED_ENV = "IMAGEMATRIX_STARTED_PROBES"


def _started_path(folder: str | Path, name: str, args: Sequence[str]) -> str:
    key = hashlib.sha256("\0".join([name, *args]).encode()).hexdigest()[:16]
    return os.path.join(folder, f"{name}-{key}")


def _write_atomic(path: str, text: str) -> None:
    with open(f"{path}.tmp", "w") as f:
        f.write(text)
    os.replace(f"{path}.tmp", path)


def start_probes(folder: Path, probes: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Start each (probe, args) now, in this process's environment, output to a file in `folder`."""
    for name, args in probes:
        base = _started_path(folder, name, args)
        cmd, env = _probe_command(name, args, None)
        with open(f"{base}.out", "w") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/tmp",
                start_new_session=True,
            )
        _write_atomic(f"{base}.pid", str(proc.pid))
        threading.Thread(target=_note_exit, args=(proc, base, time.monotonic()), daemon=True).start()


def _note_exit(proc: subprocess.Popen, base: str, start: float) -> None:
    code = proc.wait()
    with contextlib.suppress(OSError):  # the session may be over and the folder gone
        _write_atomic(f"{base}.done", json.dumps({"returncode": code, "seconds": time.monotonic() - start}))


def _take_started(name: str, args: Sequence[str], timeout: float) -> ProbeResult | None:
    folder = os.environ.get(STARTED_ENV)
    if not folder:
        return None
    base = _started_path(folder, name, args)
    taken = f"{base}.taken"
    try:
        os.rename(f"{base}.pid", taken)
    except OSError:
        return None  # not started early, or another test took it
    pid = int(Path(taken).read_text())
    waited = time.monotonic()
    done_file = f"{base}.done"
    timed_out = not _within(timeout * timeout_scale(), lambda: os.path.exists(done_file))
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _within(10, lambda: os.path.exists(done_file))  # for the controller to note the exit
    try:
        done = json.loads(Path(done_file).read_text())
    except (OSError, json.JSONDecodeError):
        done = {"returncode": None, "seconds": time.monotonic() - waited}
    out = Path(f"{base}.out").read_text(errors="replace")
    return _probe_result(name, done["returncode"], done["seconds"], timed_out, out, f"uid {os.geteuid()}")


def stop_probes(folder: Path) -> None:
    """End the started probes no test took (a -k or a failure left them unused), then the folder."""
    claims = [
        c for c in (*Path(folder).glob("*.pid"), *Path(folder).glob("*.taken")) if not c.with_suffix(".done").exists()
    ]
    for claim in claims:
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            os.killpg(int(claim.read_text()), signal.SIGKILL)
    _within(10, lambda: all(c.with_suffix(".done").exists() for c in claims))  # exits noted, then the folder goes
    shutil.rmtree(folder, ignore_errors=True)


def _within(seconds: float, condition) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def run_command(
    cmd: list[str], timeout: float, env: dict | None = None, cwd: str | None = None
) -> tuple[int | None, str, bool]:
    """Run a command (argument list) under a timeout; (returncode, output, timed_out)."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        return None, str(exc), False
    try:
        out, _ = proc.communicate(timeout=timeout * timeout_scale())
        return proc.returncode, out, False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return proc.returncode, out, True


# --------------------------------------------------------------------------
# Non-root builds
# --------------------------------------------------------------------------


def toolchain_fingerprint(paths: list[str | None]) -> str:
    """Short hash of what a cached build used (path, size, mtime of each; missing ones too): a warm
    extension build counts as evidence only while the compiler, ninja, nvcc and headers are the same
    files, so a rebuilt image that lost its compiler builds afresh and fails."""
    parts = []
    for path in paths:
        real = os.path.realpath(path) if path else None
        try:
            st = os.stat(real) if real else None
        except OSError:
            st = None
        parts.append(f"{real}:{st.st_size}:{st.st_mtime_ns}" if st else f"{path}:missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]


def traversable_by_others(path: Path) -> bool:
    """Can an unrelated uid reach `path` (o+x on every ancestor)?"""
    p = path.resolve()
    for parent in [p, *p.parents]:
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Identity:
    uid: int | None  # None: run as ourselves
    label: str
    note: str  # why we could not drop privileges, if we could not


def build_identity(dirs: list[Path], runtime: list[Path] = ()) -> Identity:
    """Who builds and runs extensions: an unprivileged uid when we are root and it can reach
    the writable `dirs` (created here when missing) and the interpreter and packages in `runtime`."""
    me = os.geteuid()
    if me != 0:
        return Identity(None, f"uid {me} (non-root)", "")
    for d in dirs:
        if not d.exists():
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
    paths = [Path(os.path.realpath(sys.executable)), *runtime, *dirs]
    unreachable = [str(d) for d in paths if not traversable_by_others(d)]
    if unreachable:
        return Identity(
            None,
            "uid 0 (root)",
            f"running as root and {', '.join(unreachable)} is not reachable by other users (o+x on "
            "every parent), so builds and compiles ran as root",
        )
    try:
        pwd.getpwuid(NONROOT_UID)
        label = f"uid {NONROOT_UID}"
    except KeyError:
        label = f"uid {NONROOT_UID} (no passwd entry, like docker run --user {NONROOT_UID})"
    return Identity(NONROOT_UID, label, "")


def user_name(uid: int) -> str:
    """The passwd name of `uid`, or the name the runner gives a uid without one."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return NAMELESS_USER


def private_dir(root: Path, name: str, uid: int | None) -> Path:
    """root/name, owned by `uid` (when given) so that uid can write it."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(d, uid, uid)
    return d

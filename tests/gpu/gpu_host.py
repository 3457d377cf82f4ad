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
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagematrix import contract

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


def run_python(
    name: str,
    args: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    uid: int | None = None,
    cwd: str | None = None,
) -> ProbeResult:
    """Run gpu_probe.py's `name` in a fresh interpreter; kill the whole group on timeout.

    The source travels with -c so an unprivileged uid needs no read access to
    the suite's folder; the result is the last RESULT_MARK line on stdout.
    """
    code = PROBE_SOURCE.read_text()
    cmd = [sys.executable, "-c", code, name, *args]
    full_env = dict(os.environ if env is None else env)
    if not full_env.get("PYTHONPYCACHEPREFIX"):  # bytecode only into a cache dir, never beside sources
        full_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # One compile worker: a pool per probe, times pytest-xdist's workers, swamps the CPUs.
    full_env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    full_env["PYTHONUNBUFFERED"] = "1"
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
    data: dict = {}
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(line[len(RESULT_MARK) :])
            break
    visible = "\n".join(line for line in out.splitlines() if not line.startswith(RESULT_MARK))
    who = f"uid {uid}" if uid is not None else f"uid {os.geteuid()}"
    return ProbeResult(
        name, proc.returncode, time.monotonic() - start, timed_out, data, visible, who
    )


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

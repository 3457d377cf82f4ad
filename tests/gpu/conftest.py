"""Wiring of the GPU compatibility suite.

This folder is mounted read-only into images with no pytest config beside
it, so everything the suite needs is registered here: markers, options, the
cell manifest and writable cache dirs. Inside an image it needs only torch
and pytest (pytest-xdist optional).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import pytest

# Never write __pycache__ next to the tests (often a read-only mount); with a
# PYTHONPYCACHEPREFIX (the runner sets one in its cache dir) bytecode goes there.
sys.dont_write_bytecode = sys.pycache_prefix is None
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

try:  # the image contract: the runner mounts the package; a checkout has it in src/
    import imagematrix.core.contract  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parents[1] / "src"))

import gpu_host  # noqa: E402
import gpu_policy  # noqa: E402

MARKERS = {
    "smoke": "GPU suite: fast checks that always run",
    "full": "GPU suite: slower checks (builds, autotuning, models)",
    "gpu": "needs a visible NVIDIA GPU: skipped without one, failed under --require-gpu",
    "cuda": "needs a cell that declares CUDA (skipped for CPU-only host descriptions)",
    "cpp_extension": "cell feature: C++ torch.utils.cpp_extension.load_inline works",
    "cuda_extension": "cell feature: nvcc is present and CUDA load_inline works",
    "torch_compile": "cell feature: torch.compile (inductor + triton) works",
    "pyg": "cell feature: torch_geometric and its declared compiled extensions",
    "pyg_extension(name)": "needs the cell to declare this compiled PyG extension",
    "ray": "cell feature: a local Ray runtime",
    "xdist_group(name)": "tests sharing one probe; run them on one worker with -n N --dist loadgroup",
    "marimo": "cell feature: marimo notebooks run headless",
    "torch": "needs torch in the image (skipped where the cell pins no torch and none is installed)",
}
FEATURE_MARKERS = gpu_policy.FEATURES
SUITE_VARS_ENV = "IMAGEMATRIX_SUITE_CACHE_VARS"  # cache vars the suite itself pointed at a tmp dir
_TMP_BASE = pytest.StashKey[object]()
_CELL = pytest.StashKey[object]()
_GPU = pytest.StashKey[object]()
_DRIVER = pytest.StashKey[object]()
_STARTED = pytest.StashKey[object]()
_RECORDER = pytest.StashKey[object]()


def pytest_addoption(parser):
    group = parser.getgroup("imagematrix", "imagematrix GPU suite")
    group.addoption(
        "--cell",
        default=None,
        metavar="PATH",
        help=f"cell manifest to check against (default: ${gpu_policy.CELL_ENV}, then {gpu_policy.DEFAULT_CELL_PATH})",
    )
    group.addoption(
        "--require-gpu",
        action="store_true",
        default=False,
        help="fail the GPU checks when no GPU is visible instead of skipping them (CI GPU runners)",
    )


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if hasattr(config, "workerinput"):
        return  # xdist workers inherit the controller's environment
    base = None
    suite_set = []
    for var in gpu_host.CACHE_VARS:
        if not os.environ.get(var):
            if base is None:
                base = Path(tempfile.mkdtemp(prefix="imagematrix-gpu-"))
                base.chmod(0o755)  # an unprivileged build uid must reach its subdirs
            path = base / var.lower()
            path.mkdir()
            path.chmod(0o755)
            os.environ[var] = str(path)
            suite_set.append(var)
    os.environ[SUITE_VARS_ENV] = ",".join(suite_set)
    config.stash[_TMP_BASE] = base
    config.stash[_STARTED] = start_session_probes(config)  # after the cache vars: the probes inherit them
    recorder = threading.Thread(target=record_gpu, args=(os.environ.get("IMAGEMATRIX_ARTIFACTS"),))
    recorder.start()  # beside the session's start, not before it
    config.stash[_RECORDER] = recorder


def start_session_probes(config) -> tuple[Path, list[str]] | None:
    """Start the smoke checks' slowest probes now, while pytest and its workers start up."""
    try:
        cell = load_cell(config)
    except gpu_policy.ManifestError:
        return None  # pytest_sessionstart says what is wrong with it
    whole = not config.option.collectonly and all(Path(a).resolve() == HERE for a in config.args)
    driver = cell.cuda is not None and gpu_host.libcuda_loads()
    probes = gpu_policy.probes_to_start(
        cell, config.option.markexpr or "", config.option.keyword or "", whole, _has_torch(), driver
    )
    if not probes:
        return None
    folder = Path(tempfile.mkdtemp(prefix="imagematrix-probes-"))
    os.environ[gpu_host.STARTED_ENV] = str(folder)
    gpu_host.start_probes(folder, probes)
    return folder, [" ".join([name, *args]) for name, args in probes]


def record_gpu(artifacts: str | None) -> None:
    """What this run saw of the GPU (driver, its CUDA, each device), for the record and the report's
    compatibility table: imagematrix.core.driver_probe in a child process, written to gpu.json."""
    if not artifacts:
        return
    try:
        done = subprocess.run(
            [sys.executable, "-m", "imagematrix.core.driver_probe"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        if done.returncode == 0 and done.stdout.strip():
            (Path(artifacts) / "gpu.json").write_text(done.stdout)
    except (OSError, subprocess.TimeoutExpired):
        pass  # the GPU checks themselves say what is wrong; the record only lacks the GPU's name


def pytest_sessionfinish(session, exitstatus):
    record_torch(os.environ.get("IMAGEMATRIX_ARTIFACTS"))


def record_torch(artifacts: str | None) -> None:
    """The torch this process imported (a worker's checks import it), for the record and the signed result:
    ``imagematrix verify --chain`` holds it to the torch the image's SBOM lists. Nothing when none was
    imported (a cell without torch, or checks that all skipped)."""
    torch = sys.modules.get("torch")
    if not artifacts or torch is None:
        return
    from importlib import metadata

    try:
        dist = metadata.distribution("torch")
        seen = {
            "version": str(getattr(torch, "__version__", "")),
            "distribution": dist.metadata["Name"],
            "distribution_version": dist.version,
            "cuda": str(getattr(getattr(torch, "version", None), "cuda", None) or ""),
        }
        out = Path(artifacts)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".torch.json.{os.getpid()}"
        tmp.write_text(json.dumps(seen))
        os.replace(tmp, out / "torch.json")  # workers write the same facts; the last one stands
    except (OSError, metadata.PackageNotFoundError):
        pass


def pytest_unconfigure(config):
    recorder = config.stash.get(_RECORDER, None)
    if recorder is not None:
        recorder.join()
    started = config.stash.get(_STARTED, None)
    if started is not None:
        gpu_host.stop_probes(started[0])
        os.environ.pop(gpu_host.STARTED_ENV, None)
    base = config.stash.get(_TMP_BASE, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


def load_cell(config) -> gpu_policy.Cell:
    if _CELL not in config.stash:
        path, origin = gpu_policy.choose_cell_path(config.getoption("--cell"), os.environ, os.path.exists)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise gpu_policy.ManifestError(f"{path} ({origin}): cannot read: {exc}") from None
        config.stash[_CELL] = gpu_policy.parse_cell_text(text, path)
    return config.stash[_CELL]


def pytest_sessionstart(session):
    try:
        load_cell(session.config)
    except gpu_policy.ManifestError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config):
    try:
        cell = load_cell(config)
    except gpu_policy.ManifestError:
        return None
    caches = ", ".join(f"{v}={os.environ.get(v)}" for v in gpu_host.CACHE_VARS)
    return [
        f"imagematrix cell: {cell.id} ({cell.source}) kind={cell.kind} python={cell.python} "
        f"cuda={cell.cuda} torch_cuda={cell.torch_cuda} features={','.join(sorted(cell.features)) or '-'} "
        f"pyg_extensions={','.join(cell.pyg_extensions) or '-'}",
        f"imagematrix caches: {caches}",
        *(
            [f"imagematrix probes started with the session: {'; '.join(started[1])}"]
            if (started := config.stash.get(_STARTED, None))
            else []
        ),
        *(
            [f"imagematrix: no checks for the features {', '.join(cell.unchecked_features)} (the team's own names)"]
            if cell.unchecked_features
            else []
        ),
    ]


def gpu_state(config) -> gpu_policy.GpuState:
    """Is a usable GPU visible to this process? Computed once per process."""
    if _GPU not in config.stash:
        drv = gpu_host.probe_driver()
        config.stash[_DRIVER] = drv
        torch_cuda, available, count, warning = None, False, 0, None
        cell = load_cell(config)
        if drv.error is None and drv.init_code == 0 and cell.holds_torch:  # a cell without torch: the driver says
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                import torch

                torch_cuda = torch.version.cuda
                available = torch.cuda.is_available()
                count = torch.cuda.device_count() if available else 0
            text = [str(w.message) for w in caught if "cuda" in str(w.message).lower()]
            warning = text[0] if text else None
        config.stash[_GPU] = gpu_policy.classify_gpu(
            drv.error,
            drv.init_code,
            drv.init_name,
            drv.init_text,
            torch_cuda,
            available,
            count,
            warning,
            torch_held=cell.holds_torch,
        )
    return config.stash[_GPU]


def pytest_generate_tests(metafunc):
    if "fresh_module" in metafunc.fixturenames:
        cell = load_cell(metafunc.config)
        mods = gpu_policy.modules_to_import(cell)
        if not mods:  # else pytest's own "got empty parameter set"
            why = f"cell {cell.id} holds no torch and declares no feature with a module to import"
            metafunc.parametrize("fresh_module", [pytest.param(None, marks=pytest.mark.skip(reason=why))], ids=["none"])
            return
        metafunc.parametrize("fresh_module", mods, ids=mods)


@functools.cache  # asked for every collected item: search sys.path once
def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _fail_without_gpu(reason):
    def test_needs_gpu():
        pytest.fail(reason, pytrace=False)

    return test_needs_gpu


@pytest.hookimpl(trylast=True)  # after -m/-k deselection, so only selected tests pay
def pytest_collection_modifyitems(session, config, items):
    warn_if_groups_ignored(config, items)  # before any stand-in replaces an item
    cell = load_cell(config)
    require = config.getoption("--require-gpu")
    for i, item in enumerate(items):
        ext = item.get_closest_marker("pyg_extension")
        markers = {m.name for m in item.iter_markers()}
        reason = gpu_policy.collection_skip(markers, ext.args[0] if ext else None, cell)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
            continue
        if not item.get_closest_marker("gpu"):
            continue
        state = gpu_state(config)
        if state.ok:
            continue
        if state.status == "absent" and not require:
            item.add_marker(pytest.mark.skip(reason=state.reason))
            continue
        why = state.reason + (" [--require-gpu]" if state.status == "absent" else "")
        # Same node id, no fixtures: it fails in its call phase with the reason.
        stand_in = pytest.Function.from_parent(item.parent, name=item.name, callobj=_fail_without_gpu(why))
        stand_in.own_markers.extend(item.own_markers)
        if hasattr(item, "_nodeid"):  # pytest < 9.2: keep pytest-xdist's @group suffix (its own mechanism)
            stand_in._nodeid = item._nodeid
        items[i] = stand_in


def warn_if_groups_ignored(config, items) -> None:
    """A group's tests share one probe only on one worker. pytest-xdist marks them by a node-id
    suffix, which pytest 9.2 with pytest-xdist <= 3.8 drops (pytest-xdist#1386): every worker then
    runs its own probe. Said once, by the first worker."""
    if not getattr(config.option, "loadgroup", False) or config.workerinput.get("workerid") != "gw0":
        return
    lost = next(
        (it.nodeid for it in items if it.get_closest_marker("xdist_group") and "@" not in it.nodeid.rpartition("]")[2]),
        None,
    )
    if lost:
        warnings.warn(
            pytest.PytestWarning(
                f"--dist loadgroup is not grouping ({lost} has no @group): each worker runs its own probe, "
                f"slower and contending for the GPU. pytest {pytest.__version__} with this pytest-xdist is "
                "pytest-xdist#1386. Fix: pytest<9.2 (imagematrix's own test tools pin it), or -n 0"
            ),
            stacklevel=1,
        )


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cell(pytestconfig) -> gpu_policy.Cell:
    return load_cell(pytestconfig)


@pytest.fixture(scope="session")
def gpu(pytestconfig) -> gpu_policy.GpuState:
    return gpu_state(pytestconfig)


@pytest.fixture(scope="session")
def driver(pytestconfig) -> gpu_host.DriverProbe:
    gpu_state(pytestconfig)
    return pytestconfig.stash[_DRIVER]


@pytest.fixture(scope="session")
def suite_set_vars() -> frozenset[str]:
    """Cache variables that were unset when the suite started (it pointed them at a tmp dir)."""
    return frozenset(v for v in os.environ.get(SUITE_VARS_ENV, "").split(",") if v)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    given = os.environ.get("IMAGEMATRIX_ARTIFACTS")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def build_tag() -> str:
    """Keeps builds of different interpreters, torches and toolchains apart in a shared cache dir."""
    import sysconfig

    import torch
    from torch.utils import cpp_extension

    cu = (torch.version.cuda or "cpu").replace(".", "")
    ver = gpu_policy.base_version(torch.__version__)
    tdir = Path(torch.__file__).parent
    toolchain = gpu_host.toolchain_fingerprint(
        [
            shutil.which(os.environ.get("CXX", "c++")),
            shutil.which("ninja"),
            sys.executable,
            os.path.join(cpp_extension.CUDA_HOME or "/usr/local/cuda", "bin", "nvcc"),
            os.path.join(sysconfig.get_paths()["include"], "Python.h"),
            str(tdir / "include" / "torch" / "extension.h"),
            str(tdir / "version.py"),
        ]
    )
    return f"py{sys.version_info[0]}{sys.version_info[1]}-torch{ver}-cu{cu}-{toolchain}"


@pytest.fixture(scope="session")
def identity() -> gpu_host.Identity:
    """Who builds and runs extensions and compiles: unprivileged when possible."""
    import torch

    roots = [Path(os.environ[v]) for v in gpu_host.CACHE_VARS]
    return gpu_host.build_identity(roots, [Path(torch.__file__).parent])


@pytest.fixture(scope="session")
def nonroot_env(identity, suite_set_vars):
    """Environment of an unprivileged user with a read-only HOME ('docker run --user N')."""

    def make(keep_suite_vars: bool = True) -> dict[str, str]:
        env = dict(os.environ)
        if identity.uid is None:
            return env
        env["HOME"] = "/"
        # The suite, not the image, chose this uid: give it the name a passwd entry would (none for
        # NONROOT_UID), or getpass.getuser() in inductor dies with "getpwuid(): uid not found".
        env["USER"] = env["LOGNAME"] = gpu_host.user_name(identity.uid)
        for var in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
            if var in suite_set_vars and not keep_suite_vars:
                env.pop(var, None)  # what a user gets from the image's own defaults
            else:
                env[var] = str(gpu_host.private_dir(Path(os.environ[var]), f"uid{identity.uid}", identity.uid))
        return env

    return make

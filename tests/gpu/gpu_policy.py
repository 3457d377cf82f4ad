"""Pure decisions of the GPU suite: no torch, no I/O, stdlib only.

Everything here is a function of plain values (version strings, lists,
texts read elsewhere) so it can be unit-tested on a CPU machine; the tests in
this folder gather the values and turn the decisions into pass/fail.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------
# Vocabulary of the cell manifest (/etc/imagematrix/cell.json, schema 1)
# --------------------------------------------------------------------------
# The manifest's vocabulary, builder and parser live in the image contract (imagematrix.core.contract),
# shared with the code that renders the images; the runner puts it on the suite's path.
from imagematrix.core.contract import (  # noqa: F401
    EXTENSION_BUILDS,
    FEATURES,
    KINDS,
    MANIFEST_PATH,
    MANIFEST_SCHEMA,
    PYG_EXTENSIONS,
    RELATIONS,
    ManifestError,
    major_minor,
)
from imagematrix.core.contract import Manifest as Cell
from imagematrix.core.contract import parse_manifest as parse_cell  # noqa: F401
from imagematrix.core.contract import parse_manifest_text as parse_cell_text  # noqa: F401

# NVIDIA's driver/CUDA compatibility rules: shared with `invoke doctor`, read by the suite from here.
from imagematrix.core.cuda_compat import (  # noqa: F401
    MINOR_COMPAT_DRIVER,
    NATIVE_DRIVER,
    DriverDecision,
    cuda_int,
    driver_policy,
    fmt_mm,
    native_driver,
    version_tuple,
)

SCHEMA = MANIFEST_SCHEMA
DEFAULT_CELL_PATH = MANIFEST_PATH
CELL_ENV = "IMAGEMATRIX_CELL"
# The flag torch_geometric.typing sets when the extension imported; PyG
# silently sets it False when the import raises ImportError.
PYG_WITH_FLAGS = {
    "pyg_lib": "WITH_PYG_LIB",
    "torch_scatter": "WITH_TORCH_SCATTER",
    "torch_sparse": "WITH_TORCH_SPARSE",
    "torch_cluster": "WITH_TORCH_CLUSTER",
    "torch_spline_conv": "WITH_TORCH_SPLINE_CONV",
}
# Distribution names on PyPI / data.pyg.org (for the fix in messages).
PYG_DISTRIBUTIONS = {
    "pyg_lib": "pyg-lib",
    "torch_scatter": "torch-scatter",
    "torch_sparse": "torch-sparse",
    "torch_cluster": "torch-cluster",
    "torch_spline_conv": "torch-spline-conv",
}

HOST_HOWTO = (
    "On a bare host (no image), describe the current interpreter first:\n"
    "    python tests/gpu/describe_host.py --cuda <toolkit X.Y.Z> --out cell.json\n"
    "    python -m pytest tests/gpu --cell cell.json\n"
    f"(or set {CELL_ENV}=cell.json)."
)


def choose_cell_path(option: str | None, env: Mapping[str, str], exists) -> tuple[str, str]:
    """Return (path, where it came from); raise ManifestError naming every place looked at."""
    if option:
        if not exists(option):
            raise ManifestError(f"--cell {option}: no such file.\n{HOST_HOWTO}")
        return option, "--cell"
    if env.get(CELL_ENV):
        path = env[CELL_ENV]
        if not exists(path):
            raise ManifestError(f"{CELL_ENV}={path}: no such file.\n{HOST_HOWTO}")
        return path, CELL_ENV
    if exists(DEFAULT_CELL_PATH):
        return DEFAULT_CELL_PATH, "image"
    raise ManifestError(
        f"no cell manifest: not given with --cell, {CELL_ENV} is unset and "
        f"{DEFAULT_CELL_PATH} does not exist (every imagematrix image carries it).\n{HOST_HOWTO}"
    )


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------


def cudnn_int(value: int | None) -> tuple[int, int, int] | None:
    """torch.backends.cudnn.version(): 8902 -> (8, 9, 2), 91002 -> (9, 10, 2)."""
    if not value:
        return None
    if value >= 10000:  # cuDNN 9 switched to major*10000 + minor*100 + patch
        return value // 10000, (value % 10000) // 100, value % 100
    return value // 1000, (value % 1000) // 100, value % 100


def base_version(version: str) -> str:
    """'2.9.1+cu128' -> '2.9.1'."""
    return str(version).split("+", 1)[0]


def parse_nvcc_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"release (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_nvcc_full_version(text: str) -> str | None:
    m = re.search(r"\bV(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


# cuInit / driver API error codes worth a hint (cuda.h CUresult).
CU_ERRORS: dict[int, tuple[str, str]] = {
    3: (
        "CUDA_ERROR_NOT_INITIALIZED",
        "the driver did not initialise; see the driver's kernel log (dmesg)",
    ),
    34: (
        "CUDA_ERROR_STUB_LIBRARY",
        "libcuda.so.1 is the toolkit's stub (lib64/stubs) shadowing the real driver: remove the "
        "stubs directory from LD_LIBRARY_PATH / ld.so.conf",
    ),
    46: (
        "CUDA_ERROR_DEVICE_UNAVAILABLE",
        "the GPU is busy or unavailable (exclusive-process compute mode used by another process, or "
        "a MIG instance not assigned): check `nvidia-smi -q -d COMPUTE`",
    ),
    100: (
        "CUDA_ERROR_NO_DEVICE",
        "no CUDA-capable device is visible: start the container with GPUs (`docker run --gpus all`, "
        "or CDI `--device nvidia.com/gpu=all`), and check CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES",
    ),
    101: ("CUDA_ERROR_INVALID_DEVICE", "CUDA_VISIBLE_DEVICES names a device that does not exist"),
    304: (
        "CUDA_ERROR_OPERATING_SYSTEM",
        "an OS call failed inside the driver: /dev/nvidia* are not accessible to this user, or "
        "the container lacks the device cgroup permissions",
    ),
    802: (
        "CUDA_ERROR_SYSTEM_NOT_READY",
        "the system is not ready: on NVSwitch machines start nvidia-fabricmanager (versions must match the driver)",
    ),
    803: (
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        "the user-space libcuda.so.1 does not match the kernel driver: the image ships a cuda-compat "
        "libcuda (forward compatibility) or a stale driver library that shadows the host's. Fix: drop "
        "/usr/local/cuda-X.Y/compat from LD_LIBRARY_PATH/ldconfig, or run on a host driver that "
        "supports this CUDA natively",
    ),
    804: (
        "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        "forward compatibility (cuda-compat libs) was tried on a GPU that does not support it: it "
        "works on datacenter GPUs only. Fix: upgrade the host driver instead, or remove the compat libs",
    ),
    999: (
        "CUDA_ERROR_UNKNOWN",
        "unknown driver error: usually nvidia-uvm is not loaded or /dev/nvidia-uvm is missing, or the "
        "driver was upgraded without a reboot (kernel module and libraries differ). Fix: `sudo modprobe "
        "nvidia-uvm`, reboot after driver upgrades, check that `nvidia-smi` works on the host",
    ),
}


def cuinit_hint(code: int, name: str | None = None, text: str | None = None) -> str:
    """One line for a failed cuInit: name, code, the driver's text, then what to do."""
    known_name, hint = CU_ERRORS.get(code, (None, "see `nvidia-smi` and the kernel log (dmesg) on the host"))
    label = name or known_name or "CUresult"
    said = f" ({text})" if text else ""
    return f"cuInit(0) returned {label} ({code}){said}: {hint}"


# --------------------------------------------------------------------------
# GPU presence: skip (absent) versus fail (present but broken)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuState:
    status: str  # "ok" | "absent" | "broken"
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def classify_gpu(
    libcuda_error: str | None,
    init_code: int | None,
    init_name: str | None,
    init_text: str | None,
    torch_cuda: str | None,
    torch_available: bool,
    device_count: int,
    init_warning: str | None = None,
    torch_held: bool = True,
) -> GpuState:
    """absent = no driver or no device (skip, or fail under --require-gpu); broken = always fail. A cell
    that holds no torch has a usable GPU when the driver initialises (cuInit says 100 when it sees none)."""
    if libcuda_error is not None:
        return GpuState(
            "absent",
            f"no GPU visible: libcuda.so.1 could not be loaded ({libcuda_error}); this host has no "
            "NVIDIA driver, or the container was started without GPU access (docker run --gpus all)",
        )
    if init_code == 100:
        return GpuState("absent", "no GPU visible: " + cuinit_hint(100, init_name, init_text))
    if init_code not in (0, None):
        return GpuState("broken", cuinit_hint(init_code, init_name, init_text))
    if not torch_held:
        return GpuState("ok", "")
    if torch_cuda is None:
        return GpuState(
            "broken",
            "the NVIDIA driver works but torch is a CPU-only build (torch.version.cuda is None): the "
            "GPU checks cannot run and training would silently use the CPU. Fix: install torch from "
            "the CUDA wheel index (https://download.pytorch.org/whl/cuXYZ)",
        )
    if not torch_available or device_count < 1:
        said = f": {init_warning}" if init_warning else ""
        return GpuState(
            "broken",
            f"cuInit succeeded but torch.cuda.is_available() is {torch_available} with {device_count} device(s){said}",
        )
    return GpuState("ok", "")


# --------------------------------------------------------------------------
# Architecture coverage: SASS and PTX against a compute capability (imagematrix.core.arch: one home,
# shared with `invoke doctor` and the audit)
# --------------------------------------------------------------------------
from imagematrix.core.arch import (  # noqa: E402, F401
    Arch,
    Coverage,
    arch_coverage,
    elf_arches,
    parse_arch,
    ptx_jits_on,
    sass_runs_on,
)

# --------------------------------------------------------------------------
# torch.__config__.show() and friends
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchConfig:
    cuda_runtime: str | None
    cudnn: str | None
    cxx11_abi: int | None
    settings: Mapping[str, str]

    @property
    def use_cuda(self) -> bool:
        return self.settings.get("USE_CUDA", "").upper() in ("ON", "1", "TRUE")


def parse_torch_config(text: str) -> TorchConfig:
    runtime = re.search(r"^\s*-\s*CUDA Runtime (\d+\.\d+)", text, re.M)
    cudnn = re.search(r"^\s*-\s*CuDNN ([\d.]+)", text, re.M)
    abi = re.search(r"-D_GLIBCXX_USE_CXX11_ABI=(\d)", text)
    settings: dict[str, str] = {}
    m = re.search(r"Build settings:(.*)$", text, re.M | re.S)
    if m:
        body = m.group(1).strip()
        # "KEY=value, KEY2=value with spaces, ..." (values have no ", UPPER=" inside)
        for part in re.split(r",\s*(?=[A-Z][A-Z0-9_]*=)", body):
            if "=" in part:
                k, v = part.split("=", 1)
                settings[k.strip()] = v.strip().rstrip(",").strip()
    # The "CUDA Runtime" line is printed only when a driver is loaded; the build
    # settings' CUDA_VERSION says the same on a host without a GPU.
    built_cuda = re.match(r"(\d+\.\d+)", settings.get("CUDA_VERSION", ""))
    return TorchConfig(
        cuda_runtime=runtime.group(1) if runtime else built_cuda.group(1) if built_cuda else None,
        cudnn=cudnn.group(1) if cudnn else None,
        cxx11_abi=int(abi.group(1)) if abi else None,
        settings=settings,
    )


def cxx11_abi_problem(torch_flag: bool, config: TorchConfig) -> str | None:
    """torch._C._GLIBCXX_USE_CXX11_ABI must agree with the flag torch was compiled with."""
    # Builds from 2.7 on no longer print the flag: the compiler default (1) applies.
    built = config.cxx11_abi if config.cxx11_abi is not None else 1
    if int(bool(torch_flag)) == built:
        return None
    return (
        f"torch._C._GLIBCXX_USE_CXX11_ABI is {bool(torch_flag)} but torch.__config__.show() says it "
        f"was compiled with -D_GLIBCXX_USE_CXX11_ABI={built}: extensions built for one ABI fail with "
        "'undefined symbol ...RKSs...' in the other. Fix: reinstall torch from one source (pip wheels "
        "and conda packages differ) and rebuild extensions against it"
    )


def cudnn_problem(runtime: tuple[int, int, int] | None, compiled: tuple[int, ...] | None) -> str | None:
    if runtime is None or compiled is None:
        return None
    if runtime[0] != compiled[0] or tuple(runtime[:2]) < tuple(compiled[:2]):
        r, c = ".".join(map(str, runtime)), ".".join(map(str, compiled))
        return (
            f"cuDNN {r} is loaded but torch was compiled against cuDNN {c}: convolutions fail or fall "
            "back. Fix: install the cuDNN torch pins (pip: the nvidia-cudnn-cuXX version in torch's "
            "requirements) and make sure no other libcudnn shadows it on LD_LIBRARY_PATH"
        )
    return None


# --------------------------------------------------------------------------
# ABI of the interpreter: wheel tags and extension suffixes
# --------------------------------------------------------------------------


def wheel_tags(wheel_metadata: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines() if line.startswith("Tag:")]


def wheel_tag_problem(tags: Sequence[str], py: tuple[int, int], abiflags: str = "") -> str | None:
    """torch's WHEEL tag must be cpXY-cpXY (or abi3 from an older cpXY) for the running interpreter."""
    want = f"cp{py[0]}{py[1]}"
    for tag in tags:
        parts = tag.split("-")
        if len(parts) != 3:
            continue
        interp, abi, _plat = parts
        if abi == want + abiflags and interp == want:
            return None
        if abi == "abi3" and interp.startswith("cp"):
            try:
                if (int(interp[2]), int(interp[3:])) <= tuple(py):
                    return None
            except ValueError:
                continue
    return (
        f"torch's wheel is tagged {', '.join(tags) or 'nothing'} but this is CPython {py[0]}.{py[1]}{abiflags} "
        f"(needs {want}-{want}{abiflags}): its extension modules fail with 'dynamic module does not define "
        "module export function (PyInit__C)'. Fix: install torch with the image's own python "
        f"(python{py[0]}.{py[1]} -m pip install torch ...)"
    )


_CPYTHON_SUFFIX = re.compile(r"(\.cpython-[^./]+\.so)$")


def foreign_extension(filename: str, ext_suffixes: Sequence[str]) -> bool:
    """True for a CPython extension module built for another interpreter or platform."""
    m = _CPYTHON_SUFFIX.search(filename)
    return bool(m) and m.group(1) not in ext_suffixes


# --------------------------------------------------------------------------
# PyG extensions: wheel local versions and compiled CUDA versions
# --------------------------------------------------------------------------


def pyg_expected_local(torch_version: str, torch_cuda: str | None) -> str:
    """torch 2.9.1 + CUDA 12.8 -> 'pt29cu128' (data.pyg.org's local version)."""
    major, minor = major_minor(torch_version)
    cu = "cpu" if not torch_cuda else "cu" + "".join(str(p) for p in major_minor(torch_cuda))
    return f"pt{major}{minor}{cu}"


def pyg_local_problem(name: str, version: str, torch_version: str, torch_cuda: str | None) -> str | None:
    """'2.1.2+pt29cu128' must name the installed torch's major.minor and CUDA."""
    if "+" not in version:
        return None  # a source build: no local version to compare
    local = version.split("+", 1)[1]
    want = pyg_expected_local(torch_version, torch_cuda)
    if not re.match(r"^pt\d+(cu\d+|cpu)$", local) or local == want:
        return None
    dist = PYG_DISTRIBUTIONS.get(name, name)
    idx = f"torch-{base_version(torch_version)}+{want[want.index('cu') :] if 'cu' in want else 'cpu'}"
    return (
        f"{name} {version} was built for {local}, but the installed torch is {torch_version} "
        f"({want}): its kernels link another torch/CUDA ABI. Fix: pip install --force-reinstall "
        f"{dist} -f https://data.pyg.org/whl/{idx}.html"
    )


def pyg_cuda_problem(name: str, ext_cuda: int | None, torch_cuda: str | None, extensions: str = "cuda") -> str | None:
    """Extension's cuda_version() (e.g. 12080) must be > 0 and equal torch's CUDA major.minor;
    for a cell that declares CPU-only extensions (extensions: cpu) it must say CPU-only."""
    if torch_cuda is None:
        return None
    got = cuda_int(ext_cuda) if ext_cuda is not None else None
    want = major_minor(torch_cuda)
    dist = PYG_DISTRIBUTIONS.get(name, name)
    if extensions == "cpu":
        if got is None:
            return None
        return (
            f"{name} has CUDA {fmt_mm(got)} kernels but the cell declares extensions: cpu; "
            "the manifest does not describe the image. Fix: set the CUDA family's 'extensions' to cuda"
        )
    if got is None:
        return (
            f"{name} is a CPU-only build (cuda_version() == {ext_cuda}) next to a CUDA {torch_cuda} "
            f"torch: its GPU kernels are missing. Fix: pip install {dist} from the CUDA wheel index "
            f"(https://data.pyg.org/whl/torch-<ver>+cu{want[0]}{want[1]}.html)"
        )
    if got != want:
        return (
            f"{name} was compiled with CUDA {fmt_mm(got)} but torch with CUDA {torch_cuda}: 'Detected "
            "that PyTorch and torch_scatter were compiled with different CUDA versions'. Fix: install "
            f"the {dist} wheel for cu{want[0]}{want[1]} or rebuild it against this torch"
        )
    return None


# --------------------------------------------------------------------------
# Loaded libraries (/proc/self/maps)
# --------------------------------------------------------------------------


def mapped_paths(maps_text: str) -> list[str]:
    paths = []
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            path = parts[5].strip()
            if path not in paths:
                paths.append(path)
    return paths


def loaded_library(paths: Iterable[str], stem: str) -> list[tuple[str, int | None]]:
    """Paths of `stem`.so.N in a maps listing, with N (the SONAME major) when present."""
    out = []
    rx = re.compile(rf"/{re.escape(stem)}\.so(?:\.(\d+))?[\d.]*$")
    for p in paths:
        m = rx.search(p)
        if m:
            out.append((p, int(m.group(1)) if m.group(1) else None))
    return out


def dist_cuda_major(dist_name: str) -> int | None:
    """'nvidia-nccl-cu13' -> 13."""
    m = re.search(r"-cu(\d+)$", dist_name.lower().replace("_", "-"))
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------
# Small thresholds
# --------------------------------------------------------------------------

SHM_MIN_BYTES = 1 << 30


def shm_warning(shm_bytes: int | None) -> str | None:
    if shm_bytes is None or shm_bytes >= SHM_MIN_BYTES:
        return None
    return (
        f"/dev/shm is {shm_bytes // (1 << 20)} MiB (< 1 GiB): DataLoader workers and inductor's "
        "compile workers exchange tensors through it and die with 'bus error'. Run the container "
        "with --shm-size=1g (or --ipc=host)"
    )


def nvcc_problem(
    nvcc: tuple[int, int] | None,
    cell_cuda: tuple[int, int] | None,
    torch_cuda: tuple[int, int] | None,
) -> str | None:
    if nvcc is None:
        return (
            "nvcc was not found (neither $CUDA_HOME/bin/nvcc nor on PATH): 'CUDA_HOME environment "
            "variable is not set'. Fix: install the CUDA toolkit's compiler (a devel image) and set "
            "CUDA_HOME=/usr/local/cuda"
        )
    if torch_cuda is not None and nvcc[0] != torch_cuda[0]:
        return (
            f"nvcc is CUDA {fmt_mm(nvcc)} but torch was built with CUDA {fmt_mm(torch_cuda)}: "
            "torch.utils.cpp_extension refuses mismatched majors ('The detected CUDA version mismatches "
            "the version that was used to compile PyTorch'). Fix: use a toolkit of the same major "
            f"({torch_cuda[0]}.x) or a torch built for CUDA {nvcc[0]}"
        )
    if cell_cuda is not None and nvcc != cell_cuda:
        return (
            f"nvcc is CUDA {fmt_mm(nvcc)} but the cell declares toolkit {fmt_mm(cell_cuda)}: the image "
            "was built from another base than its label says. Fix: rebuild the image or correct its manifest"
        )
    return None


# --------------------------------------------------------------------------
# Reading failures: what an error text means and how to fix it
# --------------------------------------------------------------------------

_FAILURE_HINTS: tuple[tuple[str, str], ...] = (
    (
        "no kernel image is available",
        "the binary has no SASS/PTX for this GPU's architecture: rebuild it with this GPU in "
        "TORCH_CUDA_ARCH_LIST, or install a wheel built for it",
    ),
    (
        "provided PTX was compiled with an unsupported toolchain",
        "PTX from a newer CUDA than the driver supports cannot be JIT-compiled (minor-version "
        "compatibility): upgrade the driver, or ship SASS for this GPU",
    ),
    (
        "does not define module export function",
        "an extension module built for another Python version: reinstall it with this interpreter",
    ),
    (
        "undefined symbol",
        "an extension built against another torch (version or CXX11 ABI): reinstall the wheel matching "
        "this torch (e.g. data.pyg.org/whl/torch-<ver>+<cuda>.html) or rebuild it from source",
    ),
    (
        "cannot open shared object file",
        "a shared library it links is missing from the image or not on the loader path: install the "
        "package that ships it (pip's nvidia-* wheels for CUDA libraries) or fix LD_LIBRARY_PATH",
    ),
    (
        "CUBLAS_STATUS",
        "cuBLAS failed: a libcublas from another CUDA release is loaded first (check LD_LIBRARY_PATH), "
        "or the GPU is out of memory",
    ),
    (
        "CUDNN_STATUS",
        "cuDNN failed: a libcudnn other than the one torch pins is loaded first (check LD_LIBRARY_PATH)",
    ),
    (
        "uid not found",
        "this uid has no /etc/passwd entry and $USER/$LOGNAME are unset, so getpass.getuser() "
        "fails (torch's inductor calls it on import): set ENV USER=<name> in the image, or run "
        "with a uid the image's /etc/passwd knows",
    ),
    (
        "out of memory",
        "the GPU is out of memory: other processes hold it (nvidia-smi) or fewer parallel workers (-n) are needed",
    ),
)


# A module the suite imports, and the declaration that makes the suite ask for it.
DECLARED_BY = {
    "torch": "the target holds torch (targets.<name>.torch unset or true); declare targets.<name>.torch: false",
    "triton": "the 'torch_compile' feature; drop it from targets.<name>.features",
    "torch_geometric": "the 'pyg' feature; drop it from targets.<name>.features",
    "ray": "the 'ray' feature; drop it from targets.<name>.features",
    "marimo": "the 'marimo' feature; drop it from targets.<name>.features",
    **{e: f"pyg_extensions: [{e}]; drop it from targets.<name>.pyg_extensions" for e in PYG_EXTENSIONS},
}


def missing_module_hint(text: str) -> str | None:
    """For "No module named 'X'" where X is what a declaration asks for: install it, or drop the declaration
    (where the image is meant to be without it)."""
    m = re.search(r"No module named '([\w.]+)'", text)
    if not m or m.group(1).split(".")[0] not in DECLARED_BY:
        return None
    name = m.group(1).split(".")[0]
    return (
        f"the image lacks {name}, which the cell asks for by {DECLARED_BY[name]}: install {name} in the image, "
        "or, if it is meant to be without it, change the declaration"
    )


def failure_hint(text: str) -> str | None:
    """The fix for a known error text, else None."""
    missing = missing_module_hint(text)
    if missing:
        return missing
    low = text.lower()
    for needle, hint in _FAILURE_HINTS:
        if needle.lower() in low:
            return hint
    return None


def modules_to_import(cell: Cell) -> list[str]:
    """Modules each checked in a fresh interpreter: torch where the image holds it (the matrix says), and
    what the cell's features bring."""
    mods = ["torch"] if cell.holds_torch else []
    if cell.declares("torch_compile") and cell.cuda is not None:  # inductor on the CPU needs no triton
        mods.append("triton")
    if cell.declares("pyg"):  # torch_geometric itself: test_pyg's probe imports it in a fresh process
        mods.extend(cell.pyg_extensions)
    for feature in ("ray", "marimo"):
        if cell.declares(feature):
            mods.append(feature)
    return mods


# The probes the smoke checks share, (probe, arguments): their fixtures and probes_to_start ask for the
# same, so a probe the session started early is the one a fixture takes.
KERNELS_PROBE = ("kernels", ())
COMPILE_CUDA_PROBE = ("compile", ("--device", "cuda"))


def pyg_probe(cell: Cell, gpu_ok: bool) -> tuple[str, tuple[str, ...]]:
    return "pyg", ("--extensions", ",".join(cell.pyg_extensions), *(("--gpu",) if gpu_ok else ()))


def collection_skip(markers: Collection[str], pyg_extension: str | None, cell: Cell) -> str | None:
    """Why a check with these markers does not apply to the cell (None: it does), from what the cell
    declares alone: a feature it lacks, a PyG extension it does not list, torch it does not hold, no CUDA
    toolkit, or, for a GPU check, a CPU-only cell. Whether a GPU is there is the session's business.
    tests/unit/test_suite_declarations.py proves with it that no check can fail on a module its cell
    did not declare."""
    for feature in FEATURES:
        if feature in markers and not cell.declares(feature):
            return cell.skip_reason(feature)
    if pyg_extension is not None and pyg_extension not in cell.pyg_extensions:
        return f"cell {cell.id} declares no PyG extension {pyg_extension!r}"
    if "torch" in markers and not cell.holds_torch:
        return f"cell {cell.id} holds no torch (targets.{cell.target or '<target>'}.torch: false): no torch checks"
    if "cuda" in markers and cell.cuda is None:
        return f"cell {cell.id} declares no CUDA toolkit (cuda: null, a CPU-only description)"
    if "gpu" in markers and cell.cuda is None:  # a CPU-only cell: no GPU check applies, even on a GPU runner
        return f"cell {cell.id} is CPU-only (cuda: null): no GPU checks"
    return None


def probes_to_start(
    cell: Cell, markexpr: str, keyword: str, whole_suite: bool, has_torch: bool, driver_loads: bool
) -> list[tuple[str, tuple[str, ...]]]:
    """The smoke checks' slowest probes, for the controller to start before its workers exist.

    Only for a run of the whole smoke suite (no -k, no single files, no `not`/`and` in -m), where the
    checks that take them will run. Without a loadable driver the GPU checks will not run: then only
    PyG's, which imports and checks on the CPU too, and assumes no GPU (the fixture asks the same)."""
    words = set(markexpr.split())
    if keyword or not whole_suite or "smoke" not in words or words & {"not", "and"}:
        return []
    if not has_torch or not cell.holds_torch:
        return []
    gpu = driver_loads and cell.cuda is not None
    probes = []
    if gpu:
        probes.append(KERNELS_PROBE)
        if cell.declares("torch_compile"):
            probes.append(COMPILE_CUDA_PROBE)
    if cell.declares("pyg"):
        probes.append(pyg_probe(cell, gpu))
    return probes


# --------------------------------------------------------------------------
# A locked environment: installed distributions against the image's uv.lock
# --------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_for_here(lock: Mapping, marker_true) -> dict[str, str]:
    """Name -> version of what ``uv sync --frozen --no-dev`` installs from ``lock`` (a parsed uv.lock)
    on this interpreter: the graph from the virtual/editable root, each edge kept where
    ``marker_true(marker)`` holds, extras followed."""
    packages = [p for p in lock.get("package", []) if isinstance(p, dict) and "name" in p]
    by_name: dict[str, list[dict]] = {}
    for p in packages:
        by_name.setdefault(_norm(p["name"]), []).append(p)
    roots = {id(p) for p in packages if set(p.get("source") or {}) & {"virtual", "editable"}}
    want: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    stack: list[tuple[dict, str]] = [(p, "") for p in packages if id(p) in roots]
    while stack:
        pkg, extra = stack.pop()
        key = (_norm(pkg["name"]), pkg.get("version", ""), extra)
        if key in seen:
            continue
        seen.add(key)
        if id(pkg) not in roots:  # the project itself is not installed
            want[key[0]] = pkg.get("version", "")
        edges = list(pkg.get("dependencies", [])) if not extra else []
        if extra:
            edges = list((pkg.get("optional-dependencies") or {}).get(extra, []))
        for dep in edges:
            if not isinstance(dep, dict) or (dep.get("marker") and not marker_true(dep["marker"])):
                continue
            candidates = by_name.get(_norm(dep.get("name", "")), [])
            if "version" in dep:
                candidates = [c for c in candidates if c.get("version") == dep["version"]]
            if not candidates:
                continue
            target = candidates[0]
            stack.append((target, ""))
            stack.extend((target, e) for e in dep.get("extra", []) or [])
    return want


def lock_drift(want: Mapping[str, str], installed: Mapping[str, str], tools: Iterable[str] = ()) -> list[str]:
    """What differs between the lock (``want``) and the environment (``installed``), one line each.
    ``tools`` (a venv's own pip, ...) may be installed without being locked."""
    have = {_norm(k): v for k, v in installed.items()}
    out = [f"{n}: locked {v}, not installed" for n, v in sorted(want.items()) if n not in have]
    out += [f"{n}: locked {v}, installed {have[n]}" for n, v in sorted(want.items()) if n in have and have[n] != v]
    spare = {_norm(t) for t in tools}
    out += [f"{n}: installed {v}, not in the lock" for n, v in sorted(have.items()) if n not in want and n not in spare]
    return out

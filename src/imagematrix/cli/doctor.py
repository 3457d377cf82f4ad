"""`invoke doctor`: can the selected cells be built and tested on this host? Exit 0 only if so.

The build side is preflight's own checks (engine, BuildKit, disk, memory, base
images, CA bundle). The test side: how containers get GPUs (NVIDIA runtime or a
CDI spec), a probe container that must really see them (driver_probe.py, run in
an image already here: a built cell or a base, so it works before any build and
without a registry), and the driver against each selected cell's CUDA
(cuda_compat: below the branch minimum fails, without PTX JIT warns).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

from imagematrix.build.buildkit import BuildOptions, describe_builder
from imagematrix.build.engine import base_image_ids, docker_client
from imagematrix.build.preflight import Check, base_images, checks, print_checks
from imagematrix.core import cuda_compat, driver_probe, platform_os
from imagematrix.core.contract import major_minor
from imagematrix.core.errors import ImagematrixError
from imagematrix.matrix.plan import Plan

PROBE_SOURCE = Path(driver_probe.__file__)
PROBE_TIMEOUT = 120
# Runs the probe with whichever Python the image has; 127 when it has none (the next image is tried).
PROBE_SHELL = (
    'for p in python3 python; do if command -v "$p" >/dev/null 2>&1; then exec "$p" -c "$IMAGEMATRIX_PROBE"; fi; '
    'done; echo "no python in this image" >&2; exit 127'
)
NO_GPU_HINT = "`invoke doctor --build-only` checks only what building needs"


def probe_images(plan: Plan, client) -> list[str]:
    """Images already here that may run the probe: the selection's built cells, then their bases."""
    refs = [step.cell.ref for step in plan.steps]
    present = base_image_ids(client, refs)
    bases = base_image_ids(client, base_images(plan))
    return [r for r, i in present.items() if i] + [r for r, i in bases.items() if i]


def run_probe(client, image: str, device_requests: list[dict]) -> tuple[int | None, str]:
    """Exit code and output of the driver probe in a throw-away container of ``image``."""
    from docker.errors import DockerException

    container = None
    try:
        container = client.containers.run(
            image,
            entrypoint=["sh", "-c", PROBE_SHELL],
            command=[],
            detach=True,
            environment={"IMAGEMATRIX_PROBE": PROBE_SOURCE.read_text()},
            device_requests=device_requests,
            labels={"imagematrix.cli.doctor": "probe"},
        )
        code = int(container.wait(timeout=PROBE_TIMEOUT).get("StatusCode", 1))
        return code, container.logs().decode(errors="replace")
    except DockerException as exc:
        return None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # a probe that hangs: requests' ReadTimeout
        return None, f"no answer in {PROBE_TIMEOUT}s ({type(exc).__name__})"
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)


def host_has_gpu() -> str | None:
    """`nvidia-smi -L`'s first line when the host itself sees an NVIDIA GPU, else None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((line for line in out.splitlines() if line.startswith("GPU ")), None)


def driver_checks(plan: Plan, seen: dict) -> list[Check]:
    """The driver the probe saw against each selected CUDA version."""
    raw = seen.get("driver_cuda")
    driver_cuda = cuda_compat.cuda_int(raw) if isinstance(raw, int) else None
    if driver_cuda is None:
        return [Check("driver", False, "the probe could not read the driver's CUDA version (cuDriverGetVersion)")]
    version = seen.get("driver")
    found = []
    for cuda in dict.fromkeys(s.cell.cuda.version for s in plan.steps):
        d = cuda_compat.driver_policy(driver_cuda, major_minor(cuda), version, subject=f"CUDA {cuda} cells")
        found.append(Check(f"driver vs CUDA {cuda}", d.ok, d.message, warning=d.ok and not d.ptx_jit))
    return found


def wsl_check(kind: str | None, lib: Path = platform_os.WSL_LIB) -> list[Check]:
    """Under Windows (WSL), what the GPU path there is, and whether its pieces are in place."""
    if kind is None:
        return []
    if kind == "WSL1":
        return [
            Check(
                "WSL",
                False,
                "this is WSL1, which runs no Docker engine and sees no GPU. Fix: in PowerShell, "
                "`wsl --set-version <distro> 2`, then enable the distro in Docker Desktop (Settings > Resources > WSL "
                "integration)",
            )
        ]
    has = sorted(p.name for p in lib.glob("libcuda.so*")) if lib.is_dir() else []
    if not has:
        return [
            Check(
                "WSL2",
                False,
                f"no libcuda in {lib}: the Windows NVIDIA driver does not reach this distro. "
                "Fix: install or update the NVIDIA driver on Windows, then `wsl --update` and `wsl --shutdown` in "
                "PowerShell",
            )
        ]
    return [
        Check(
            "WSL2",
            True,
            f"Linux under Windows: the Windows driver's {has[0]} is in {lib}; Docker Desktop hands "
            "GPUs to containers with its NVIDIA runtime (--gpus), which the checks below use",
        )
    ]


def gpu_checks(plan: Plan, client, *, need_gpu: bool) -> list[Check]:
    from imagematrix.testing.containers import GPU_FIX, detect_gpu

    found_wsl = wsl_check(platform_os.wsl())
    if found_wsl and not found_wsl[0].ok and need_gpu:
        return found_wsl
    access = detect_gpu(client.info())
    if not access.requested:
        host = host_has_gpu()
        seen = f"this host has {host}, but containers get no GPU" if host else "no NVIDIA GPU is visible here"
        detail = f"{seen} ({access.how.split('. GPU checks')[0]}): GPU tests cannot run on this host"
        detail += f". {GPU_FIX}" if host else "; run them on a GPU runner"
        if not need_gpu:
            return [Check("GPU", True, f"{detail} (--build-only: not required)", warning=True)]
        return [Check("GPU", False, f"{detail}. {NO_GPU_HINT}")]
    found = [*found_wsl, Check("GPU access", True, access.how)]
    images = probe_images(plan, client)
    if not images:
        found.append(
            Check(
                "GPU probe",
                False,
                (
                    "no image of the selection is here to run the probe in (no built cell, no base image): "
                    "make the bases first (see the base image line above), then run doctor again"
                ),
            )
        )
        return found
    tried = []
    for image in images[:5]:
        code, out = run_probe(client, image, [dict(r) for r in access.device_requests])
        if code == 127:
            tried.append(f"{image}: no python")
            continue
        try:
            seen = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            found.append(
                Check(
                    "GPU probe",
                    False,
                    (f"the probe in {image} failed (exit {code}): {out.strip()[-400:] or 'no output'}. {GPU_FIX}"),
                )
            )
            return found
        devices = seen.get("devices") or []
        if seen.get("error") or not devices:
            why = seen.get("error") or "cuInit succeeded but no device is visible"
            found.append(Check("GPU probe", False, f"a container of {image} does not see the GPU: {why}. {GPU_FIX}"))
            return found
        names = ", ".join(
            f"GPU {d['index']} {d['name']} (sm_{d['compute_capability'].replace('.', '')})" for d in devices
        )
        found.append(
            Check("GPU probe", True, f"a container of {image} sees {names}; driver {seen.get('driver') or '?'}")
        )
        return found + driver_checks(plan, seen)
    found.append(
        Check(
            "GPU probe",
            False,
            (
                f"none of the images here has a Python to run the probe ({'; '.join(tried)}): build one cell "
                "(`invoke build --target devel`, it is tested right after) and run doctor again"
            ),
        )
    )
    return found


def run_doctor(plan: Plan, options: BuildOptions, *, need_gpu: bool = True, console: Console) -> int:
    """Print every check; 0 when the selection can be built and tested here, else 1."""
    try:
        client = docker_client(timeout=30)
    except ImagematrixError as exc:
        found = [Check("engine", False, str(exc))]
        if need_gpu:
            found.append(Check("GPU", False, "cannot be checked without the engine (containers get the GPUs)"))
    else:
        found = checks(plan, options, describe_builder(), client)
        found += gpu_checks(plan, client, need_gpu=need_gpu)
    print_checks(found, console, "doctor")
    failed = [c.name for c in found if not c.ok]
    cells = f"{len(plan.steps)} cell(s) of {plan.matrix.path}"
    if failed:
        console.print(
            f"doctor: {len(failed)} problem(s) for {cells}: {', '.join(failed)}", markup=False, highlight=False
        )
        return 1
    can = "build and test" if need_gpu else "build (GPU tests not checked: --build-only)"
    console.print(f"doctor: this host can {can} {cells}", markup=False, highlight=False)
    return 0

"""`invoke doctor`'s pure parts: the probe's parsing, and the driver against each selected CUDA."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from imagematrix.cli import doctor
from imagematrix.core import driver_probe
from imagematrix.matrix.plan import Selection, make_plan


def test_kernel_module_version_from_proc_text():
    assert (
        driver_probe.kernel_module(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue Oct 14 2025\nGCC version: gcc 13"
        )
        == "580.159.04"
    )
    assert (
        driver_probe.kernel_module("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build")
        == "570.86.15"
    )
    assert driver_probe.kernel_module("no driver here") is None


def test_the_probe_is_stdlib_only_and_says_why_without_a_driver():
    """It runs with `python -c` in any image: nothing but the standard library."""
    tree = ast.parse(doctor.PROBE_SOURCE.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # This CPU host has no libcuda: the probe answers with the reason, not a traceback.
    out = subprocess.run(
        [sys.executable, "-c", doctor.PROBE_SOURCE.read_text()], capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    if seen["libcuda"] is None:
        assert "libcuda.so.1 cannot be loaded" in seen["error"] and seen["devices"] == []


def _checks(matrix, driver_cuda: int, driver: str):
    p = make_plan(matrix, Selection())
    return {c.name: c for c in doctor.driver_checks(p, {"driver_cuda": driver_cuda, "driver": driver})}


def test_the_gpu_machines_driver_runs_every_platform_family(platform_matrix):
    found = _checks(platform_matrix, 13000, "580.159.04")
    assert set(found) == {"driver vs CUDA 12.8", "driver vs CUDA 13.0"}
    assert all(c.ok and not c.warning for c in found.values()), found


def test_an_old_driver_fails_the_new_major_and_warns_below_native(platform_matrix):
    found = _checks(platform_matrix, 12020, "535.54.03")
    assert not found["driver vs CUDA 13.0"].ok
    assert "upgrade the host driver to >= 580.65.06" in found["driver vs CUDA 13.0"].detail
    older = found["driver vs CUDA 12.8"]
    assert older.ok and older.warning and "PTX" in older.detail


def test_no_driver_cuda_version_is_a_failure(example_matrix):
    p = make_plan(example_matrix, Selection())
    [check] = doctor.driver_checks(p, {"driver_cuda": None})
    assert not check.ok and "cuDriverGetVersion" in check.detail


def test_wsl2_is_recognised_with_its_gpu_path(tmp_path):
    from imagematrix.cli.doctor import wsl_check
    from imagematrix.core import platform_os

    release = tmp_path / "osrelease"
    release.write_text("6.6.36.6-microsoft-standard-WSL2\n")
    lib = tmp_path / "wsl-lib"
    assert platform_os.wsl(release, lib) == "WSL2"
    assert (
        not wsl_check("WSL2", lib)[0].ok and "update the NVIDIA driver on Windows" in wsl_check("WSL2", lib)[0].detail
    )
    lib.mkdir()
    (lib / "libcuda.so.1").write_text("")
    check = wsl_check("WSL2", lib)[0]
    assert check.ok and "libcuda.so.1" in check.detail and "Docker Desktop" in check.detail
    release.write_text("4.4.0-19041-Microsoft\n")
    assert platform_os.wsl(release, tmp_path / "none") == "WSL1"
    assert "wsl --set-version" in wsl_check("WSL1")[0].detail
    release.write_text("6.12.0-amd64\n")
    assert platform_os.wsl(release, lib) is None and wsl_check(None) == []

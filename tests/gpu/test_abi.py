"""Area 1: torch's ABI against this interpreter, and torch's build against the cell."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata as md
import importlib.util
import os
import site
import sys
import sysconfig

import gpu_host
import gpu_policy
import pytest
from gpu_support import ensure

pytestmark = pytest.mark.smoke


def test_python_matches_cell(cell):
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    ensure(
        running == cell.python,
        (
            f"this interpreter is Python {running} ({sys.executable}) but cell {cell.id} declares "
            f"Python {cell.python}: the image's python is not the one it is labelled with, so every "
            "wheel chosen for it may be for the wrong ABI. Fix: rebuild the image so that `python` is "
            f"{cell.python}, or correct the manifest"
        ),
    )


@pytest.mark.torch
def test_torch_wheel_tag_matches_interpreter():
    try:
        wheel = md.distribution("torch").read_text("WHEEL")
    except md.PackageNotFoundError:
        spec = importlib.util.find_spec("torch")
        if spec is None:
            pytest.fail(
                f"torch is not installed for {sys.executable} (no module, no distribution metadata); "
                "every torch check needs it. Fix: install torch in the image, or test the interpreter "
                "the image's torch belongs to; if the image is meant to hold no torch, declare "
                "targets.<name>.torch: false and its torch checks skip",
                pytrace=False,
            )
        pytest.fail(
            f"torch is importable (from {spec.origin}) but has no installed distribution metadata "
            "(copied in by hand?); reinstall it with pip so its wheel tag can be checked",
            pytrace=False,
        )
    if wheel is None:
        pytest.skip(
            "torch was not installed from a wheel (no WHEEL metadata, e.g. conda): EXT_SUFFIX is checked instead"
        )
    problem = gpu_policy.wheel_tag_problem(gpu_policy.wheel_tags(wheel), sys.version_info[:2], sys.abiflags)
    ensure(problem is None, problem)


@pytest.mark.torch
def test_torch_C_has_interpreter_ext_suffix():
    import torch

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    path = torch._C.__file__
    ensure(
        path.endswith(suffix),
        (
            f"torch._C is {os.path.basename(path)} but this interpreter loads extensions ending in {suffix}: "
            "'dynamic module does not define module export function (PyInit__C)'. Fix: reinstall torch "
            f"with {sys.executable} -m pip"
        ),
    )


def test_no_extension_modules_for_another_python():
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    roots = [p for p in {*site.getsitepackages(), site.getusersitepackages()} if os.path.isdir(p)]
    foreign = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            foreign.extend(os.path.join(dirpath, f) for f in files if gpu_policy.foreign_extension(f, suffixes))
    ensure(
        not foreign,
        (
            f"{len(foreign)} extension module(s) in {', '.join(roots)} were built for another interpreter "
            f"(this one loads {', '.join(s for s in suffixes if s != '.so')}): importing them fails with "
            "'dynamic module does not define module export function'. Fix: reinstall their packages with "
            f"{sys.executable} -m pip. First ones:\n  " + "\n  ".join(foreign[:15])
        ),
    )


@pytest.mark.torch
def test_cxx11_abi_matches_build():
    import torch

    problem = gpu_policy.cxx11_abi_problem(
        torch._C._GLIBCXX_USE_CXX11_ABI, gpu_policy.parse_torch_config(torch.__config__.show())
    )
    ensure(problem is None, problem)


def test_imports_in_fresh_process(fresh_module):
    code = f"import {fresh_module}"
    rc, out, timed_out = gpu_host.run_command([sys.executable, "-c", code], timeout=180)
    if timed_out:
        pytest.fail(f"`python -c '{code}'` hung for 180s; its output:\n{out[-3000:]}", pytrace=False)
    if rc != 0:
        hint = gpu_policy.failure_hint(out) or "read the traceback above; the package may be broken or missing"
        pytest.fail(f"`python -c '{code}'` failed (exit {rc}):\n{out[-3000:]}\nFix: {hint}", pytrace=False)


@pytest.mark.torch
@pytest.mark.cuda
def test_torch_cuda_build_matches_cell(cell):
    import torch

    config = gpu_policy.parse_torch_config(torch.__config__.show())
    problems = []
    if torch.version.cuda is None:
        problems.append(
            f"torch {torch.__version__} is a CPU-only build but cell {cell.id} declares CUDA {cell.torch_cuda}: "
            f"every GPU job would fail or run on the CPU. Fix: install torch from "
            f"https://download.pytorch.org/whl/cu{cell.torch_cuda.replace('.', '')}"
        )
    else:
        if torch.version.cuda != cell.torch_cuda:
            problems.append(
                f"torch.version.cuda is {torch.version.cuda} but cell {cell.id} declares torch_cuda "
                f"{cell.torch_cuda} (toolkit {cell.cuda}): the image has another torch build than its label. "
                f"Fix: install torch from https://download.pytorch.org/whl/cu{cell.torch_cuda.replace('.', '')} "
                "or correct the manifest"
            )
        if config.cuda_runtime != torch.version.cuda:
            problems.append(
                f"torch.__config__.show() says 'CUDA Runtime {config.cuda_runtime}' but torch.version.cuda is "
                f"{torch.version.cuda}: a patched or mixed torch install. Fix: reinstall torch"
            )
        if not config.use_cuda:
            problems.append(
                f"torch.__config__.show() has USE_CUDA={config.settings.get('USE_CUDA')}: torch was built "
                "without CUDA. Fix: install a CUDA build of torch"
            )
    ensure(not problems, "\n".join(problems))


@pytest.mark.torch
def test_cpu_cell_has_a_cpu_torch(cell):
    if cell.cuda is not None:
        pytest.skip(f"cell {cell.id} declares CUDA {cell.cuda}: test_torch_cuda_build_matches_cell checks its torch")
    import torch

    ensure(
        torch.version.cuda is None,
        f"cell {cell.id} is CPU-only (cuda: null) but torch {torch.__version__} is built for CUDA "
        f"{torch.version.cuda}: the image carries GBs of CUDA libraries its label says it has not. Fix: install a "
        "+cpu torch (a wheelhouse: build.wheelhouse), or declare the CUDA family it is",
    )


@pytest.mark.torch
def test_torch_version_matches_cell(cell):
    import torch

    if cell.torch is None:
        pytest.skip(f"cell {cell.id} does not pin torch; found torch {torch.__version__}")
    found = gpu_policy.base_version(torch.__version__)
    ensure(
        found == cell.torch,
        (
            f"torch is {torch.__version__} but cell {cell.id} pins {cell.torch}: the image resolved another "
            "torch than the matrix asked for. Fix: pin torch==" + cell.torch + " in the image's install step"
        ),
    )


@pytest.mark.torch
def test_collect_env_artifact(artifacts_dir):
    """Saves `python -m torch.utils.collect_env` for the report; asserts nothing about it."""
    import torch

    rc, out, timed_out = gpu_host.run_command([sys.executable, "-m", "torch.utils.collect_env"], timeout=180)
    path = artifacts_dir / "collect_env.txt"
    status = "timed out" if timed_out else f"exit {rc}"
    path.write_text(
        f"# python -m torch.utils.collect_env ({status})\n{out}\n\n# "
        f"torch.__config__.show()\n{torch.__config__.show()}\n"
    )
    print(f"saved {path} ({status})")

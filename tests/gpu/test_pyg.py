"""Area 5: PyG: import without warnings, declared compiled extensions, message passing on the GPU."""

from __future__ import annotations

import gpu_host
import gpu_policy
import pytest
from gpu_support import ensure, expect, require

pytestmark = pytest.mark.pyg

QUIET = ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning")


@pytest.fixture(scope="module")
def pyg(cell, gpu):
    return gpu_host.run_python(*gpu_policy.pyg_probe(cell, gpu.ok), timeout=420)


EXTENSIONS = [pytest.param(e, marks=pytest.mark.pyg_extension(e)) for e in gpu_policy.PYG_EXTENSIONS]


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
def test_import_torch_geometric_without_warnings(pyg):
    info = require(pyg)["info"]
    loud = [w for w in info["warnings"] if w["category"] not in QUIET]
    ensure(
        not loud,
        (
            f"importing torch_geometric {info['torch_geometric']} warned; PyG disables an extension whose "
            "import fails and only says so in a warning:\n  "
            + "\n  ".join(f"{w['category']} at {w['where']}: {w['message']}" for w in loud)
            + "\nFix: reinstall the extensions named above from the wheel index for this torch/CUDA"
        ),
    )
    print(f"torch_geometric {info['torch_geometric']} on torch {info['torch']}")


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extension_enabled_in_pyg(cell, pyg, ext):
    info = require(pyg)["info"]
    flag = gpu_policy.PYG_WITH_FLAGS[ext]
    err = info["import_errors"].get(ext)
    ensure(
        info["flags"].get(ext) is True,
        (
            f"cell {cell.id} declares {ext} but torch_geometric.typing.{flag} is {info['flags'].get(ext)}: PyG "
            f"disabled it{' because importing it failed: ' + err if err else ''}. "
            "Fix: "
            + (
                gpu_policy.failure_hint(err or "")
                or f"install {gpu_policy.PYG_DISTRIBUTIONS[ext]} for this torch/CUDA from data.pyg.org"
            )
        ),
    )


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
@pytest.mark.cuda
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extension_cuda_version_matches_torch(cell, pyg, ext):
    info = require(pyg)["info"]
    if ext in info["import_errors"]:
        pytest.fail(f"{ext} does not import: {info['import_errors'][ext]}", pytrace=False)
    problem = gpu_policy.pyg_cuda_problem(ext, info["cuda_versions"].get(ext), info["torch_cuda"], cell.extensions)
    ensure(problem is None, problem)
    if cell.extensions == "cpu":
        print(f"{ext}: a CPU-only build, as the cell declares (extensions: cpu)")


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extension_wheel_matches_torch(cell, pyg, ext):
    info = require(pyg)["info"]
    version = info["versions"].get(ext)
    ensure(
        version,
        f"{ext} is declared but no installed distribution {gpu_policy.PYG_DISTRIBUTIONS[ext]} was found",
    )
    if "+" not in version:
        pytest.skip(f"{ext} {version} has no local version (a source build): nothing to compare")
    problem = gpu_policy.pyg_local_problem(ext, version, info["torch"], info["torch_cuda"])
    ensure(problem is None, problem)


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extension_cpu_kernels_match_torch(cell, pyg, ext):
    info = require(pyg)["info"]
    if ext in info["import_errors"]:
        pytest.fail(f"{ext} does not import: {info['import_errors'][ext]}", pytrace=False)
    print(expect(pyg, f"cpu_kernels:{ext}"))


@pytest.mark.xdist_group("pyg")
@pytest.mark.smoke
@pytest.mark.gpu
@pytest.mark.parametrize("ext", EXTENSIONS)
def test_extension_kernels_match_cpu(cell, pyg, ext):
    if cell.extensions == "cpu":
        pytest.skip(f"cell {cell.id} declares CPU-only extensions (extensions: cpu): no CUDA kernels to run")
    info = require(pyg)["info"]
    if ext in info["import_errors"]:
        pytest.fail(f"{ext} does not import: {info['import_errors'][ext]}", pytrace=False)
    detail = pyg.data["checks"].get(f"kernels:{ext}", {}).get("detail", "")
    hint = gpu_policy.failure_hint(detail)
    print(expect(pyg, f"kernels:{ext}", f"Fix: {hint}" if hint else ""))


# --------------------------------------------------------------------------
# full: models on the GPU
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyg_models(cell):
    args = []
    if {"pyg_lib", "torch_sparse"} & set(cell.pyg_extensions):
        args.append("--sampler")
    if cell.declares("torch_compile"):
        args.append("--compile")
    return gpu_host.run_python("pyg_models", args, timeout=600)


@pytest.mark.xdist_group("pyg_models")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.parametrize("conv", ["GCNConv", "GATConv", "SAGEConv"])
def test_message_passing_forward_backward(pyg_models, conv):
    print(expect(pyg_models, conv))


@pytest.mark.xdist_group("pyg_models")
@pytest.mark.full
@pytest.mark.gpu
def test_neighbor_loader_batch(cell, pyg_models):
    if not {"pyg_lib", "torch_sparse"} & set(cell.pyg_extensions):
        pytest.skip(f"NeighborLoader needs pyg_lib or torch_sparse; cell {cell.id} declares neither")
    print(expect(pyg_models, "NeighborLoader"))


@pytest.mark.xdist_group("pyg_models")
@pytest.mark.full
@pytest.mark.gpu
@pytest.mark.torch_compile
def test_compile_gcn(pyg_models):
    print(expect(pyg_models, "compile_GCN"))

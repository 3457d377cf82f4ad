"""The GPU suite's pure logic (tests/gpu/gpu_policy.py), on the CPU, failing cases included."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))

import gpu_policy as gp

CONTRACT_CELL = {
    "schema": 1,
    "id": "cu12.8.1-py3.13-ray-runtime",
    "image": "plumiiume/cslr-exp-platform",
    "tag": "cu12.8.1-py3.13-ray-runtime",
    "ref": "plumiiume/cslr-exp-platform:cu12.8.1-py3.13-ray-runtime",
    "target": "ray-runtime",
    "kind": "runtime",
    "parent": "ray-devel",
    "relation": "slim",
    "lineage": ["devel", "ray-devel", "ray-runtime"],
    "cuda": "12.8.1",
    "torch_cuda": "12.8",
    "python": "3.13",
    "torch": "2.9.1",
    "features": ["cpp_extension", "torch_compile", "pyg", "ray"],
    "pyg_extensions": ["torch_scatter", "torch_sparse"],
    "input_hash": "sha256:abc",
}


def cell(**changes):
    data = dict(CONTRACT_CELL)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------


def test_contract_example_parses():
    c = gp.parse_cell(CONTRACT_CELL, "cell.json")
    assert c.id == "cu12.8.1-py3.13-ray-runtime"
    assert (c.kind, c.python, c.cuda, c.torch_cuda, c.torch) == (
        "runtime",
        "3.13",
        "12.8.1",
        "12.8",
        "2.9.1",
    )
    assert c.cuda_mm == (12, 8) and c.torch_cuda_mm == (12, 8)
    assert c.declares("ray") and not c.declares("marimo")
    assert c.pyg_extensions == ("torch_scatter", "torch_sparse")
    assert c.skip_reason("marimo") == "cell cu12.8.1-py3.13-ray-runtime declares no 'marimo' feature"


def test_toolkit_minor_may_differ_from_torch_cuda():
    c = gp.parse_cell(cell(cuda="13.1.1", torch_cuda="13.0"))
    assert c.cuda_mm == (13, 1) and c.torch_cuda_mm == (13, 0)


def test_unpinned_torch_is_none():
    assert gp.parse_cell(cell(torch="")).torch is None
    assert gp.parse_cell(cell(torch=...)).torch is None


def test_cuda_extension_implies_cpp_extension():
    c = gp.parse_cell(cell(features=["cuda_extension"], pyg_extensions=[]))
    assert c.declares("cpp_extension") and c.declares("cuda_extension")


def test_cpu_only_host_description_is_valid():
    c = gp.parse_cell(cell(cuda=None, torch_cuda=None, features=["cpp_extension"], pyg_extensions=[]))
    assert c.cuda is None and c.cuda_mm is None


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"schema": 2}, "key 'schema': 2 is not supported"),
        ({"kind": "dev"}, "key 'kind': 'dev' is not one of devel, runtime, host"),
        ({"python": "3"}, "key 'python': '3' is not a major.minor"),
        ({"python": ...}, "key 'python': None"),
        ({"cuda": "twelve"}, "key 'cuda': 'twelve' is not a toolkit version"),
        ({"torch_cuda": "12"}, "key 'torch_cuda': '12' is not a major.minor"),
        ({"torch_cuda": "13.0"}, "another CUDA major than the toolkit 12.8.1"),
        ({"cuda": None}, "'cuda' is null"),
        ({"features": ["ray", 3]}, "key 'features': must be a list of strings"),
        ({"features": "ray"}, "key 'features': must be a list"),
        ({"features": ["ray"]}, "lists PyG extensions but 'features' has no 'pyg'"),
        ({"pyg_extensions": ["torch_scater"]}, "unknown torch_scater (allowed: pyg_lib"),
        ({"relation": "copy"}, "key 'relation': 'copy' is not one of extends, slim or null"),
        ({"id": ""}, "key 'id': missing or empty"),
        ({"torch": "latest!"}, "key 'torch': 'latest!' is not a version"),
        ({"extensions": "rocm"}, "key 'extensions': 'rocm' is not one of cuda, cpu"),
        (
            {"extensions": "cpu", "features": ["cuda_extension"], "pyg_extensions": []},
            "'cuda_extension' contradicts extensions: cpu",
        ),
    ],
)
def test_invalid_manifest_names_key_and_allowed_values(changes, needle):
    with pytest.raises(gp.ManifestError) as err:
        gp.parse_cell(cell(**changes), "/etc/imagematrix/cell.json")
    assert needle in str(err.value)
    assert "/etc/imagematrix/cell.json" in str(err.value)


def test_all_problems_reported_at_once():
    with pytest.raises(gp.ManifestError) as err:
        gp.parse_cell(cell(kind="x", python="y"))
    assert "'kind'" in str(err.value) and "'python'" in str(err.value)


def test_cuda_extension_without_cuda_is_invalid():
    with pytest.raises(gp.ManifestError, match="'cuda_extension' needs a CUDA toolkit"):
        gp.parse_cell(cell(cuda=None, torch_cuda=None, features=["cuda_extension"], pyg_extensions=[]))


def test_not_json_and_not_object():
    with pytest.raises(gp.ManifestError, match=r"c.json: not valid JSON: line 1 column 2"):
        gp.parse_cell_text("{oops", "c.json")
    with pytest.raises(gp.ManifestError, match="expected a JSON object, got list"):
        gp.parse_cell_text("[]", "c.json")
    assert gp.parse_cell_text(json.dumps(CONTRACT_CELL), "c.json").source == "c.json"


def test_cell_path_precedence():
    exists = {"a.json", "b.json", gp.DEFAULT_CELL_PATH}.__contains__
    assert gp.choose_cell_path("a.json", {gp.CELL_ENV: "b.json"}, exists) == ("a.json", "--cell")
    assert gp.choose_cell_path(None, {gp.CELL_ENV: "b.json"}, exists) == ("b.json", gp.CELL_ENV)
    assert gp.choose_cell_path(None, {}, exists) == (gp.DEFAULT_CELL_PATH, "image")


@pytest.mark.parametrize(
    ("option", "env", "needle"),
    [
        ("missing.json", {}, "--cell missing.json: no such file"),
        (None, {gp.CELL_ENV: "gone.json"}, "IMAGEMATRIX_CELL=gone.json: no such file"),
        (None, {}, "no cell manifest: not given with --cell"),
    ],
)
def test_missing_manifest_explains_host_mode(option, env, needle):
    with pytest.raises(gp.ManifestError) as err:
        gp.choose_cell_path(option, env, lambda p: False)
    assert needle in str(err.value)
    assert "describe_host.py" in str(err.value)


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------


def test_version_helpers():
    assert gp.major_minor("12.8.1") == (12, 8)
    assert gp.version_tuple("580.159.04") == (580, 159, 4)
    assert gp.cuda_int(12080) == (12, 8) and gp.cuda_int(13000) == (13, 0) and gp.cuda_int(-1) is None
    assert gp.cudnn_int(8902) == (8, 9, 2) and gp.cudnn_int(91002) == (9, 10, 2) and gp.cudnn_int(None) is None
    assert gp.base_version("2.9.1+cu128") == "2.9.1"
    with pytest.raises(ValueError):
        gp.major_minor("x")


def test_nvcc_version():
    text = "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0"
    assert gp.parse_nvcc_version(text) == (13, 0)
    assert gp.parse_nvcc_full_version(text) == "13.0.88"
    assert gp.parse_nvcc_version("command not found") is None


# --------------------------------------------------------------------------
# Driver policy
# --------------------------------------------------------------------------


def test_native_driver_table_matches_nvidia():
    assert gp.NATIVE_DRIVER[(12, 8)] == "570.26"
    assert gp.NATIVE_DRIVER[(13, 0)] == "580.65.06"
    assert gp.NATIVE_DRIVER[(13, 1)] == "590.44.01"
    assert gp.MINOR_COMPAT_DRIVER == {11: "450", 12: "525", 13: "580"}
    assert gp.native_driver((12, 7)) == "570.26"  # no 12.7: the next toolkit's driver
    assert gp.native_driver((13, 9)) is None


def test_native_when_driver_is_new_enough():
    d = gp.driver_policy((13, 0), (13, 0), "580.159.04")
    assert d.ok and d.mode == "native" and d.ptx_jit
    assert "driver 580.159.04 supports CUDA <= 13.0" in d.message
    assert gp.driver_policy((13, 0), (12, 8), "580.159.04").mode == "native"


def test_minor_version_compatibility_message():
    d = gp.driver_policy((12, 2), (12, 8), "535.54.03")
    assert d.ok and d.mode == "minor-compat" and not d.ptx_jit
    assert d.message.startswith(
        "driver 535.54.03 supports CUDA <= 12.2; this image needs >= 570.26 for CUDA 12.8 native, "
        "or >= 525 with minor-version compatibility and no PTX JIT"
    )
    assert "unsupported toolchain" in d.message


def test_other_major_fails_and_names_the_driver_needed():
    d = gp.driver_policy((12, 2), (13, 0), "535.54.03", "this image's torch")
    assert not d.ok and d.mode == "unsupported"
    assert "this image's torch needs >= 580.65.06 for CUDA 13.0 native, or >= 580" in d.message
    assert "insufficient for CUDA runtime version" in d.message
    assert "cuda-compat-13-0" in d.message and "datacenter GPUs only" in d.message


def test_driver_below_branch_minimum_fails():
    d = gp.driver_policy((11, 0), (11, 8), "445.87")  # a pre-release 11.0 driver
    assert not d.ok and ">= 450 with minor-version compatibility" in d.message
    assert gp.driver_policy((11, 0), (11, 8), None).ok  # unknown version: the reported major decides


def test_unknown_future_toolkit_fails_without_table_entry():
    d = gp.driver_policy((13, 0), (14, 0), "580.159.04")
    assert not d.ok and "supports CUDA 14.0 natively" in d.message


@pytest.mark.parametrize(
    ("code", "needles"),
    [
        (100, ["CUDA_ERROR_NO_DEVICE", "--gpus all"]),
        (803, ["CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "compat"]),
        (804, ["CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "datacenter"]),
        (999, ["CUDA_ERROR_UNKNOWN", "nvidia-uvm"]),
        (34, ["CUDA_ERROR_STUB_LIBRARY", "stubs"]),
        (12345, ["CUresult (12345)", "nvidia-smi"]),
    ],
)
def test_cuinit_hints(code, needles):
    text = gp.cuinit_hint(code)
    assert f"({code})" in text
    for needle in needles:
        assert needle in text


def test_cuinit_hint_keeps_the_drivers_own_text():
    text = gp.cuinit_hint(
        804,
        "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        "forward compatibility was attempted on non supported HW",
    )
    assert "(forward compatibility was attempted on non supported HW)" in text


# --------------------------------------------------------------------------
# GPU presence
# --------------------------------------------------------------------------


def test_no_driver_is_absent():
    s = gp.classify_gpu("libcuda.so.1: cannot open shared object file", None, None, None, None, False, 0)
    assert s.status == "absent" and "docker run --gpus all" in s.reason and not s.ok


def test_no_device_is_absent():
    assert gp.classify_gpu(None, 100, "CUDA_ERROR_NO_DEVICE", None, "13.0", False, 0).status == "absent"


@pytest.mark.parametrize("code", [803, 804, 999])
def test_driver_errors_are_broken(code):
    s = gp.classify_gpu(None, code, None, None, "12.8", False, 0)
    assert s.status == "broken" and f"({code})" in s.reason


def test_cpu_torch_with_driver_is_broken():
    s = gp.classify_gpu(None, 0, None, None, None, False, 0)
    assert s.status == "broken" and "CPU-only build" in s.reason


def test_torch_unavailable_is_broken_and_quotes_the_warning():
    warning = "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)"
    s = gp.classify_gpu(None, 0, None, None, "12.8", False, 0, warning)
    assert s.status == "broken" and "too old" in s.reason


def test_working_gpu_is_ok():
    assert gp.classify_gpu(None, 0, None, None, "13.0", True, 1).ok


# --------------------------------------------------------------------------
# Architecture coverage
# --------------------------------------------------------------------------

CU130_ARCHES = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
CU124_ARCHES = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]


def test_parse_arch():
    assert gp.parse_arch("sm_90") == gp.Arch("sm", 9, 0, "")
    assert gp.parse_arch("sm_100a") == gp.Arch("sm", 10, 0, "a")
    assert gp.parse_arch("compute_120") == gp.Arch("compute", 12, 0, "")
    assert gp.parse_arch("sm_103f") == gp.Arch("sm", 10, 3, "f")
    assert gp.parse_arch("gfx90a") is None


def test_exact_sass():
    cov = gp.arch_coverage((9, 0), CU130_ARCHES)
    assert cov.ok and cov.via == "sass:sm_90"


def test_same_family_sass_runs_on_higher_minor():
    cov = gp.arch_coverage((8, 9), ["sm_80", "sm_86"])
    assert cov.ok and cov.via.startswith("sass:sm_8")


def test_sass_never_crosses_majors():
    cov = gp.arch_coverage((12, 0), ["sm_80", "sm_90"], ptx_jit=True, device="RTX 5090")
    assert not cov.ok
    assert "RTX 5090 is sm_120 (compute capability 12.0)" in cov.message
    assert "no kernel image is available" in cov.message and "sm_120 is not compatible" in cov.message


def test_ptx_jit_only_with_native_driver():
    assert gp.arch_coverage((12, 0), CU124_ARCHES, ptx_jit=True).via == "ptx:compute_90"
    cov = gp.arch_coverage((12, 0), CU124_ARCHES, ptx_jit=False)
    assert not cov.ok and "minor-version compatibility" in cov.message


def test_arch_specific_sass_only_on_its_own_gpu():
    assert gp.arch_coverage((9, 0), ["sm_90a"]).ok
    assert not gp.arch_coverage((10, 0), ["sm_90a", "compute_90a"]).ok


def test_cu13_dropped_volta():
    cov = gp.arch_coverage((7, 0), CU130_ARCHES, device="Tesla V100")
    assert not cov.ok and "sm_70" in cov.message and "cu13 wheels start at sm_75" in cov.message


def test_elf_arches():
    listing = "ELF file    1: imagematrix_cuda_probe.1.sm_90.cubin\nELF file    2: x.2.sm_100a.cubin\n"
    assert gp.elf_arches(listing) == ["sm_100a", "sm_90"]


# --------------------------------------------------------------------------
# torch.__config__.show()
# --------------------------------------------------------------------------

CUDA_CONFIG = """PyTorch built with:
  - GCC 13.3
  - C++ Version: 201703
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications
  - OpenMP 201511 (a.k.a. OpenMP 4.5)
  - CPU capability usage: AVX512
  - CUDA Runtime 12.8
  - NVCC architecture flags: -gencode;arch=compute_75,code=sm_75;-gencode;arch=compute_90,code=sm_90
  - CuDNN 90.8  (built against CUDA 12.8)
  - Magma 2.6.1
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, CUDA_VERSION=12.8, CUDNN_VERSION=9.8.0, CXX_COMPILER=/opt/rh/gcc-toolset-13/root/usr/bin/c++, CXX_FLAGS= -D_GLIBCXX_USE_CXX11_ABI=1 -fvisibility-inlines-hidden -DUSE_PTHREADPOOL -O2 -fPIC, LAPACK_INFO=mkl, TORCH_VERSION=2.9.1, USE_CUDA=ON, USE_CUDNN=ON, USE_NCCL=1, USE_ROCM=OFF,
"""
CPU_CONFIG = """PyTorch built with:
  - GCC 13.3
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, CXX_FLAGS= -fvisibility-inlines-hidden -O2 -fPIC, TORCH_VERSION=2.13.0, USE_CUDA=0, USE_CUDNN=OFF, USE_NCCL=OFF,
"""


# torch 2.11.0+cu130 on the H100 device (trimmed): no CXX11 ABI flag, cuDNN built against 13.1.
H100_CONFIG = """PyTorch built with:
  - GCC 13.3
  - C++ Version: 201703
  - CPU capability usage: AVX512
  - CUDA Runtime 13.0
  - NVCC architecture flags: -gencode;arch=compute_75,code=sm_75;-gencode;arch=compute_80,code=sm_80;-gencode;arch=compute_86,code=sm_86;-gencode;arch=compute_90,code=sm_90;-gencode;arch=compute_100,code=sm_100;-gencode;arch=compute_120,code=sm_120
  - CuDNN 91.9  (built against CUDA 13.1)
  - Magma 2.6.1
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, COMMIT_SHA=70d99e998b4955e0049d13a98d77ae1b14db1f45, CUDA_VERSION=13.0, CUDNN_VERSION=9.19.0, CXX_COMPILER=/opt/rh/gcc-toolset-13/root/usr/bin/c++, CXX_FLAGS= -fvisibility-inlines-hidden -DUSE_PTHREADPOOL -DNDEBUG, TORCH_VERSION=2.11.0, USE_CUDA=ON, USE_CUDNN=ON, USE_NCCL=1, USE_ROCM=OFF,
"""


def test_parse_real_h100_config():
    c = gp.parse_torch_config(H100_CONFIG)
    assert (c.cuda_runtime, c.cudnn, c.cxx11_abi) == ("13.0", "91.9", None)
    assert c.use_cuda and c.settings["USE_NCCL"] == "1" and c.settings["CUDNN_VERSION"] == "9.19.0"
    assert gp.cxx11_abi_problem(True, c) is None


def test_parse_cuda_config():
    c = gp.parse_torch_config(CUDA_CONFIG)
    assert c.cuda_runtime == "12.8" and c.cudnn == "90.8" and c.cxx11_abi == 1
    assert c.use_cuda and c.settings["USE_NCCL"] == "1" and c.settings["CUDNN_VERSION"] == "9.8.0"
    assert c.settings["CXX_FLAGS"].startswith("-D_GLIBCXX_USE_CXX11_ABI=1")


def test_parse_config_without_a_driver_reads_the_build_settings():
    # torch 2.15 on a host with no GPU prints no "CUDA Runtime" line (seen in the example images).
    no_driver = "\n".join(line for line in H100_CONFIG.splitlines() if "CUDA Runtime" not in line)
    assert gp.parse_torch_config(no_driver).cuda_runtime == "13.0"


def test_parse_cpu_config():
    c = gp.parse_torch_config(CPU_CONFIG)
    assert c.cuda_runtime is None and c.cxx11_abi is None and not c.use_cuda
    assert c.settings["USE_CUDA"] == "0"


def test_cxx11_abi():
    assert gp.cxx11_abi_problem(True, gp.parse_torch_config(CUDA_CONFIG)) is None
    assert gp.cxx11_abi_problem(True, gp.parse_torch_config(CPU_CONFIG)) is None  # flag absent: default 1
    problem = gp.cxx11_abi_problem(False, gp.parse_torch_config(CUDA_CONFIG))
    assert problem and "RKSs" in problem and "-D_GLIBCXX_USE_CXX11_ABI=1" in problem


def test_cudnn_compatibility():
    assert gp.cudnn_problem((9, 10, 2), (9, 10, 2)) is None
    assert gp.cudnn_problem((9, 11, 0), (9, 10, 2)) is None  # newer minor of the same major is compatible
    assert "cuDNN 9.1.0 is loaded but torch was compiled against cuDNN 9.10.2" in gp.cudnn_problem(
        (9, 1, 0), (9, 10, 2)
    )
    assert gp.cudnn_problem((8, 9, 7), (9, 1, 0)) is not None
    assert gp.cudnn_problem(None, (9, 1, 0)) is None


# --------------------------------------------------------------------------
# Interpreter ABI
# --------------------------------------------------------------------------


def test_wheel_tags():
    text = (
        "Wheel-Version: 1.0\nGenerator: bdist_wheel\nRoot-Is-Purelib: false\nTag: cp312-cp312-manylinux_2_28_x86_64\n"
    )
    assert gp.wheel_tags(text) == ["cp312-cp312-manylinux_2_28_x86_64"]
    assert gp.wheel_tag_problem(gp.wheel_tags(text), (3, 12)) is None
    problem = gp.wheel_tag_problem(gp.wheel_tags(text), (3, 13))
    assert problem and "PyInit__C" in problem and "cp313-cp313" in problem


def test_wheel_tag_abi3_and_free_threading():
    assert gp.wheel_tag_problem(["cp310-abi3-manylinux_2_28_x86_64"], (3, 12)) is None
    assert gp.wheel_tag_problem(["cp313-abi3-manylinux_2_28_x86_64"], (3, 12)) is not None
    assert gp.wheel_tag_problem(["cp313-cp313t-manylinux_2_28_x86_64"], (3, 13), "t") is None
    assert gp.wheel_tag_problem(["cp313-cp313-manylinux_2_28_x86_64"], (3, 13), "t") is not None


def test_foreign_extension():
    ok = [".cpython-312-x86_64-linux-gnu.so", ".abi3.so", ".so"]
    assert not gp.foreign_extension("_C.cpython-312-x86_64-linux-gnu.so", ok)
    assert gp.foreign_extension("_C.cpython-311-x86_64-linux-gnu.so", ok)
    assert not gp.foreign_extension("_scatter_cuda.so", ok)  # a torch.ops library, not a module
    assert not gp.foreign_extension("libtorch_cuda.so", ok)


# --------------------------------------------------------------------------
# PyG
# --------------------------------------------------------------------------


def test_pyg_local_versions():
    assert gp.pyg_expected_local("2.9.1+cu128", "12.8") == "pt29cu128"
    assert gp.pyg_expected_local("2.10.0", "13.0") == "pt210cu130"
    assert gp.pyg_expected_local("2.9.1", None) == "pt29cpu"
    assert gp.pyg_local_problem("torch_scatter", "2.1.2+pt29cu128", "2.9.1+cu128", "12.8") is None
    assert gp.pyg_local_problem("torch_scatter", "2.1.2", "2.9.1", "12.8") is None  # source build
    problem = gp.pyg_local_problem("torch_scatter", "2.1.2+pt28cu126", "2.9.1+cu128", "12.8")
    assert problem and "built for pt28cu126" in problem
    assert "https://data.pyg.org/whl/torch-2.9.1+cu128.html" in problem


def test_pyg_cuda_versions():
    assert gp.pyg_cuda_problem("torch_scatter", 12080, "12.8") is None
    assert "CPU-only build (cuda_version() == -1)" in gp.pyg_cuda_problem("torch_scatter", -1, "12.8")
    mismatch = gp.pyg_cuda_problem("torch_sparse", 12060, "12.8")
    assert "compiled with CUDA 12.6 but torch with CUDA 12.8" in mismatch
    assert "compiled with different CUDA versions" in mismatch
    assert gp.pyg_cuda_problem("torch_scatter", 12080, None) is None


def test_cpu_only_extensions_pass_only_where_the_cell_declares_them():
    # extensions: cpu (no nvcc for the family): a CPU-only build is what was promised ...
    assert gp.pyg_cuda_problem("torch_scatter", -1, "12.8", "cpu") is None
    # ... and CUDA kernels there mean the manifest does not describe the image.
    assert "declares extensions: cpu" in gp.pyg_cuda_problem("torch_scatter", 12080, "12.8", "cpu")
    assert gp.parse_cell(cell(extensions="cpu")).extensions == "cpu"
    assert gp.parse_cell(cell()).extensions == "cuda"  # manifests from before the key


# --------------------------------------------------------------------------
# Loaded libraries and small rules
# --------------------------------------------------------------------------

MAPS = """7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13
7f0000001000-7f0000002000 r--p 00001000 08:01 1 /venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13
7f0000002000-7f0000003000 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04
7f0000003000-7f0000004000 rw-p 00000000 00:00 0 [heap]
7f0000004000-7f0000005000 r-xp 00000000 08:01 3 /venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9
7f0000005000-7f0000006000 r-xp 00000000 08:01 4 /venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn_graph.so.9
"""


def test_loaded_libraries():
    paths = gp.mapped_paths(MAPS)
    assert len(paths) == 4
    assert gp.loaded_library(paths, "libcudart") == [
        ("/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13", 13)
    ]
    assert gp.loaded_library(paths, "libcuda") == [("/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04", 580)]
    assert [p for p, _ in gp.loaded_library(paths, "libcudnn")] == [
        "/venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9"
    ]
    assert gp.dist_cuda_major("nvidia-nccl-cu13") == 13 and gp.dist_cuda_major("nvidia_nccl_cu12") == 12
    assert gp.dist_cuda_major("nvidia-nccl") is None


def test_shm_warning():
    assert gp.shm_warning(64 << 20).startswith("/dev/shm is 64 MiB")
    assert "--shm-size" in gp.shm_warning(64 << 20)
    assert gp.shm_warning(8 << 30) is None and gp.shm_warning(None) is None


def test_nvcc_rules():
    assert gp.nvcc_problem((13, 1), (13, 1), (13, 0)) is None
    assert "CUDA_HOME environment variable is not set" in gp.nvcc_problem(None, (13, 1), (13, 0))
    assert "mismatches the version that was used to compile PyTorch" in gp.nvcc_problem((12, 8), (12, 8), (13, 0))
    assert "declares toolkit 13.1" in gp.nvcc_problem((13, 0), (13, 1), (13, 0))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "CUDA error: no kernel image is available for execution on the device",
            "TORCH_CUDA_ARCH_LIST",
        ),
        (
            "ImportError: x.so: undefined symbol: "
            "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
            "torch",
        ),
        (
            "ImportError: dynamic module does not define module export function (PyInit__C)",
            "another Python",
        ),
        (
            "OSError: libcudart.so.12: cannot open shared object file: No such file or directory",
            "nvidia-*",
        ),
        ("RuntimeError: CUDA error: CUBLAS_STATUS_NOT_SUPPORTED", "libcublas"),
        ("KeyError: 'getpwuid(): uid not found: 10001'", "ENV USER="),
    ],
)
def test_failure_hints(text, needle):
    assert needle in gp.failure_hint(text)


def test_failure_hint_unknown():
    assert gp.failure_hint("something else") is None


def test_modules_to_import_follow_features():
    c = gp.parse_cell(CONTRACT_CELL)
    assert gp.modules_to_import(c) == [
        "torch",
        "triton",
        "torch_scatter",
        "torch_sparse",
        "ray",
    ]
    bare = gp.parse_cell(cell(features=[], pyg_extensions=[]))
    assert gp.modules_to_import(bare) == ["torch"]


def test_a_cpu_cell_imports_no_triton_and_a_cell_without_torch_no_torch():
    cpu = gp.parse_cell(cell(cuda=None, torch_cuda=None, features=["torch_compile"], pyg_extensions=[]))
    assert gp.modules_to_import(cpu) == ["torch"]  # inductor's CPU backend needs no triton
    unpinned = gp.parse_cell(cell(cuda=None, torch_cuda=None, torch="", features=[], pyg_extensions=[]))
    assert unpinned.holds_torch and gp.modules_to_import(unpinned) == ["torch"]  # unpinned is still expected
    without = gp.parse_cell(cell(cuda=None, torch_cuda=None, torch=None, features=["marimo"], pyg_extensions=[]))
    assert not without.holds_torch and gp.modules_to_import(without) == ["marimo"]  # "torch": null: none expected


def test_a_manifest_says_whether_test_directories_stay():
    assert not gp.parse_cell(cell()).keep_tests
    assert gp.parse_cell(cell(policy={"keep_tests": True})).keep_tests
    assert not gp.parse_cell(cell(policy={"keep_tests": "yes"})).keep_tests  # only true itself


# --- a locked environment -----------------------------------------------------------------


def _uv_lock() -> dict:
    import tomllib

    return tomllib.loads((Path(__file__).resolve().parents[2] / "examples" / "uv.project" / "uv.lock").read_text())


def _on(platform: str):
    from packaging.markers import Marker

    env = {
        "sys_platform": platform,
        "platform_system": {"linux": "Linux", "darwin": "Darwin"}[platform],
        "platform_machine": "x86_64",
        "python_version": "3.13",
        "python_full_version": "3.13.5",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return lambda m: Marker(m).evaluate(env)


def test_the_lock_says_what_a_linux_sync_installs():
    want = gp.locked_for_here(_uv_lock(), _on("linux"))
    assert want["torch"] == "2.15.0" and want["numpy"].startswith("2.")
    assert want["cuda-toolkit"] == "13.2.2" and "nvidia-cublas" in want  # through torch's linux-only edge and extras
    assert "team-env" not in want  # the project itself is not installed
    mac = gp.locked_for_here(_uv_lock(), _on("darwin"))
    assert "cuda-toolkit" not in mac and mac["torch"] == "2.15.0"


def test_lock_drift_names_missing_other_versions_and_unlocked():
    want = {"torch": "2.15.0", "numpy": "2.5.5", "typing-extensions": "4.16.0"}
    installed = {"torch": "2.15.0", "numpy": "2.4.0", "Typing_Extensions": "4.16.0", "extra": "1.0"}
    assert gp.lock_drift(want, installed) == [
        "numpy: locked 2.5.5, installed 2.4.0",
        "extra: installed 1.0, not in the lock",
    ]
    assert gp.lock_drift(want, {"torch": "2.15.0"}) == [
        "numpy: locked 2.5.5, not installed",
        "typing-extensions: locked 4.16.0, not installed",
    ]
    assert gp.lock_drift({"torch": "2.15.0"}, {"torch": "2.15.0", "pip": "25.0"}, tools=["pip"]) == []


def test_the_session_starts_the_probes_the_whole_smoke_suite_will_take():
    c = gp.parse_cell(cell())  # CUDA, torch_compile, pyg with two extensions
    whole = dict(keyword="", whole_suite=True, has_torch=True)
    on_gpu = gp.probes_to_start(c, "smoke", driver_loads=True, **whole)
    assert on_gpu == [gp.KERNELS_PROBE, gp.COMPILE_CUDA_PROBE, gp.pyg_probe(c, True)]
    assert gp.pyg_probe(c, True) == ("pyg", ("--extensions", "torch_scatter,torch_sparse", "--gpu"))
    assert gp.probes_to_start(c, "smoke or full", driver_loads=True, **whole) == on_gpu
    # No driver: the GPU checks will not run, PyG's will, on the CPU, as its fixture will ask.
    assert gp.probes_to_start(c, "smoke", driver_loads=False, **whole) == [gp.pyg_probe(c, False)]
    cpu_only = gp.parse_cell(cell(cuda=None, torch_cuda=None))
    assert gp.probes_to_start(cpu_only, "smoke", driver_loads=True, **whole) == [gp.pyg_probe(cpu_only, False)]


@pytest.mark.parametrize(
    "narrower",
    [
        {"markexpr": "full"},
        {"markexpr": "smoke and not gpu"},
        {"markexpr": ""},
        {"keyword": "kernel"},
        {"whole_suite": False},
        {"has_torch": False},
    ],
)
def test_a_narrower_run_starts_no_probe_it_may_not_take(narrower):
    args = dict(markexpr="smoke", keyword="", whole_suite=True, has_torch=True, driver_loads=True)
    assert gp.probes_to_start(gp.parse_cell(cell()), **{**args, **narrower}) == []


def test_a_missing_module_names_the_declaration_that_asked_for_it():
    hint = gp.failure_hint("ModuleNotFoundError: No module named 'ray'")
    assert "targets.<name>.features" in hint and "'ray' feature" in hint
    assert "torch: false" in gp.failure_hint("No module named 'torch'")
    assert "pyg_extensions" in gp.failure_hint("No module named 'torch_sparse'")
    assert gp.missing_module_hint("No module named 'yaml'") is None  # not a declaration's

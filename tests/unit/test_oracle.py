"""The oracle: reading real fat binaries (the committed mutants, NVIDIA's cuobjdump from its wheel) and
predicting, from an image's own objects, where it runs: SASS, PTX JIT, minor-version compatibility,
and what fails with which CUDA error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagematrix.core import arch
from imagematrix.core.cuda_compat import branch_cuda, native_driver
from imagematrix.oracle import gpus, predict, scan
from imagematrix.oracle.audit import cuobjdump

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "tests" / "gpu-machine" / "mutants"
TORCH = json.loads((ROOT / "tests" / "unit" / "data" / "audits" / "example-torch-2.15-cu132.json").read_text())
H100, V100, THOR = gpus.gpu("H100"), gpus.gpu("V100"), gpus.gpu("Thor")
# What each mutant embeds, and what it does on an H100 with a 580 driver (CUDA 13.0): the measured outcomes
# (tests/gpu-machine/results/oracle-h200-580.json for the shared objects, carriers-h100-580.json for the rest)
# are the same table. Shared objects, executables, cubins and fat binaries loaded by cuModuleLoadData, PTX
# files, and NVRTC's output.
MUTANT = {
    "libimx_sm80.so": ("library", ["sm_80"], [], predict.FAILS, 209),
    "libimx_ptx80.so": ("library", [], [["compute_80", "9.0"]], predict.WARN, None),
    "libimx_sm90.so": ("library", ["sm_90"], [], predict.RUNS, None),
    "libimx_sm90a.so": ("library", ["sm_90a"], [], predict.RUNS, None),
    "libimx_sm100.so": ("library", ["sm_100"], [], predict.FAILS, 209),
    "libimx_ptx92.so": ("library", [], [["compute_90", "9.2"]], predict.FAILS, 222),
    "imx_exe_sm86": ("executable", ["sm_86"], [], predict.FAILS, 209),
    "imx_exe_sm90": ("executable", ["sm_90"], [], predict.RUNS, None),
    "imx_sm86.cubin": ("cubin", ["sm_86"], [], predict.FAILS, 209),
    "imx_sm90.cubin": ("cubin", ["sm_90"], [], predict.RUNS, None),
    "imx_sm86.fatbin": ("fatbin", ["sm_86"], [], predict.FAILS, 209),
    "imx_ptx80.fatbin": ("fatbin", [], [["compute_80", "9.0"]], predict.WARN, None),  # compressed PTX
    "imx_ptx90.ptx": ("ptx", [], [["compute_80", "9.0"]], predict.WARN, None),
    "imx_ptx92.ptx": ("ptx", [], [["compute_90", "9.2"]], predict.FAILS, 222),
    "imx_nvrtc132.ptx": ("ptx", [], [["compute_90", "9.2"]], predict.FAILS, 222),  # NVRTC 13.2's PTX
    "imx_nvrtc132_sm90.cubin": ("cubin", ["sm_90"], [], predict.RUNS, None),  # NVRTC 13.2's SASS
}


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> dict:
    doc = scan.scan(MUTANTS, str(cuobjdump()), None, None, python=None)
    return {Path(o["path"]).name: o for o in doc["objects"]}


def test_the_scan_finds_every_carrier_by_its_bytes_and_reads_what_it_holds(mutants):
    assert sorted(mutants) == sorted(MUTANT)
    for name, (kind, sass, ptx, _, _) in MUTANT.items():
        o = mutants[name]
        assert (o["kind"], o["sass"], o["ptx"], o["error"]) == (kind, sass, ptx, ""), name


def test_the_scan_agrees_with_cuobjdump_on_every_object_it_can_read(mutants, tmp_path):
    """cuobjdump is the referee for what sits in an ELF file, a fat binary or a cubin (it reads no PTX text)."""
    for name, o in mutants.items():
        if o["kind"] != "ptx":
            ref = scan.referee(str(cuobjdump()), MUTANTS / o["path"].lstrip("/"), tmp_path)
            assert (o["sass"], o["ptx"]) == (ref["sass"], ref["ptx"]), name


@pytest.mark.parametrize("name", MUTANT)
def test_each_mutant_is_predicted_on_an_h100_with_driver_580(mutants, name):
    audit = {"objects": [mutants[name]], "libraries": {"cudart": [{"version": "13.0.96"}]}}
    v = predict.predict(audit, H100, "580.159.04")
    assert (v.mark, v.code) == MUTANT[name][3:], v.reasons


def test_a_static_archive_is_listed_but_decides_nothing():
    archive = {"path": "/usr/lib/libx_static.a", "kind": "archive", "sass": ["sm_80"], "ptx": [], "error": ""}
    v = predict.predict({"objects": [archive]}, H100, "580")
    assert v.mark == predict.RUNS and "no device code" in v.reasons[0]


def test_arch_specific_sass_runs_only_on_its_own_gpu(mutants):
    audit = {"objects": [mutants["libimx_sm90a.so"]]}
    assert predict.predict(audit, H100, "580").mark == predict.RUNS
    assert predict.predict(audit, gpus.gpu("B200"), "580").code == 209
    assert (
        predict.predict({"objects": [mutants["libimx_sm80.so"]]}, gpus.gpu("RTX 3090"), "580").mark == predict.RUNS
    )  # 8.6 runs sm_80


def test_ptx_is_jit_compiled_only_by_a_driver_that_knows_its_isa(mutants):
    audit = {"objects": [mutants["libimx_ptx92.so"]]}
    assert predict.predict(audit, H100, "580").code == 222
    assert predict.predict(audit, H100, "595").mark == predict.WARN  # R595 is CUDA 13.2: JIT works
    assert "JIT-compiled" in predict.predict(audit, H100, "595").reasons[0]


def test_plus_ptx_in_an_arch_list_means_newer_gpus_jit():
    cov = arch.arch_coverage((12, 0), ["sm_80", "sm_90", "compute_90"])
    assert cov.ok and cov.via == "ptx:compute_90"


def test_torch_215_cu132_runs_from_sass_on_sm75_to_sm120_and_never_on_volta_or_thor():
    """A fact of the real image: libtorch_cuda.so ships SASS for sm_75 ... sm_120 and no PTX."""
    libtorch = next(o for o in TORCH["objects"] if o["path"].endswith("/libtorch_cuda.so"))
    assert libtorch["ptx"] == [] and {"sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"} <= set(libtorch["sass"])
    assert predict.predict(TORCH, V100, "580").mark == predict.FAILS  # not ⚠️: no PTX to JIT
    assert predict.predict(TORCH, THOR, "595").mark == predict.FAILS
    assert predict.predict(TORCH, H100, "595.45.04").mark == predict.RUNS
    v = predict.predict(TORCH, H100, "580.159.04")
    assert v.mark == predict.WARN and "minor-version compatibility" in v.reasons[0]
    v = predict.predict(TORCH, H100, "570")
    assert (v.mark, v.code) == (predict.FAILS, 35) and "insufficient" in v.reasons[0]


def test_the_floor_is_the_newest_of_the_runtime_and_the_ptx():
    fl = predict.floor(TORCH)
    assert fl.cuda == (13, 4) and "PTX 9.4" in fl.source and fl.native == "615"  # NVIDIA's data: 13.4 ships with R615
    assert predict.floor({"libraries": {"cudart": [{"version": "13.2.86"}]}}).native == "595.45.04"
    assert predict.floor({}).cuda is None


def test_an_unknown_minor_is_an_unknown_floor_never_native():
    assert native_driver((13, 5)) is None and native_driver((13, 9)) is None  # not in the data: unknown
    assert native_driver((13, 2)) == "595.45.04" and native_driver((12, 7)) == "570.26"
    assert branch_cuda("580.159.04") == (13, 0) and branch_cuda("595") == (13, 2) and branch_cuda("525") == (12, 0)


def test_a_stub_without_kernels_and_an_unreadable_object_do_not_decide():
    stub = {"path": "/libcufftw.so.12", "sass": ["sm_75"], "ptx": [], "kernels": 0, "error": ""}
    broken = {"path": "/libcufile.so.0", "sass": [], "ptx": [], "kernels": None, "error": "Invalid ELF"}
    assert predict.predict({"objects": [stub, broken]}, H100, "580").mark == predict.RUNS


def test_a_gpu_the_driver_branch_does_not_know_is_unsupported():
    assert predict.predict({}, gpus.gpu("RTX 5090"), "560").reasons[0].startswith("driver branch R560 does not know")
    assert predict.predict({}, V100, "590").reasons[0].startswith("driver branch R590 no longer supports V100")


def test_the_catalogue_lines_say_from_which_branch_a_gpu_runs():
    table = predict.table(TORCH)
    assert predict.reach(table["H100"]) == "⚠️ from R580 · ✅ from R595"
    assert predict.reach(table["V100"]) == "❌ no kernel image" and predict.reach(table["Thor"]) == "❌ no kernel image"
    assert gpus.gpu("9.0").cc == (9, 0) and gpus.gpu("rtx5090").name == "RTX 5090"


def test_ptx_isa_versions_map_to_the_cuda_that_introduced_them():
    assert arch.ptx_isa_cuda((9, 0)) == (13, 0) and arch.ptx_isa_cuda((8, 7)) == (12, 8)
    assert arch.ptx_isa_cuda((9, 9)) is None
    listing = "PTX file    1: x.1.sm_80.ptx\nPTX file    2: x.2.sm_90a.ptx\n"
    assert arch.ptx_arches(listing) == ["compute_80", "compute_90a"]


def test_the_audit_of_an_image_without_device_code_is_recorded(tmp_path):
    """debian:trixie-slim and the like: no objects, no CUDA runtime, no torch; the record takes it."""
    from imagematrix.core import status
    from imagematrix.oracle.audit import Audit

    summary = Audit(
        "debian:trixie-slim", "sha256:" + "1" * 64, {"objects": [], "libraries": {}}, "export", 1.5
    ).summary()
    status.update_cell(tmp_path, "cpu-py3.11-base", "audit", summary, replace=True)
    audit = status.read_status(tmp_path).get("cpu-py3.11-base").audit
    assert (
        audit is not None
        and audit.objects == 0
        and audit.floor == ()
        and audit.prediction["H100"]["R580"]["mark"] == "✅"
    )


def test_paths_from_an_image_reach_the_terminal_without_control_characters():
    """Object paths are the image's own file names: an escape sequence in one must not reach the terminal."""
    from imagematrix.oracle.audit import Audit
    from imagematrix.oracle.gpus import gpu
    from imagematrix.reports.audit_view import audit_lines

    hostile = "/opt/venv/lib/\x1b]0;pwned\x07libx\x1b[2J.so"
    doc = {"objects": [{"path": hostile, "sass": ["sm_80"], "ptx": [], "kernels": 1}], "libraries": {}}
    result = Audit("img", "sha256:" + "1" * 64, doc, "container", 1.0)
    lines, fails = audit_lines("img\x1b[31m", result, gpu("H100"), "580")
    assert fails and any("libx" in line for line in lines)
    assert not any(c in line for line in lines for c in "\x1b\x07"), lines


def test_lz4_blocks_of_older_fat_binaries_are_read():
    from imagematrix.oracle.emulate import lz4_block

    assert lz4_block(b"\x50hello", 5) == b"hello"  # literals only
    assert lz4_block(b"\x13a\x01\x00", 8) == b"a" * 8  # one literal, then a match of 7 that overlaps itself
    assert lz4_block(b"\x22ab\x02\x00", 8) == b"abababab"
    with pytest.raises(ValueError):
        lz4_block(b"\x10a\x05\x00", 8)  # an offset before the start

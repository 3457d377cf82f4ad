"""NVIDIA's data (core/data/nvidia.json) covers every image this repository audits: each CUDA runtime and
each PTX ISA an audited image carries has a native driver in the data, so "native driver unknown" can
never reach a user silently; and the data is consistent (branches in order, each toolkit's driver in the
branch that runs it natively)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagematrix.core import nvidia
from imagematrix.core.cuda_compat import branch_cuda, native_driver, version_tuple
from imagematrix.oracle import scan
from imagematrix.oracle.predict import floor

ROOT = Path(__file__).resolve().parents[2]
AUDITED = sorted((ROOT / "tests" / "unit" / "data" / "audits").glob("*.json"))


def _audits() -> dict[str, dict]:
    docs = {p.name: json.loads(p.read_text()) for p in AUDITED}
    docs["tests/gpu-machine/mutants"] = scan.scan(ROOT / "tests" / "gpu-machine" / "mutants", None, None, None)
    return docs


@pytest.mark.parametrize("name", [*(p.name for p in AUDITED), "tests/gpu-machine/mutants"])
def test_every_cuda_and_ptx_isa_an_audited_image_carries_is_in_the_data(name):
    doc = _audits()[name]
    for obj in doc.get("objects") or []:
        for _arch, isa in obj.get("ptx") or []:
            major, minor = (int(x) for x in isa.split("."))
            cuda = nvidia.PTX_ISA_CUDA.get((major, minor))
            assert cuda is not None, f"{obj['path']}: PTX ISA {isa} is not in core/data/nvidia.json"
            assert native_driver(cuda), f"{obj['path']}: PTX {isa} needs CUDA {cuda}, whose driver the data lacks"
    for lib in (doc.get("libraries") or {}).get("cudart") or []:
        parts = str(lib.get("version") or "").split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            assert native_driver((int(parts[0]), int(parts[1]))), f"cudart {lib['version']}: no driver in the data"
    fl = floor(doc)
    assert fl.cuda is None or fl.native, f"{name}: floor CUDA {fl.cuda} has no native driver in the data"


def test_the_data_is_consistent():
    assert nvidia.SNAPSHOT >= "2026-12-01"
    branches = [b.branch for b in nvidia.BRANCH_DATA]
    assert branches == sorted(branches)
    for b in nvidia.BRANCH_DATA:
        if b.cuda is not None and nvidia.NATIVE_DRIVER.get(b.cuda):
            assert version_tuple(nvidia.NATIVE_DRIVER[b.cuda])[0] == b.branch, b
            assert branch_cuda(str(b.branch)) == b.cuda, b
    isas = sorted(nvidia.PTX_ISA_CUDA)
    assert [nvidia.PTX_ISA_CUDA[i] for i in isas] == sorted(nvidia.PTX_ISA_CUDA.values())
    assert nvidia.toolkit_targets((11, 7), (9, 0)) is False and nvidia.toolkit_targets((12, 8), (9, 0)) is True
    assert nvidia.toolkit_targets((13, 0), (7, 0)) is False and nvidia.toolkit_targets((12, 9), (12, 1)) is True
    assert nvidia.toolkit_targets((13, 0), (4, 2)) is None  # not in the data: unknown


def test_branches_past_their_end_of_life_are_known_as_such():
    ended = {b.branch for b in nvidia.BRANCH_DATA if b.ended("2026-12-07")}
    assert {535, 570} <= ended and 580 not in ended


def test_the_refresh_script_reads_both_of_nvidias_pages(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh", ROOT / "scripts" / "refresh-nvidia-data.py")
    assert spec and spec.loader
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    notes: list[str] = []
    html = (
        "<tr><td><p>CUDA 13.4 GA</p></td><td><p>&gt;=615.20.03</p></td></tr>"
        "<tr><td><p>CUDA 13.2 Update 1</p></td><td><p>&gt;=595.58.03</p></td></tr>"
        "<tr><td><p>CUDA 13.2 GA</p></td><td><p>&gt;=595.45.04</p></td></tr>"
    )
    assert refresh.toolkits_from_notes(html, notes) == {"13.4": "615.20.03", "13.2": "595.45.04"}
    releases = {"r580": {"type": "lts branch", "end_of_life": "2028-08-31", "driver_info": [{"cuda_version": "13.0"}]}}
    assert refresh.branches_from_releases(releases, notes) == {
        580: {"type": "long-term", "end_of_life": "2028-08", "cuda": "13.0"}
    }
    assert notes == []
    assert refresh.toolkits_from_notes("<p>nothing</p>", notes) == {} and notes

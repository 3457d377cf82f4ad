"""The emulation check with NVIDIA's real ptxas (fetched from PyPI): each mutant's PTX compiled for an H100
with the ptxas of the CUDA a driver branch runs natively agrees with the prediction, and, for driver 580,
with what that driver did on an H100 (tests/gpu-machine/results/carriers-h100-580.json)."""

from __future__ import annotations

import json
from pathlib import Path

from imagematrix.core.verdict import Mark
from imagematrix.oracle import emulate, gpus, scan
from imagematrix.oracle.audit import cuobjdump

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "tests" / "gpu-machine" / "mutants"


def test_the_mutants_ptx_compiles_where_the_real_driver_jits_it_and_only_there():
    doc = scan.scan(MUTANTS, str(cuobjdump()), None, None)
    doc["libraries"] = {"cudart": [{"version": "13.0.96"}]}
    measured = json.loads((ROOT / "tests" / "gpu-machine" / "results" / "carriers-h100-580.json").read_text())
    real = {r["file"]: r for r in measured["launched"]}
    h100 = gpus.gpu("H100")
    checked = 0
    for obj in doc["objects"]:
        one = {**doc, "objects": [obj]}
        cells = emulate.check_cells(
            one, [h100], [580, 595], lambda o: emulate.ptx_of(str(cuobjdump()), MUTANTS / o["path"].lstrip("/"))
        )
        for cell in cells:
            checked += 1
            assert cell.agrees, cell
            name = Path(obj["path"]).name
            if cell.branch == 580 and name in real:
                ran = real[name]["ok"]
                assert (cell.emulated is Mark.WARNS) == ran, (name, cell, real[name])
    assert checked >= 8  # six PTX carriers on R580, those that JIT on R595 again

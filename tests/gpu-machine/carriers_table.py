"""The oracle's mutants beyond shared objects, predicted from images built here and joined with what the
GPU machine measured: every carrier (executables, cubins, fat binaries, PTX files, NVRTC's output) in one
image, and the JIT toolchains (a Triton whose ptxas predates the GPU, NVRTC 13.2, an nvcc of another
CUDA major than torch's). Writes tests/gpu-machine/results/carriers-table.json and prints the Markdown
table docs/compatibility.md shows.

    bash tests/gpu-machine/jit-mutants/build.sh      # the JIT mutants (needs the example's devel image)
    python tests/gpu-machine/carriers_table.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from imagematrix.build.engine import docker_client  # noqa: E402
from imagematrix.oracle import gpus, jit  # noqa: E402
from imagematrix.oracle.audit import audit_image  # noqa: E402
from imagematrix.oracle.predict import predict  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CARRIERS = "imagematrix-mutant/carriers:latest"
GPU, DRIVER = gpus.gpu("H100"), "580.159.04"


def measured_outcomes() -> dict[str, str]:
    doc = json.loads((RESULTS / "carriers-h100-580.json").read_text())
    out = {}
    for r in doc["launched"]:
        out[r["file"]] = "runs" if r["ok"] else f"fails ({r['code']}, {r['error']})"
    for r in doc["executables"]:
        out[r["file"]] = "runs" if r["ok"] else f"fails ({r['code']}, {r['error']})"  # the program itself, run
    return out


def main() -> int:
    client = docker_client()
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-f",
            str(HERE / "mutants" / "carriers.Dockerfile"),
            "-t",
            CARRIERS,
            str(HERE / "mutants"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    measured = measured_outcomes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        doc = audit_image(client, CARRIERS, Path(tmp)).doc
        doc["libraries"] = {"cudart": [{"version": "13.0.96"}]}  # they run beside the machine's CUDA 13.0 runtime
        for obj in doc["objects"]:
            name = Path(obj["path"]).name
            if name.startswith("libimx_"):
                continue  # the shared objects: oracle-h200-580.json
            v = predict({**doc, "objects": [obj]}, GPU, DRIVER)
            seen = measured.get(name, "not measured")
            agree = (v.mark.value != "❌") == seen.startswith("runs")
            rows.append(
                {
                    "carrier": f"{obj['kind']} {name}",
                    "predicted": f"{v.mark.value} {v.code or ''}".strip(),
                    "measured": seen,
                    "agree": agree,
                }
            )
        jit_rows = [
            (
                "imagematrix-mutant/jit:triton-old-ptxas",
                "torch.compile",
                "fails: ptxas-11 fatal: Value 'sm_90a' is not defined (TRITON_PTXAS_PATH=ptxas 11.7, Triton 3.6, H100)",
            ),
            (
                "imagematrix/example:cu13.2-py3.13-devel",
                "nvrtc",
                "NVRTC 13.2's PTX: fails (222, CUDA_ERROR_UNSUPPORTED_PTX_VERSION); its sm_90 cubin: runs",
            ),
            (
                "imagematrix-mutant/jit:nvcc-mismatch",
                "cpp_extension",
                "; ".join((HERE / "results" / "nvcc-mismatch.txt").read_text().split("\n")).strip("; ")
                if (HERE / "results" / "nvcc-mismatch.txt").is_file()
                else "not measured",
            ),
        ]
        for ref, tool, seen in jit_rows:
            doc = audit_image(client, ref, Path(tmp)).doc
            v = jit.verdicts(doc, GPU, DRIVER).get(tool)
            mark = v.mark.value if v else "-"
            runs = seen.startswith("runs") or ("built" in seen and "refused" not in seen)
            agree = (mark == "✅") == runs if mark != "⚠️" else ("fails" in seen and "runs" in seen)
            rows.append(
                {
                    "carrier": f"JIT {tool} ({ref})",
                    "predicted": mark,
                    "measured": seen,
                    "agree": agree,
                    "reason": v.reasons[0] if v else "",
                }
            )
    (RESULTS / "carriers-table.json").write_text(
        json.dumps({"gpu": "NVIDIA H100 80GB HBM3", "driver": DRIVER, "date": "2026-12-07", "rows": rows}, indent=1)
        + "\n"
    )
    print("| carrier | predicted (H100, R580) | measured (H100, 580.159.04) | agree |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['carrier']} | {r['predicted']} | {r['measured']} | {'yes' if r['agree'] else 'NO'} |")
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

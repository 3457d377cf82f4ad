"""On the GPU machine: for each image, the oracle's prediction for this GPU and driver against what
happens. Mutants (tests/gpu-machine/mutants) launch their one kernel through libcuda (the launch probe:
CUDA error 209, 222 or success); real cells run a torch operation on the GPU. Writes oracle.json and
oracle.md to the folder given (scripts/gpu-machine-proof.sh oracle runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import docker

from imagematrix.oracle.audit import AuditError, audit_image, save
from imagematrix.oracle.gpus import GPUS, Gpu
from imagematrix.oracle.predict import FAILS, predict

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ["sm80", "ptx80", "sm90", "sm90a", "sm100", "ptx92"]
REAL = ["gpuhost/imagematrix:cu13.0-py3.12-devel", "gpuhost/liar:cu12.8-py3.11-devel"]
TORCH_OP = "import torch; x = torch.arange(8, device='cuda'); print(int((x * 2).sum()))"


def host() -> tuple[Gpu, str, str]:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[0]
    name, cc, driver = (x.strip() for x in out.split(","))
    major, minor = (int(x) for x in cc.split("."))
    known = next((g for g in GPUS if g.cc == (major, minor)), None)
    return known or Gpu(name, (major, minor)), name, driver


def measure(ref: str, mutant: str | None) -> dict:
    mount = ["-v", f"{ROOT / 'src' / 'imagematrix'}:/opt/imx/imagematrix:ro"]
    if mutant:
        argv = [
            "python3",
            "/opt/imx/imagematrix/core/launch_probe.py",
            f"/usr/local/lib/imagematrix-mutants/libimx_{mutant}.so",
        ]
    else:
        argv = ["python3", "-c", TORCH_OP]
    done = subprocess.run(
        ["docker", "run", "--rm", "--device", "nvidia.com/gpu=all", *mount, ref, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if mutant:
        try:
            seen = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"runs": False, "code": None, "detail": (done.stderr or done.stdout)[-300:]}
        return {
            "runs": bool(seen.get("ok")),
            "code": seen.get("code"),
            "detail": seen.get("error") or "kernel ran, output right",
        }
    return {
        "runs": done.returncode == 0,
        "code": None if done.returncode == 0 else "error",
        "detail": done.stdout.strip()[-80:] if done.returncode == 0 else done.stderr.strip()[-300:],
    }


def main(out: Path) -> int:
    gpu, name, driver = host()
    client = docker.from_env(timeout=1800)
    rows = []
    for ref, mutant in [*((f"gpuhost/mutant:mutant-{m}", m) for m in MUTANTS), *((r, None) for r in REAL)]:
        t0 = time.monotonic()
        try:  # the machine has 128 GB: room for cuobjdump on every CUDA library at once
            audit = audit_image(client, ref, Path("build"), memory="96g")
        except AuditError as exc:
            rows.append(
                {
                    "image": ref,
                    "predicted": "?",
                    "predicted_code": None,
                    "reason": str(exc)[-300:],
                    "measured": "-",
                    "detail": "",
                    "agree": False,
                    "audit_s": None,
                    "how": "failed",
                    "total_s": None,
                }
            )
            print(f"{ref}: audit failed: {exc}", flush=True)
            continue
        save(audit, Path("build"))
        v = predict(audit.doc, gpu, driver)
        m = measure(ref, mutant)
        predicted_runs = v.mark != FAILS
        agree = predicted_runs == m["runs"] and (
            m["runs"] or v.code is None or m["code"] is None or v.code == m["code"] or m["code"] == "error"
        )
        rows.append(
            {
                "image": ref,
                "predicted": v.mark,
                "predicted_code": v.code,
                "reason": v.reasons[0],
                "measured": "runs" if m["runs"] else f"fails ({m['code']})",
                "detail": m["detail"],
                "agree": agree,
                "audit_s": round(audit.seconds, 1),
                "how": audit.how,
                "total_s": round(time.monotonic() - t0, 1),
            }
        )
        print(
            f"{ref}: predicted {v.mark} {v.code or ''} / measured {rows[-1]['measured']}: "
            f"{'agree' if agree else 'DISAGREE'}",
            flush=True,
        )
    (out / "oracle.json").write_text(
        json.dumps({"gpu": name, "cc": f"{gpu.cc[0]}.{gpu.cc[1]}", "driver": driver, "rows": rows}, indent=1)
    )
    lines = [
        f"GPU {name} (compute capability {gpu.cc[0]}.{gpu.cc[1]}), driver {driver}",
        "",
        "| image | predicted | measured | agree | audit |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['image']} | {r['predicted']} {r['predicted_code'] or ''} | {r['measured']} | "
        f"{'yes' if r['agree'] else 'NO'} "
        f"| {r['audit_s']} s ({r['how']}) |"
        for r in rows
    ]
    (out / "oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))

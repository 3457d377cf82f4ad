"""`invoke build --jobs 2` against the real engine: independent cells build at the same time, a cell
never before the parent it builds on, and a failed cell still blocks only its own dependants."""

from __future__ import annotations

import pytest
import yaml

from imagematrix.core import status

pytestmark = pytest.mark.docker

FRAGMENTS = {
    "sleep-a": "RUN sleep 4 && echo a > /a\n",
    "sleep-b": "RUN sleep 4 && echo b > /b\n",
    "needs-a": "RUN test -f /a && echo c > /c\n",
    "broken": "RUN echo 'this step fails on purpose' && exit 3\n",
    "never": "RUN echo never > /never\n",
}


def test_jobs_2_builds_independent_cells_together_and_keeps_the_order_and_the_blocking(
    invoke, image_namespace, tmp_path
):
    frags = tmp_path / "fragments"
    frags.mkdir()
    for name, text in FRAGMENTS.items():
        (frags / f"{name}.Dockerfile").write_text(text)
    doc = {
        "schema": 1,
        "image": f"{image_namespace}-jobs/tiny",
        "python": ["3.13"],
        "cuda": {"1.0": {"torch_cuda": "1.0", "bases": {"devel": "debian:trixie-slim"}}},
        "targets": {
            "a": {"base": "devel", "fragments": ["sleep-a"]},
            "b": {"base": "devel", "fragments": ["sleep-b"]},
            "c": {"extends": "a", "fragments": ["needs-a"]},
            "bad": {"base": "devel", "fragments": ["broken"]},
            "d": {"extends": "bad", "fragments": ["never"]},
        },
        "build": {"fragments_dir": str(frags)},
    }
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--jobs", "2", "--no-cache")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 cell(s), 2 at a time" in done.stdout
    rec = {cid.split("-")[-1]: r["build"] for cid, r in status.read_raw(out).items()}
    assert {k: v["state"] for k, v in rec.items()} == {
        "a": "built",
        "b": "built",
        "c": "built",
        "bad": "failed",
        "d": "blocked",
    }
    assert rec["d"]["blocked_by"] == "cu1.0-py3.13-bad"
    assert rec["a"]["started"] < rec["b"]["ended"] and rec["b"]["started"] < rec["a"]["ended"]  # at the same time
    assert rec["c"]["started"] >= rec["a"]["ended"]  # never before its parent
    assert "cell cu1.0-py3.13-bad failed" in done.stderr


def test_ctrl_c_stops_every_running_build_and_records_each_as_interrupted(
    invoke_command, image_namespace, tmp_path, wait_for
):
    import signal
    import subprocess
    from pathlib import Path

    frags = tmp_path / "fragments"
    frags.mkdir()
    for n in ("1", "2"):
        (frags / f"nap{n}.Dockerfile").write_text(f"RUN echo nap{n} && sleep 600\n")
    doc = {
        "schema": 1,
        "image": f"{image_namespace}-jobs/naps",
        "python": ["3.13"],
        "cuda": {"1.0": {"torch_cuda": "1.0", "bases": {"devel": "debian:trixie-slim"}}},
        "targets": {"n1": {"base": "devel", "fragments": ["nap1"]}, "n2": {"base": "devel", "fragments": ["nap2"]}},
        "build": {"fragments_dir": str(frags)},
    }
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "build"
    proc = subprocess.Popen(
        invoke_command("build", "--matrix", str(matrix), "--out", str(out), "--jobs", "2"),
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = [out / "logs" / f"cu1.0-py3.13-n{n}.log" for n in ("1", "2")]
    try:
        wait_for(
            lambda: all(p.is_file() and "sleep 600" in p.read_text() for p in logs) or proc.poll() is not None,
            180,
            "both sleeping steps",
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert (
        "cu1.0-py3.13-n1, cu1.0-py3.13-n2 were stopped" in stderr
        or "cu1.0-py3.13-n2, cu1.0-py3.13-n1 were stopped" in stderr
    )
    for cid, r in status.read_raw(out).items():
        assert r["build"]["state"] == "failed" and r["build"]["interrupted"] is True, (cid, r["build"])
    ps = subprocess.run(["pgrep", "-f", f"{image_namespace}-jobs/naps"], capture_output=True, text=True, check=False)
    wait_for(
        lambda: (
            subprocess.run(
                ["pgrep", "-f", f"tag {image_namespace}-jobs/naps"], capture_output=True, check=False
            ).returncode
            == 1
        ),
        30,
        f"no docker build left ({ps.stdout.strip()})",
    )

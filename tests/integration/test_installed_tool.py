"""imagematrix as another team uses it: installed from the repository into a fresh venv, run from an
empty directory outside it. init -> build -> test -> status, every output in that directory's build/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


INSTALL_STARTED: list[float] = []


@pytest.fixture(scope="module")
def tool(tmp_path_factory) -> Path:
    """The `imagematrix` command of a fresh venv where the repository is pip-installed (a wheel, not editable)."""
    import time

    INSTALL_STARTED.append(time.monotonic())
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert pip.returncode == 0, f"pip install {ROOT} failed:\n{pip.stdout[-2000:]}\n{pip.stderr[-3000:]}"
    return venv / "bin" / "imagematrix"


def run(tool: Path, cwd: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEMATRIX_MATRIX", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_installed_suite_is_the_packaged_one(tool):
    python = tool.parent / "python"
    where = subprocess.run(
        [str(python), "-c", "from imagematrix.core.resources import gpu_suite; print(gpu_suite())"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tool.parents[1]), f"the suite came from {where}, not the installed package"
    assert {p.name for p in (ROOT / "tests" / "gpu").glob("*.py")} <= {p.name for p in Path(where).glob("*.py")}


def test_init_refuses_to_overwrite_a_project(tool, tmp_path):
    (tmp_path / "matrix.yaml").write_text("mine\n")
    done = run(tool, tmp_path, "init")
    assert done.returncode == 2
    assert "already exist" in done.stderr and "--directory" in done.stderr
    assert (tmp_path / "matrix.yaml").read_text() == "mine\n"


def test_init_build_test_status_from_an_empty_directory(tool, tmp_path, example_images):
    """The starter is the bundled example: its images exist (example_images), so the build recognises them."""
    project = tmp_path / "team"
    project.mkdir()
    steps = {}
    for step in (("init",), ("build",), ("test",), ("status",)):
        done = run(tool, project, *step)
        steps[step[0]] = done
        assert done.returncode == 0, (
            f"imagematrix {' '.join(step)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    assert (project / "matrix.yaml").is_file() and (project / "dockerfiles" / "torch.Dockerfile").is_file()
    assert "2 skipped" in steps["build"].stdout or "2 built" in steps["build"].stdout, steps["build"].stdout[-2000:]
    record = json.loads((project / "build" / "status.json").read_text())
    cells = {c.id for c in example_images["matrix"].cells}
    assert set(record["cells"]) == cells
    for cid in cells:
        assert record["cells"][cid]["test"]["state"] == "passed", record["cells"][cid]["test"]
        assert (project / "build" / "test-results" / f"{cid}.xml").is_file()
    assert "passed" in steps["status"].stdout


def test_another_teams_notebook_stack_is_green_where_it_holds_no_torch_and_red_where_it_lies(tool, tmp_path):
    """`init --example notebooks`: a base, JupyterLab, its slim copy (phase 1), one torch target (phase 2).
    Phase 1 from an empty directory to green; then the base made to claim torch fails exactly there."""
    import shutil
    import time

    wheels = sorted((ROOT / "examples" / "notebooks.wheelhouse").glob("*.whl"))
    if not wheels:
        pytest.fail(
            "examples/notebooks.wheelhouse is empty: bash scripts/example-wheelhouse.sh notebooks (.ci/run does)",
            pytrace=False,
        )
    project = tmp_path / "notebooks"
    started = time.monotonic()
    done = run(tool, tmp_path, "init", "--example", "notebooks", "--directory", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    for wheel in wheels:  # what `pip download` (the line init printed) would fetch
        shutil.copy(wheel, project / "notebooks.wheelhouse")
    for step in (("build", "--phase", "1"), ("test", "--phase", "1")):
        done = run(tool, project, *step)
        assert done.returncode == 0, f"imagematrix {' '.join(step)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    print(f"notebooks phase 1 from init to green: {time.monotonic() - started:.0f}s")
    record = json.loads((project / "build" / "status.json").read_text())["cells"]
    assert {c: r["test"]["state"] for c, r in record.items()} == dict.fromkeys(
        ["cpu-py3.11-base", "cpu-py3.11-lab", "cpu-py3.11-lab-slim"], "passed"
    )
    assert "holds no torch (targets.lab.torch: false): no torch checks" in done.stdout
    slim_log = (project / "build" / "test-results" / "cpu-py3.11-lab-slim.log").read_text()  # pytest's own words
    assert "keeps test directories on purpose (targets.lab-slim.options.keep_tests)" in slim_log

    # The liar: base says nothing about torch (so it claims it, as a root target) and has none.
    matrix = project / "matrix.yaml"
    matrix.write_text(matrix.read_text().replace("    torch: false\n", "", 1))
    for step, code in ((("build", "--target", "base"), 0), (("test", "--target", "base", "--no-reuse"), 1)):
        done = run(tool, project, *step)
        assert done.returncode == code, f"imagematrix {' '.join(step)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    test = json.loads((project / "build" / "status.json").read_text())["cells"]["cpu-py3.11-base"]["test"]
    assert test["state"] == "failed" and test["failed"] >= 3, test
    assert all("torch" in f["test"] + f["message"] for f in test["failures"]), test["failures"]  # torch's checks only


def test_a_strangers_stack_from_the_docs_alone_is_green(tool, tmp_path):
    """tests/integration/matrices/stranger: written from docs/configuring.md and docs/matrix-schema.md, no
    torch anywhere but CUDA-labelled cells, its own fragments directory (ops/), its own prune step for the
    slim copy, three levels (base -> tools -> tools-slim on a plain base). Phase 1 from an empty directory
    to green with nothing but the installed command."""
    import shutil
    import time

    project = tmp_path / "acme"
    shutil.copytree(ROOT / "tests" / "integration" / "matrices" / "stranger", project)
    started = time.monotonic()
    for step in (("build", "--phase", "1"), ("test", "--phase", "1")):
        done = run(tool, project, *step)
        assert done.returncode == 0, f"imagematrix {' '.join(step)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    install = f", {time.monotonic() - INSTALL_STARTED[0]:.0f}s from pip install" if INSTALL_STARTED else ""
    print(f"stranger phase 1 from an empty directory to green: {time.monotonic() - started:.0f}s{install}")
    cells = ["cu12.9-py3.13-base", "cu12.9-py3.13-tools", "cu12.9-py3.13-tools-slim"]
    record = json.loads((project / "build" / "status.json").read_text())["cells"]
    assert {c: r["test"]["state"] for c, r in record.items()} == dict.fromkeys(cells, "passed")
    assert "holds no torch (targets.tools-slim.torch: false): no torch checks" in done.stdout
    # the slim copy is the team's prune's output: pip gone, its tool still runs on the plain base
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "acme/ops:cu12.9-py3.13-tools-slim",
            "sh",
            "-c",
            "ops-tool && ! python -c 'import pip' 2>/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0 and ran.stdout.startswith("ops 25.4.0"), ran.stdout + ran.stderr

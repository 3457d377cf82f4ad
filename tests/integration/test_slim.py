"""Slim runtime images on the real engine: the in-image slim checks, and `invoke sizes` on the example images."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from imagematrix.testing import containers as testrun_docker
from imagematrix.testing import grid as testgrid
from imagematrix.testing import suite

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "matrix.yaml"
SLIM_TESTS = "test_slim_runtime.py"
SLIM_CHECKS = {  # every check must run and pass on the example runtime image: none may skip
    "test_test_suites_were_pruned",
    "test_kept_what_cpp_extension_needs",
    "test_no_second_copy_of_cuda_or_conda",
    "test_symlinks_resolve",
    "test_every_shared_library_resolves",
    "test_torch_imports_in_a_fresh_interpreter",
}

pytestmark = pytest.mark.docker


def test_slim_checks_pass_in_the_example_runtime_image(example_images, docker_client, tmp_path):
    """tests/gpu/test_slim_runtime.py in a real container: no network, unprivileged, suite read-only."""
    import docker

    m = example_images["matrix"]
    cell = next(c for c in m.cells if c.target.kind == "runtime")
    image = docker_client.images.get(cell.ref)
    tools = suite.ensure_tools(example_images["build_dir"])  # pytest from the host, as the GPU suite gets it
    opts = suite.Options(suite=suite.SUITES["smoke"], matrix=str(EXAMPLE), build_dir=tmp_path)
    paths = suite.CellPaths.of(tmp_path, cell.id)
    owner = testrun_docker.CONTAINER_UID if os.geteuid() == 0 else None
    for d in (paths.results, paths.cache, *(paths.cache / sub for sub in suite.CACHE_DIRS.values())):
        d.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(d, owner, owner)
    name = f"imagematrix-test-slim-{os.getpid()}-{int(time.time())}"
    spec = testrun_docker.container_spec(
        image.id,
        image.attrs["Config"].get("Env") or [],
        opts,
        cell.id,
        paths,
        tools,
        testrun_docker.detect_gpu(docker_client.info()),
        testrun_docker.container_user(os.geteuid(), os.getegid()),
        name,
    )
    junit_in = f"{testrun_docker.RESULTS_IN}/{testrun_docker.JUNIT_NAME}"
    spec["command"] = [
        "python",
        "-m",
        "pytest",
        *suite.pytest_args(opts, f"{testrun_docker.TESTS_IN}/{SLIM_TESTS}", junit_in, cell.id),
    ]
    spec["network_disabled"] = True  # a slim image must not need to fetch anything to work
    container = docker_client.containers.create(**spec)
    try:
        container.start()
        code = container.wait(timeout=900)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    summary = testgrid.parse_junit(paths.results / testrun_docker.JUNIT_NAME)
    assert code == 0, f"slim checks failed in {cell.ref} (exit {code}):\n{logs[-6000:]}"
    assert (summary.passed, summary.failed, summary.skipped, summary.errors) == (len(SLIM_CHECKS), 0, 0, 0), logs[
        -4000:
    ]
    passed = {  # from the JUnit file: pytest's verbose lines differ with and without xdist
        case.get("name")
        for case in ElementTree.parse(paths.results / testrun_docker.JUNIT_NAME).iter("testcase")
        if not any(child.tag in ("failure", "error", "skipped") for child in case)
    }
    assert passed == SLIM_CHECKS, logs[-4000:]


def _sizes(invoke, build_dir: Path, *args: str):
    return invoke("sizes", "--out", str(build_dir), *args, timeout=600)


def test_invoke_sizes_measures_records_and_plots_the_example_images(example_images, invoke, tmp_path):
    done = _sizes(invoke, tmp_path, "--matrix", str(EXAMPLE))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads((tmp_path / "status.json").read_text())["cells"]
    m = example_images["matrix"]
    by_kind = {c.target.kind: records[c.id]["sizes"] for c in m.cells}
    devel, runtime = by_kind["devel"], by_kind["runtime"]
    for rec in (devel, runtime):
        assert rec["state"] == "ok", rec["summary"]
        assert sum(rec["buckets"].values()) == rec["size_bytes"]  # the bars add up to the image
        assert {"base", "Python", "other"} <= set(rec["buckets"])  # and the installed packages, biggest first
        assert rec["buckets"]["nvidia"] > 1e9 and rec["buckets"]["torch"] > 5e8  # CUDA torch wheels
        assert rec["layers"] and rec["dirs"]
        assert rec["layer_overhead_bytes"] < 0.01 * rec["size_bytes"]  # no file is stored twice
    assert runtime["parent"]["saved_bytes"] > 0 and runtime["parent"]["env_saved_bytes"] > 0
    assert runtime["layers"][0]["command"].startswith("COPY /opt/venv")
    assert "vs devel:" in done.stdout and "layers:" in done.stdout and "dirs:" in done.stdout
    png = tmp_path / "reports" / "sizes.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_invoke_sizes_fails_over_budget_and_reports_unbuilt_images(example_images, invoke, tmp_path, image_namespace):
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["build"]["fragments_dir"] = str(ROOT / "dockerfiles")
    doc["targets"]["runtime"]["budget_gb"] = 1
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = _sizes(invoke, tmp_path / "b1", "--matrix", str(over), "--target", "runtime", "--no-plot")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "over budget" in done.stderr and "biggest layer" in done.stderr
    assert "targets.runtime.options.drop_static_libs: true" in done.stderr

    doc["image"] = f"{image_namespace}-sizes/never-built"
    absent = tmp_path / "absent.yaml"
    absent.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = _sizes(invoke, tmp_path / "b2", "--matrix", str(absent), "--no-plot")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imagematrix build --matrix {absent} --cuda" in done.stdout and "was never built" in done.stdout
    rec = json.loads((tmp_path / "b2" / "status.json").read_text())["cells"]
    assert {r["sizes"]["state"] for r in rec.values()} == {"missing"}


def test_report_diffs_two_builds_package_lists(example_images, invoke):
    """devel against its slim runtime: the runtime base lacks the venv and pip wheels Debian ships for devel."""
    refs = example_images["refs"]
    done = invoke("report", "--diff-packages", refs["devel"], "--diff-packages", refs["runtime"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"packages {refs['devel']} -> {refs['runtime']}:" in done.stdout
    assert "- debian python3.13-venv " in done.stdout and "python torch" not in done.stdout  # the same torch in both

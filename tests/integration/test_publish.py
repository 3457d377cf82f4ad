"""`invoke publish` against a real registry: only an image whose required suite passed on a GPU,
on that very image, reaches its tags; everything else is refused with its reason."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from imagematrix.core import history, status
from imagematrix.testing.suite import SUITES_SECTION

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CELL = "cu1.0-py3.13-plain"
H200 = {"driver": "580.159.04", "driver_cuda": "13.0", "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}]}


@pytest.fixture(scope="module")
def built(invoke, image_namespace, tmp_path_factory, docker_client, hardening_matrix):
    """The tiny 'plain' cell built for real; its build directory and image id."""
    root = tmp_path_factory.mktemp("publish")
    matrix = hardening_matrix(root, f"{image_namespace}-publish/tiny")
    out = root / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    image_id = status.read_raw(out)[CELL]["build"]["image_id"]
    return {"matrix": matrix, "out": out, "image_id": image_id, "root": root}


def _gpu_run(out: Path, image_id: str, **overrides) -> None:
    """The smoke record a GPU runner's `nox -s gpu_smoke-3.13 -- --require-gpu` leaves (this host has no GPU)."""
    run = {"state": "passed", "image_id": image_id, "require_gpu": True, "gpu": "nvidia runtime gpu 0", "gpu_info": H200,
           "finished": "2026-11-30T02:10:00Z", "passed": 33, "failed": 0, "skipped": 36, **overrides}
    status.update_cell(out, CELL, SUITES_SECTION, {"smoke": run})


def _publish(invoke, built, *extra: str):
    return invoke("publish", "--matrix", str(built["matrix"]), "--out", str(built["out"]), "--target", "plain", *extra)


def _registry_digest(registry: str, repo: str, tag: str) -> str:
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    return urllib.request.urlopen(req, timeout=10).headers["Docker-Content-Digest"]


def test_refusals_name_the_reason_and_push_nothing(invoke, built, registry):
    repo = f"{registry}/refused/tiny"
    done = _publish(invoke, built, "--repository", repo)
    assert done.returncode == 1 and f"refused {CELL}: untested: no smoke run recorded" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], require_gpu=None, gpu="none", gpu_info=None)
    done = _publish(invoke, built, "--repository", repo)
    assert "was not on a GPU (--require-gpu)" in done.stdout, done.stdout
    _gpu_run(built["out"], "sha256:" + "0" * 64)
    done = _publish(invoke, built, "--repository", repo)
    assert "tested another image" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], state="failed", failed=2)
    done = _publish(invoke, built, "--repository", repo)
    assert "its smoke run failed" in done.stdout, done.stdout
    (built["root"] / "stale").mkdir(exist_ok=True)
    doc = yaml.safe_load(built["matrix"].read_text())
    doc["targets"]["plain"]["fragments"] = ["tiny-quick", "tiny-noisy"]  # another render, the same tag
    stale = built["root"] / "stale" / "matrix.yaml"
    stale.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = invoke("publish", "--matrix", str(stale), "--out", str(built["out"]), "--target", "plain", "--repository", repo)
    assert "stale: matrix.yaml or a fragment changed" in done.stdout, done.stdout
    with pytest.raises(urllib.error.HTTPError):
        _registry_digest(registry, "refused/tiny", "cu1.0-py3.13-plain")
    assert "publish" not in status.read_raw(built["out"])[CELL]


def test_a_cell_tested_on_a_gpu_is_pushed_with_an_immutable_tag_and_its_digest_recorded(invoke, built, registry, docker_client):
    _gpu_run(built["out"], built["image_id"])
    repo = f"{registry}/team/tiny"
    done = _publish(invoke, built, "--repository", repo, "--dry-run")
    assert done.returncode == 0 and f"would publish {CELL}" in done.stdout, done.stdout
    done = _publish(invoke, built, "--repository", repo)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(built["out"])[CELL]["publish"]
    assert rec["image_id"] == built["image_id"] and rec["tags"][0] == "cu1.0-py3.13-plain"
    assert rec["tags"][1].startswith("cu1.0-py3.13-plain-") and len(rec["tags"][1]) == len("cu1.0-py3.13-plain-") + 12
    for tag in rec["tags"]:
        assert _registry_digest(registry, "team/tiny", tag) == rec["digest"]
    tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/team/tiny/tags/list", timeout=10))["tags"]
    assert sorted(tags) == sorted([*rec["tags"], rec["record_tag"]])
    assert rec["record_tag"] == rec["tags"][1] + ".imagematrix"
    pulled = docker_client.images.pull(f"{repo}@{rec['digest']}")  # by digest, as a GPU runner would
    assert pulled.id == built["image_id"]
    # What travels with it: the test record and the package list, in a one-file image beside it.
    assert not docker_client.images.list(name=f"{repo}:{rec['record_tag']}")  # publish leaves no local copy of it
    record_image = docker_client.images.pull(repo, tag=rec["record_tag"])
    assert record_image.labels["imagematrix.record-of"] == f"{repo}@{rec['digest']}"
    box = docker_client.containers.create(record_image.id, command=["x"])
    try:
        bits, _ = box.get_archive("/imagematrix.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            doc = json.load(tar.extractfile("imagematrix.json"))
    finally:
        box.remove()
        docker_client.images.remove(record_image.id, force=True)
    assert doc["image"] == f"{repo}@{rec['digest']}" and doc["suites"]["smoke"]["require_gpu"] is True
    assert "libc6" in doc["packages"]["debian"]  # the tiny image has no Python: its Debian packages only


def test_a_registry_that_is_down_is_a_clean_error_and_nothing_is_recorded(invoke, built):
    _gpu_run(built["out"], built["image_id"])
    record_before = status.read_raw(built["out"])[CELL].get("publish")
    done = _publish(invoke, built, "--repository", "127.0.0.1:9/down/tiny")
    assert done.returncode == 1 and "pushing 127.0.0.1:9/down/tiny:cu1.0-py3.13-plain-" in done.stderr  # the immutable tag first
    assert "connection refused" in done.stderr and "nothing more was recorded as published" in done.stderr
    assert "Traceback" not in done.stderr
    assert status.read_raw(built["out"])[CELL].get("publish") == record_before


def test_a_real_cpu_smoke_run_records_its_suite_and_is_refused(example_images, tmp_path):
    """A real run without --require-gpu (this host has no GPU) is recorded per suite and never counts."""
    env = {k: v for k, v in os.environ.items() if k != history.STATE_ENV}
    out = tmp_path / "b"
    example = str(ROOT / "examples" / "matrix.yaml")
    done = subprocess.run([sys.executable, "-m", "imagematrix.testing", "--matrix", example, "--out", str(out),
                           "--target", "runtime"], capture_output=True, text=True, env=env, timeout=1500, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    run = status.read_raw(out)["cu13.2-py3.13-runtime"][SUITES_SECTION]["smoke"]
    assert run["state"] == "passed" and "require_gpu" not in run
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "publish", "--matrix", example,
                           "--out", str(out), "--target", "runtime", "--dry-run"], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "was not on a GPU" in done.stdout, done.stdout


def test_candidates_are_pushed_by_the_build_tested_by_digest_on_a_runner_and_promoted_as_tested(
        invoke, built, registry, docker_client, tmp_path):
    cand = f"{registry}/cand/tiny"
    done = invoke("build", "--matrix", str(built["matrix"]), "--out", str(built["out"]), "--target", "plain",
                  "--push-candidates", cand)
    assert done.returncode == 0 and f"candidate {CELL}: {cand}@sha256:" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    candidate = status.read_raw(built["out"])[CELL]["candidate"]
    assert candidate["tag"].startswith("cu1.0-py3.13-plain-") and candidate["image_id"] == built["image_id"]
    assert _registry_digest(registry, "cand/tiny", candidate["tag"]) == candidate["digest"]

    # A GPU runner without the image: the suite pulls the candidate, tests it, and records its digest.
    ref = yaml.safe_load(built["matrix"].read_text())["image"] + ":" + CELL
    docker_client.images.remove(ref)  # the tag only: the candidate's tag still holds the image
    runner = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "imagematrix.testing", "--matrix", str(built["matrix"]), "--out", str(runner),
                    "--target", "plain", "--candidates", cand], capture_output=True, text=True, timeout=600, check=False)
    run = status.read_raw(runner)[CELL][SUITES_SECTION]["smoke"]
    assert run["digest"] == candidate["digest"] and run["image_id"] == built["image_id"]
    assert docker_client.images.get(ref).id == built["image_id"]

    # Publishing the candidate: only when the GPU runs tested that digest; then its digest is what the tags get.
    rel = f"{registry}/rel/tiny"
    _gpu_run(built["out"], built["image_id"])  # tested on a GPU, but the local image, not the candidate
    done = _publish(invoke, built, "--candidates", cand, "--repository", rel)
    assert done.returncode == 1 and "did not test candidate" in done.stdout, done.stdout
    _gpu_run(built["out"], built["image_id"], digest=candidate["digest"])
    done = _publish(invoke, built, "--candidates", cand, "--repository", rel)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(built["out"])[CELL]["publish"]
    assert rec["digest"] == rec["candidate"] == candidate["digest"]
    for tag in rec["tags"]:
        assert _registry_digest(registry, "rel/tiny", tag) == candidate["digest"]


ARM64_BASE = "imagematrix-base/debian-arm64:trixie-slim"


def test_a_two_platform_release_tag_becomes_one_index_over_the_tested_digests(
        invoke, image_namespace, tmp_path, docker_client, hardening_matrix, registry):
    """linux/amd64 and linux/arm64 (under QEMU) cells of one tag: each published, then one index for the tag."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(ARM64_BASE)
    except ImageNotFound:
        pytest.fail(f"{ARM64_BASE} is missing: IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh", pytrace=False)
    matrix = hardening_matrix(tmp_path, f"{image_namespace}-multi/tiny", platforms=["linux/amd64", "linux/arm64"],
                              overrides=[{"platform": "linux/arm64", "bases": {"devel": ARM64_BASE}}])
    out = tmp_path / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    cells = {"linux/amd64": f"{CELL}-amd64", "linux/arm64": f"{CELL}-arm64"}
    for platform, cid in cells.items():
        image = docker_client.images.get(status.read_raw(out)[cid]["build"]["image_id"])
        assert image.attrs["Architecture"] == platform.split("/")[1] and image.labels["imagematrix.platform"] == platform
        status.update_cell(out, cid, SUITES_SECTION, {"smoke": {"state": "passed", "image_id": image.id, "require_gpu": True}})
    repo = f"{registry}/multi/tiny"
    done = invoke("publish", "--matrix", str(matrix), "--out", str(out), "--target", "plain", "--repository", repo)
    assert done.returncode == 0 and f"index {repo}:{CELL}: linux/amd64, linux/arm64" in done.stdout, done.stdout + done.stderr
    req = urllib.request.Request(f"http://{registry}/v2/multi/tiny/manifests/{CELL}", headers={"Accept": ", ".join([
        "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"])})
    index = json.load(urllib.request.urlopen(req, timeout=10))
    got = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    records = status.read_raw(out)
    assert got == {p: records[cid]["publish"]["digest"] for p, cid in cells.items()}

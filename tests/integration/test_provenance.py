"""BuildKit's provenance bound to the tested digest. On an engine whose images live in the containerd image
store (scripts/containerd-engine.sh starts one beside the host's), `imagematrix build` asks for SLSA
provenance (mode=max) and keeps it: the image id the suite records is the index that carries it, publish
pushes that very index and records where the provenance is, and `verify --chain` holds it to the digest."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagematrix.core import status
from imagematrix.testing.suite import SUITES_SECTION

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
CELL = "cu1.0-py3.13-plain"


@pytest.fixture(scope="module")
def containerd_engine(docker_client) -> Iterator[str]:
    """The second engine's DOCKER_HOST, with the tiny matrix's base copied in from the host's engine; its
    images go afterwards (the engine stays up for the next run)."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "containerd-engine.sh")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    host = done.stdout.strip().splitlines()[-1]
    here = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    save = subprocess.Popen(["docker", "save", "debian:trixie-slim"], stdout=subprocess.PIPE, env=here)
    load = subprocess.run(["docker", "load"], stdin=save.stdout, capture_output=True, env={**here, "DOCKER_HOST": host})
    assert save.wait() == 0 and load.returncode == 0, load.stderr
    yield host
    subprocess.run(["docker", "image", "prune", "-af"], capture_output=True, env={**here, "DOCKER_HOST": host})


def _index(registry: str, repo: str, reference: str) -> dict:
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"},
    )
    return json.load(urllib.request.urlopen(req, timeout=10))


def test_the_tested_image_is_the_pushed_index_and_its_provenance_holds_in_the_chain(
    invoke, containerd_engine, registry, hardening_matrix, image_namespace, tmp_path, monkeypatch
):
    monkeypatch.setenv("DOCKER_HOST", containerd_engine)
    matrix = hardening_matrix(tmp_path, f"{image_namespace}-provenance/tiny")
    out = tmp_path / "build"
    done = invoke("build", "--matrix", str(matrix), "--out", str(out), "--target", "plain", "--no-audit")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "provenance kept (containerd image store)" in done.stdout, done.stdout[-3000:]
    image_id = status.read_raw(out)[CELL]["build"]["image_id"]

    # What a GPU runner's suite leaves for that image id (this host has no GPU), then publish with a key.
    run = {"state": "passed", "image_id": image_id, "require_gpu": True, "gpu": "nvidia runtime gpu 0"}
    run |= {"gpu_info": {"driver": "580.159.04", "devices": [{"name": "NVIDIA H200", "compute_capability": "9.0"}]}}
    run |= {"finished": "2026-12-08T02:10:00Z", "passed": 33, "failed": 0, "skipped": 36}
    status.update_cell(out, CELL, SUITES_SECTION, {"smoke": run})
    done = invoke("keygen", "--out", str(tmp_path / "keys"))
    assert done.returncode == 0, done.stderr
    repo = f"{registry}/provenance/tiny"
    done = invoke(
        "publish", "--matrix", str(matrix), "--out", str(out), "--target", "plain", "--repository", repo,
        "--signing-key", str(tmp_path / "keys" / "imagematrix.key"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rec = status.read_raw(out)[CELL]["publish"]
    assert rec["digest"] == image_id  # the digest pushed is the image the suite ran: no second build
    index = _index(registry, "provenance/tiny", rec["digest"])
    kinds = [(m.get("annotations") or {}).get("vnd.docker.reference.type") for m in index["manifests"]]
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json" and "attestation-manifest" in kinds
    assert rec["provenance"] in {m["digest"] for m in index["manifests"]}
    layers = _index(registry, "provenance/tiny", rec["provenance"])["layers"]
    assert any(
        lay["annotations"]["in-toto.io/predicate-type"].startswith("https://slsa.dev/provenance/") for lay in layers
    )

    done = subprocess.run(
        ["imagematrix", "verify", f"{repo}:{rec['tags'][0]}", "--key", str(tmp_path / "keys" / "imagematrix.pub"),
         "--chain", "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"chain: provenance: holds: BuildKit's SLSA provenance names {image_id[:19]}" in done.stdout, done.stdout

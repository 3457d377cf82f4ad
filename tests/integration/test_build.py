"""`invoke build` against the real engine: tiny matrices (seconds) and the example (torch, minutes)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MATRICES = Path(__file__).parent / "matrices"

pytestmark = pytest.mark.docker

TINY = ["devel", "broken", "extra", "runtime", "broken-runtime"]
DEVEL_RUN = "mkdir -p /opt/venv/cache"  # devel's RUN, in devel's own build and in its dependants'


def cid(target: str) -> str:
    return f"cu1.0-py3.13-{target}"


class TinyMatrix:
    """A copy of a test matrix with this session's image name; ``set_fail`` edits the broken target."""

    def __init__(self, source: Path, dest_dir: Path, image: str):
        self.path = dest_dir / source.name
        self.doc = yaml.safe_load(source.read_text())
        self.doc["image"] = image
        self.doc["build"]["fragments_dir"] = str(MATRICES / self.doc["build"]["fragments_dir"])
        self.write()

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def ref(self, target: str) -> str:
        return f"{self.doc['image']}:{cid(target)}"

    def set_fail(self, fail: bool) -> None:
        self.doc["targets"]["broken"]["options"]["fail"] = fail
        self.write()


def read_status(build_dir: Path) -> dict:
    doc = json.loads((build_dir / "status.json").read_text())
    assert doc["schema"] == 1
    return doc["cells"]


def states(build_dir: Path) -> dict[str, str]:
    return {c: rec["build"]["state"] for c, rec in read_status(build_dir).items()}


@pytest.fixture(scope="module")
def tiny(image_namespace, tmp_path_factory) -> TinyMatrix:
    return TinyMatrix(MATRICES / "tiny.yaml", tmp_path_factory.mktemp("tiny"), f"{image_namespace}-build/tiny")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-build") / "build"


@pytest.fixture(scope="module")
def first_build(tiny, build_dir, invoke) -> subprocess.CompletedProcess:
    return invoke("build", "--matrix", str(tiny.path), "--out", str(build_dir), timeout=600)


def test_a_broken_cell_fails_blocks_its_dependants_and_the_others_build(first_build, build_dir, tiny, docker_client):
    assert first_build.returncode == 1, first_build.stdout + first_build.stderr
    assert states(build_dir) == {
        cid("devel"): "built",
        cid("broken"): "failed",
        cid("extra"): "built",
        cid("runtime"): "built",
        cid("broken-runtime"): "blocked",
    }
    broken = read_status(build_dir)[cid("broken")]["build"]
    assert broken["step"].startswith("#") and "[broken 1/2] RUN" in broken["step"]
    assert "exit code: 3" in broken["error"]
    assert Path(broken["log"]) == build_dir / "logs" / f"{cid('broken')}.log"
    assert "failing on purpose" in Path(broken["log"]).read_text()
    assert read_status(build_dir)[cid("broken-runtime")]["build"]["blocked_by"] == cid("broken")
    # The error names the cell, the failing step, the log and its last lines.
    err = first_build.stderr
    assert f"cell {cid('broken')} failed at step #" in err
    assert "[broken 1/2] RUN" in err and broken["log"] in err and "| " in err and "failing on purpose" in err
    assert f"blocked, not attempted: {cid('broken-runtime')}" in err
    assert "1 failed, 1 blocked" in first_build.stdout  # the summary
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker_client.images.get(tiny.ref("broken-runtime"))


def test_images_carry_the_contract_labels_and_cell_json(first_build, tiny, docker_client, run_container):
    for target in ("devel", "runtime", "extra"):
        image = docker_client.images.get(tiny.ref(target))
        labels = image.labels
        assert labels["imagematrix.cell"] == cid(target)
        assert labels["imagematrix.target"] == target
        assert labels["imagematrix.build-hash"].startswith("sha256:")
        code, out = run_container(tiny.ref(target), ["cat", "/etc/imagematrix/cell.json"])
        assert code == 0, out
        manifest = json.loads(out)
        assert manifest["id"] == cid(target)
        assert manifest["input_hash"] == labels["imagematrix.input-hash"]


def test_the_ca_bundle_reaches_the_build_but_not_the_image(first_build, tiny, run_container):
    code, out = run_container(
        tiny.ref("runtime"), ["sh", "-c", "cat /opt/venv/ca-certificates-seen; ls /run/secrets 2>&1 || true"]
    )
    assert code == 0, out
    seen, _, rest = out.partition("\n")
    assert int(seen) > 10  # certificates counted inside the RUN, from the secret
    assert "ca-bundle" not in rest


def test_runtime_is_smaller_than_devel(first_build, tiny, docker_client):
    devel = docker_client.images.get(tiny.ref("devel")).attrs["Size"]
    runtime = docker_client.images.get(tiny.ref("runtime")).attrs["Size"]
    assert runtime < devel


def test_status_records_every_built_cell(first_build, build_dir, tiny, docker_client):
    rec = read_status(build_dir)[cid("runtime")]["build"]
    image = docker_client.images.get(tiny.ref("runtime"))
    assert rec["image_id"] == image.id and rec["size_bytes"] == image.attrs["Size"]
    assert rec["cached"] is False and rec["duration_s"] >= 0
    assert rec["started"].endswith("Z") and rec["ended"] >= rec["started"]
    assert rec["input_hash"] == image.labels["imagematrix.input-hash"]
    assert rec["build_hash"] == image.labels["imagematrix.build-hash"]
    assert Path(rec["log"]).is_file()


def step_result(build_dir: Path, target: str, step: str) -> str:
    """CACHED or DONE (or ERROR) for the step whose heading contains ``step`` in a cell's build log."""
    log = (build_dir / "logs" / f"{cid(target)}.log").read_text().splitlines()
    number = next(line.split()[0] for line in log if step in line and line.split(" ", 2)[1].startswith("["))
    return next(
        line.split()[1]
        for line in log
        if line.startswith(f"{number} ") and line.split()[1] in ("CACHED", "DONE", "ERROR:")
    )


def test_a_family_builds_its_shared_stages_once(first_build, build_dir):
    # runtime's Dockerfile repeats devel's stage; BuildKit takes it from the cache devel's build left
    # (devel's own build may find it cached too: BuildKit's cache outlives test sessions).
    assert step_result(build_dir, "runtime", DEVEL_RUN) == "CACHED"


def test_status_task_shows_the_records(first_build, build_dir, tiny, invoke):
    done = invoke("status", "--out", str(build_dir))
    assert done.returncode == 0, done.stderr
    for target in TINY:
        assert cid(target) in done.stdout
    assert "blocked by" in done.stdout and "failed" in done.stdout and "built" in done.stdout


def test_reruns_build_only_what_failed_was_blocked_or_is_missing(first_build, build_dir, tiny, invoke, docker_client):
    ids = {t: docker_client.images.get(tiny.ref(t)).id for t in ("devel", "extra", "runtime")}
    args = ("build", "--matrix", str(tiny.path), "--out", str(build_dir))

    again = invoke(*args)  # nothing changed: the failed cell is retried, the rest skipped
    assert again.returncode == 1
    assert states(build_dir) == {
        cid("devel"): "skipped",
        cid("broken"): "failed",
        cid("extra"): "skipped",
        cid("runtime"): "skipped",
        cid("broken-runtime"): "blocked",
    }

    tiny.set_fail(False)  # fix the fragment's input: only broken and its dependant are built
    fixed = invoke(*args)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert states(build_dir) == {
        cid("devel"): "skipped",
        cid("broken"): "built",
        cid("extra"): "skipped",
        cid("runtime"): "skipped",
        cid("broken-runtime"): "built",
    }
    assert {t: docker_client.images.get(tiny.ref(t)).id for t in ids} == ids

    docker_client.images.remove(tiny.ref("extra"))  # a missing image is built again
    missing = invoke(*args)
    assert missing.returncode == 0, missing.stdout + missing.stderr
    assert states(build_dir)[cid("extra")] == "built"
    assert sorted(states(build_dir).values()).count("skipped") == 4

    unchanged = invoke(*args)  # everything unchanged: all skipped
    assert unchanged.returncode == 0
    assert set(states(build_dir).values()) == {"skipped"}
    assert all(read_status(build_dir)[cid(t)]["build"]["cached"] for t in TINY)

    forced = invoke(*args, "--force")  # --force rebuilds (from BuildKit's cache)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert set(states(build_dir).values()) == {"built"}
    assert step_result(build_dir, "runtime", "[runtime 2/3] COPY") == "CACHED"

    fresh = invoke(*args, "--no-cache")  # without cache, yet each shared stage once per run
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert set(states(build_dir).values()) == {"built"}
    assert step_result(build_dir, "devel", DEVEL_RUN) == "DONE"
    assert step_result(build_dir, "runtime", DEVEL_RUN) == "CACHED"
    assert step_result(build_dir, "runtime", "[prune-runtime 1/1] RUN") == "DONE"
    from docker.errors import ImageNotFound

    for target in TINY:  # the images the rebuild replaced are removed, not left dangling
        rec = read_status(build_dir)[cid(target)]["build"]
        assert rec["replaced_image_id"] and rec["replaced_image_id"] != rec["image_id"]
        with pytest.raises(ImageNotFound):
            docker_client.images.get(rec["replaced_image_id"])


def test_an_unknown_base_image_fails_preflight_with_exit_2(tiny, invoke, tmp_path):
    doc = yaml.safe_load(tiny.path.read_text())
    doc["cuda"]["1.0"]["bases"]["devel"] = "imagematrix-test-no-such/base:1"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    done = invoke("build", "--matrix", str(bad), "--out", str(tmp_path / "build"))
    assert done.returncode == 2
    assert "not present and cannot be pulled: imagematrix-test-no-such/base:1" in done.stderr
    assert "nothing was built" in done.stderr


def test_clean_removes_build_outputs_and_only_the_selected_images(first_build, build_dir, tiny, invoke, docker_client):
    from docker.errors import ImageNotFound

    done = invoke("clean", "--out", str(build_dir), "--images", "--matrix", str(tiny.path), "--target", "extra")
    assert done.returncode == 0, done.stderr
    # The builds' history stays (the sheet's expected times and trouble log come from it).
    assert sorted(p.name for p in build_dir.iterdir()) == [".history.lock", ".imagematrix-build", "history.jsonl"]
    assert "kept" in done.stdout and "history.jsonl" in done.stdout
    with pytest.raises(ImageNotFound):
        docker_client.images.get(tiny.ref("extra"))
    docker_client.images.get(tiny.ref("devel"))  # not selected: kept


# --- interruption and concurrency ------------------------------------------------------


@pytest.fixture
def slow(image_namespace, tmp_path) -> TinyMatrix:
    return TinyMatrix(MATRICES / "slow.yaml", tmp_path, f"{image_namespace}-build/slow")


def _docker_builds_of(tag: str) -> list[int]:
    """PIDs of docker CLI processes building ``tag`` (to show none is left behind)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and b"build" in cmd and tag.encode() in cmd:
            pids.append(int(proc.name))
    return pids


def _start_slow_build(slow: TinyMatrix, build_dir: Path, invoke_command, wait_for, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        invoke_command("build", "--matrix", str(slow.path), "--out", str(build_dir), *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = build_dir / "logs" / f"{cid('slow')}.log"
    wait_for(
        lambda: (log.is_file() and "sleep 600" in log.read_text()) or proc.poll() is not None, 120, "the sleeping step"
    )
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_build_leaves_a_valid_record_and_a_concurrent_one_is_refused(
    sig, slow, tmp_path, invoke, invoke_command, wait_for
):
    build_dir = tmp_path / "build"
    proc = _start_slow_build(slow, build_dir, invoke_command, wait_for)
    try:
        assert states(build_dir) == {cid("slow"): "building"}

        second = invoke("build", "--matrix", str(slow.path), "--out", str(build_dir), timeout=60)
        assert second.returncode == 2
        assert "is in use by another command" in second.stderr and f"PID {proc.pid} (invoke build)" in second.stderr
        # Rendering into the directory of a running build would change a context under its hash.
        dockerfile = build_dir / cid("slow") / "Dockerfile"
        before = dockerfile.read_bytes()
        render = invoke("render", "--matrix", str(slow.path), "--out", str(build_dir), timeout=60)
        assert render.returncode == 2 and f"PID {proc.pid} (invoke build)" in render.stderr, render.stderr
        assert dockerfile.read_bytes() == before

        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert f"interrupted ({sig.name})" in err and "recorded as failed" in err
    rec = read_status(build_dir)[cid("slow")]["build"]
    assert rec["state"] == "failed" and rec["interrupted"] is True
    assert "sleep 600" in rec["step"]
    wait_for(lambda: not _docker_builds_of(slow.ref("slow")), 30, "the docker build process to end")


def test_a_killed_build_is_recorded_as_interrupted_by_the_next_one(slow, tmp_path, invoke, invoke_command, wait_for):
    build_dir = tmp_path / "build"
    proc = _start_slow_build(slow, build_dir, invoke_command, wait_for)
    proc.kill()  # SIGKILL: no chance to record anything
    proc.communicate(timeout=30)
    assert states(build_dir) == {cid("slow"): "building"}
    # The docker CLI dies with its parent (PR_SET_PDEATHSIG) instead of building on unattended.
    wait_for(lambda: not _docker_builds_of(slow.ref("slow")), 30, "the orphaned docker build to end")

    done = invoke("build", "--matrix", str(slow.path), "--out", str(build_dir), "--target", "quick")
    assert done.returncode == 0, done.stdout + done.stderr
    rec = read_status(build_dir)
    assert rec[cid("slow")]["build"]["state"] == "failed" and rec[cid("slow")]["build"]["interrupted"] is True
    assert rec[cid("quick")]["build"]["state"] == "built"


# --- the example matrix: torch from PyPI --------------------------------------------------


@pytest.mark.slow
def test_the_example_matrix_builds_real_torch_images(example_images, docker_client, run_container, invoke):
    m, refs = example_images["matrix"], example_images["refs"]
    devel, runtime = (docker_client.images.get(refs[t]) for t in ("devel", "runtime"))
    for target, image in (("devel", devel), ("runtime", runtime)):
        assert image.labels["imagematrix.target"] == target
        assert image.labels["imagematrix.torch"] == m.packages["torch"]
        assert image.labels["imagematrix.build-hash"].startswith("sha256:")
    assert runtime.attrs["Size"] < devel.attrs["Size"]

    code, out = run_container(refs["runtime"], ["cat", "/etc/imagematrix/cell.json"])
    assert code == 0 and json.loads(out)["id"] == next(c.id for c in m.cells if c.ref == refs["runtime"])
    code, out = run_container(refs["runtime"], ["python", "-c", "import torch; print(torch.__version__)"], timeout=300)
    assert code == 0, out
    assert out.strip().splitlines()[-1].startswith(m.packages["torch"])

    again = invoke(
        "build", "--matrix", str(ROOT / "examples" / "matrix.yaml"), "--out", str(example_images["build_dir"])
    )
    assert again.returncode == 0, again.stderr
    assert set(states(example_images["build_dir"]).values()) == {"skipped"}

"""Hardening against the real engine: labels as written, the CA secret for any user and any path,
a docker CLI without buildx, a full disk, a lost engine, stale test containers.

Engine-loss tests run a second dockerd on its own socket, never the engine the other tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRICES = Path(__file__).parent / "matrices"

pytestmark = pytest.mark.docker


def cid(target: str) -> str:
    return f"cu1.0-py3.13-{target}"


def cells(build_dir: Path) -> dict:
    return json.loads((build_dir / "status.json").read_text())["cells"]


@pytest.fixture(scope="module")
def image(image_namespace) -> str:
    return f"{image_namespace}-build/hardening"


LABELS = {
    "org.example.home": "$HOME and ${PATH}",
    "org.example.accent": "café ☕",
    "org.example.quote": 'say "hi"',
    "org.example.backslash": "C:\\builds\\n",
}


def test_labels_reach_the_image_exactly_as_written(hardening_matrix, image, tmp_path, invoke, docker_client):
    m = hardening_matrix(tmp_path, image, labels=LABELS)
    done = invoke("build", "--matrix", str(m), "--target", "plain", "--out", str(tmp_path / "b"), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    labels = docker_client.images.get(f"{image}:{cid('plain')}").labels
    assert {k: labels.get(k) for k in LABELS} == LABELS


def test_a_non_root_step_reads_the_ca_secret_and_a_path_with_a_comma_works(
    hardening_matrix, image, tmp_path, invoke, run_container
):
    ca = tmp_path / "ca,bundle.pem"  # BuildKit's --secret spec is CSV: the comma must not split the path
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", ca)
    m = hardening_matrix(tmp_path, image)
    done = invoke(
        "build",
        "--matrix",
        str(m),
        "--target",
        "nonroot",
        "--ca-cert",
        str(ca),
        "--out",
        str(tmp_path / "b"),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    code, out = run_container(f"{image}:{cid('nonroot')}", ["cat", "/tmp/ca-seen-as-1000"])
    assert code == 0 and int(out.strip()) > 10  # uid 1000 read the whole bundle
    code, _ = run_container(f"{image}:{cid('nonroot')}", ["test", "-e", "/run/secrets/ca-bundle"])
    assert code != 0  # and it is in no layer


def _cli_version() -> tuple[int, ...]:
    out = subprocess.run(
        ["docker", "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return tuple(int(x) for x in out.split("+")[0].split(".")[:2] if x.isdigit())


def test_a_docker_cli_that_needs_buildx_but_has_none_fails_preflight_with_the_fix(
    hardening_matrix, image, tmp_path, invoke
):
    m = hardening_matrix(tmp_path, image)
    env_dir = tmp_path / "docker-config"  # no cli-plugins: the buildx plugin is not found
    env_dir.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "--search-root",
            str(ROOT),
            "build",
            "--matrix",
            str(m),
            "--target",
            "plain",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "DOCKER_CONFIG": str(env_dir)},
    )
    if _cli_version() >= (23,):
        assert done.returncode == 2, done.stdout + done.stderr
        assert "builds with BuildKit only through the buildx plugin" in done.stderr
        assert "apt-get install docker-buildx" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "b" / "status.json").exists()  # nothing attempted
    else:  # an old CLI builds with its own BuildKit: the classic path must then work
        assert done.returncode == 0, done.stdout + done.stderr
        assert "no buildx plugin" in done.stdout


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MB tmpfs, nearly full: room for contexts and the record, not for a noisy build's log."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the full-disk test needs root")
    try:
        (mnt / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 300 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_the_cell_with_the_cause_and_records_the_rest(
    hardening_matrix, image, tmp_path, small_disk, invoke
):
    m = hardening_matrix(tmp_path, image)
    build_dir = small_disk / "build"
    done = invoke(
        "build",
        "--matrix",
        str(m),
        "--target",
        "noisy",
        "--target",
        "plain",
        "--out",
        str(build_dir),
        "--no-cache",
        timeout=600,
    )  # a cached step prints nothing
    assert done.returncode == 1, done.stdout + done.stderr
    log = build_dir / "logs" / f"{cid('noisy')}.log"
    assert f"could not write {log}: No space left on device" in done.stderr
    assert "MB free on its filesystem" in done.stderr and "Traceback" not in done.stderr
    rec = cells(build_dir)
    assert rec[cid("noisy")]["build"]["state"] == "failed"
    assert rec[cid("noisy")]["build"]["host_fault"] == "no space left"
    assert rec[cid("plain")]["build"]["state"] == "blocked"
    assert rec[cid("plain")]["build"]["error"] == f"not attempted: no space left while building {cid('noisy')}"
    assert "log cut short" in log.read_text()


@pytest.mark.parametrize("command", ["render", "report"])
def test_a_full_build_directory_is_a_message_not_a_traceback(
    hardening_matrix, image, tmp_path, small_disk, invoke, command
):
    """Render takes the build lock and writes contexts; report writes the sheet: neither may end in a traceback
    when nothing more can be written (the lock file's close used to raise after the write had failed)."""
    m = hardening_matrix(tmp_path, image)
    filler = small_disk / "filler2"
    with open(filler, "wb", buffering=0) as f:  # the last bytes of the filesystem (unbuffered: close flushes nothing)
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    done = invoke(command, "--matrix", str(m), "--out", str(small_disk / "build"), timeout=120)
    assert done.returncode in (1, 2), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "No space left on device" in done.stderr, done.stderr


# --- a lost engine ---------------------------------------------------------------------------


def test_an_engine_lost_mid_build_is_named_and_recorded(
    hardening_matrix, image, tmp_path, second_engine, invoke_command, wait_for
):
    m = hardening_matrix(tmp_path, image)
    build_dir = tmp_path / "b"
    proc = subprocess.Popen(
        invoke_command("build", "--matrix", str(m), "--target", "slow", "--target", "plain", "--out", str(build_dir)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=second_engine["env"],
    )
    try:
        log = build_dir / "logs" / f"{cid('slow')}.log"
        wait_for(
            lambda: (log.is_file() and "sleep 600" in log.read_text()) or proc.poll() is not None,
            180,
            "the sleeping step on the second engine",
        )
        assert proc.poll() is None, proc.communicate()
        os.killpg(second_engine["proc"].pid, signal.SIGKILL)  # the engine goes away mid-build
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "cannot reach the Docker engine at unix://" in err and "Traceback" not in err
    rec = cells(build_dir)
    assert rec[cid("slow")]["build"]["state"] == "failed"
    assert rec[cid("slow")]["build"]["host_fault"] == "engine lost"
    assert rec[cid("plain")]["build"]["state"] == "blocked"  # not attempted after the loss


# --- stale test containers -------------------------------------------------------------------


def test_a_test_run_removes_containers_a_killed_run_left_behind(hardening_matrix, image, tmp_path, docker_client):
    from imagematrix.testing.containers import (
        BUILD_DIR_LABEL,
        OWNER_HOST_LABEL,
        OWNER_PID_LABEL,
        TESTRUN_LABEL,
    )

    build_dir = tmp_path / "b"
    build_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    labels = {
        TESTRUN_LABEL: cid("plain"),
        BUILD_DIR_LABEL: str(build_dir.resolve()),
        OWNER_PID_LABEL: str(gone.pid),
        OWNER_HOST_LABEL: socket.gethostname(),
    }
    stale = docker_client.containers.run(
        "debian:trixie-slim",
        ["sleep", "600"],
        detach=True,
        labels=labels,
        name=f"imagematrix-test-stale-{os.getpid()}",
        network_disabled=True,
    )
    alive = docker_client.containers.run(
        "debian:trixie-slim",
        ["sleep", "600"],
        detach=True,
        labels={**labels, OWNER_PID_LABEL: str(os.getpid())},
        name=f"imagematrix-test-alive-{os.getpid()}",
        network_disabled=True,
    )
    try:
        m = hardening_matrix(tmp_path, image)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagematrix.testing",
                "--matrix",
                str(m),
                "--out",
                str(build_dir),
                "--target",
                "noisy",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert f"removed stale test container {stale.name}" in done.stdout, done.stdout + done.stderr
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert stale.name not in names
        assert alive.name in names  # its run (this process) is alive: not touched
    finally:
        for c in (stale, alive):
            with contextlib.suppress(Exception):
                c.remove(force=True)

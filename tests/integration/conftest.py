"""Fixtures for tests against the real Docker engine.

No engine: the tests skip with the reason, unless IMAGEMATRIX_REQUIRE_DOCKER=1
(CI sets it), which turns the skip into a failure. Images a test creates are
named under a per-session namespace (``image_namespace``) and removed at the
end; containers are always removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "debian:trixie-slim"
REQUIRE_ENV = "IMAGEMATRIX_REQUIRE_DOCKER"
# Files whose one test takes minutes, handed out first: under `-n 2 --dist loadfile` a long file that
# starts late runs alone at the end while the other worker waits.
LONG_FIRST = ("test_pyg_extensions.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def _interruptible_children() -> None:
    """Tests send SIGINT to the processes they start. A shell that starts pytest in the
    background hands it SIGINT ignored, and an ignored signal stays ignored in every child;
    a handler does not, so install Python's own."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client whose engine answered, with the Debian base image present."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # any failure here means "no engine"
        _unavailable(
            f"no Docker engine answers ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "start one with `sudo bash scripts/bootstrap-host.sh`"
        )
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        _unavailable(f"base image {BASE_IMAGE} is missing; `sudo bash scripts/bootstrap-host.sh` makes it offline")
    yield client
    client.close()


@pytest.fixture(scope="session")
def image_namespace(docker_client) -> Iterator[str]:
    """``imagematrix-test-<token>``: name test images under it (``f"{ns}-build/tiny"``); all are removed afterwards."""
    ns = f"imagematrix-test-{uuid.uuid4().hex[:8]}"
    yield ns
    for image in docker_client.images.list():
        # Tagged under ns, or left untagged by a rebuild (imagematrix images name their repository in a label).
        # A test may give another image (the example's) a tag under ns: only that tag goes, never the image.
        mine = [tag for tag in image.tags if tag.startswith(ns)]
        others = [tag for tag in image.tags if not tag.startswith(ns)]
        untagged_ours = not image.tags and image.labels.get("org.opencontainers.image.title", "").startswith(ns)
        try:
            if untagged_ours or (mine and not others):
                docker_client.images.remove(image.id, force=True)
            else:
                for tag in mine:
                    docker_client.images.remove(tag)
        except Exception as exc:  # report, but do not fail teardown over another test's container
            print(f"could not remove test image {image.tags or image.short_id}: {exc}")


@pytest.fixture
def run_container(docker_client) -> Callable[..., tuple[int, str]]:
    """Run ``command`` (a list) in ``image``; returns (exit code, output). The container is always removed."""
    created = []

    def run(image: str, command: list[str], timeout: int = 120) -> tuple[int, str]:
        container = docker_client.containers.create(image, command, network_disabled=True)
        created.append(container)
        container.start()
        result = container.wait(timeout=timeout)
        return result["StatusCode"], container.logs().decode(errors="replace")

    yield run
    for container in created:
        try:
            container.remove(force=True)
        except Exception as exc:
            print(f"could not remove container {container.id[:12]}: {exc}")


@pytest.fixture(scope="session")
def invoke() -> Callable[..., subprocess.CompletedProcess]:
    """Run an invoke task of this repository as a user would: ``invoke("build", "--matrix", m)``."""

    def run(*args: str, timeout: int = 900, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            invoke_argv(*args),
            cwd=cwd or ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def invoke_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]


@pytest.fixture(scope="session")
def invoke_command() -> Callable[..., list[str]]:
    """The argv of an invoke task, for tests that start it with Popen (signals, concurrency)."""
    return invoke_argv


@contextlib.contextmanager
def one_worker_at_a_time(tmp_path_factory, name: str) -> Iterator[None]:
    """Under pytest-xdist, one worker at a time in here (the others wait, then find its work done: an
    unchanged build skips); alone, no wait. The lock lives in the run's shared temporary root."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def example_images(docker_client, invoke, tmp_path_factory) -> dict:
    """examples/matrix.yaml built for real, into its default tags (the GPU-suite tests reuse them).

    Not removed afterwards: they take minutes to build, and an unchanged rerun skips them.
    """
    build_dir = tmp_path_factory.mktemp("example-build")
    with one_worker_at_a_time(tmp_path_factory, "example-images"):
        done = invoke(
            "build", "--matrix", str(ROOT / "examples" / "matrix.yaml"), "--out", str(build_dir), timeout=1800
        )
    if done.returncode != 0:
        pytest.fail(
            f"invoke build of examples/matrix.yaml failed (exit "
            f"{done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    from imagematrix.matrix.load import load_matrix

    m = load_matrix(ROOT / "examples" / "matrix.yaml")
    return {"matrix": m, "build_dir": build_dir, "refs": {c.target.name: c.ref for c in m.cells}, "output": done.stdout}


def _wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def wait_for() -> Callable[[Callable[[], object], float, str], None]:
    """``wait_for(predicate, timeout, what)``: poll until true, else fail naming what never happened."""
    return _wait_for


@pytest.fixture(scope="session")
def registry(tmp_path_factory, docker_client) -> Iterator[str]:
    """A real registry (Debian's docker-registry, distribution 2.8) on a free port: ``127.0.0.1:PORT``."""
    import socket
    import urllib.request

    exe = shutil.which("docker-registry")
    if exe is None:
        _unavailable("docker-registry is not installed (apt-get install docker-registry; .ci/run does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        + str(root / "data")
        + "\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).status == 200
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"docker-registry exited: {(root / 'registry.log').read_text()[-2000:]}")
                return False

        _wait_for(answers, 30, "the registry to answer")
        yield f"127.0.0.1:{port}"
        proc.terminate()
        proc.wait(timeout=30)
    # The tags tests gave images to push them here go with the registry (the images stay when other tags hold them).
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"127.0.0.1:{port}/"):
                try:
                    docker_client.images.remove(tag)
                except Exception as exc:
                    print(f"could not remove {tag}: {exc}")


@pytest.fixture
def second_engine(tmp_path_factory, docker_client, wait_for):
    """Another dockerd with its own socket, data and exec roots; the base image loaded into it."""
    if shutil.which("dockerd") is None:
        pytest.skip("no dockerd binary to start a second engine")
    root = tmp_path_factory.mktemp("engine2")
    run = Path(f"/tmp/im-e2-{os.getpid()}")  # exec-root: short, for unix socket path limits
    sock = f"unix://{run}/docker.sock"
    run.mkdir(exist_ok=True)
    # In its own network namespace: its docker0 (RUN steps need a bridge) must not touch the host's,
    # and dockerd removes a docker0 it did not make when given another bridge (-b).
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to give a second engine its own network namespace")
    log = open(root / "dockerd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--",
            "dockerd",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(run / "exec"),
            "--pidfile",
            str(run / "docker.pid"),
            "-H",
            sock,
            "--iptables=false",
            "--ip6tables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": sock}
    try:
        wait_for(
            lambda: (
                subprocess.run(["docker", "info"], env=env, capture_output=True, check=False).returncode == 0
                or proc.poll() is not None
            ),
            60,
            "the second engine",
        )
        assert proc.poll() is None, (root / "dockerd.log").read_text()[-2000:]
        save = subprocess.Popen(["docker", "save", "debian:trixie-slim"], stdout=subprocess.PIPE)
        subprocess.run(["docker", "load", "-q"], stdin=save.stdout, env=env, check=True, capture_output=True)
        save.wait()
        yield {"env": env, "proc": proc, "log": root / "dockerd.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        # A killed engine leaves its overlay and netns mounts behind: unmount them, deepest first.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mnt in sorted((m for m in mounts if m.startswith((str(root), str(run)))), key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="session")
def hardening_matrix() -> Callable[..., Path]:
    """Writes ``matrices/hardening.yaml`` (tiny cells on debian:trixie-slim) into ``dest`` under another
    image name, with top-level ``changes``; returns the written file."""
    import yaml

    matrices = Path(__file__).resolve().parent / "matrices"

    def write(dest: Path, image: str, **changes) -> Path:
        doc = yaml.safe_load((matrices / "hardening.yaml").read_text())
        doc["image"] = image
        doc["build"]["fragments_dir"] = str(matrices / doc["build"]["fragments_dir"])
        doc.update(changes)
        path = dest / "hardening.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return path

    return write

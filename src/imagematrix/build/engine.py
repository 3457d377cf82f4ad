"""The Docker engine as imagematrix reaches it: a client that answered, and what it holds.

Every command that talks to the engine gets its client here, so an engine that does not answer is
one message everywhere: what was tried and how to start one.
"""

from __future__ import annotations

import os

from imagematrix.core.errors import UsageError

START_DOCKER = (
    "start it: `sudo bash scripts/bootstrap-host.sh` (installs docker.io, starts dockerd, makes the "
    "Debian base images), or `sudo systemctl start docker`; then `docker info` must work for this user"
)


class EngineUnreachable(UsageError):
    """No engine answers; exit 2 (nothing was done)."""


def docker_client(timeout: int = 30, host: str = ""):
    """A docker SDK client that answered a ping (``host``, else $DOCKER_HOST or the default socket),
    or a PreflightError saying how to start the engine."""
    import docker
    from docker.errors import DockerException

    where = host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout) if host else docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {where} ({first_line(exc)}); {START_DOCKER}"
        ) from None
    return client


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def base_image_ids(client, refs: list[str]) -> dict[str, str | None]:
    """Local image id of each base image (None: not present here)."""
    from docker.errors import ImageNotFound

    out: dict[str, str | None] = {}
    for ref in refs:
        try:
            out[ref] = client.images.get(ref).id
        except ImageNotFound:
            out[ref] = None
    return out

"""Checks that run before hours of building: engine, BuildKit, disk, memory, base images, CA bundle.

Every failing check says what was found, what the matrix asks for and what to
run. Failures stop the build with exit code 2 before anything is built;
``--skip-preflight`` turns them into warnings (small hosts, remote engines),
except an unreachable engine, with which nothing could be built at all.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from imagematrix.build.buildkit import BUILDX, Builder, BuildOptions, check_cache_options
from imagematrix.build.engine import base_image_ids, first_line
from imagematrix.core.errors import UsageError
from imagematrix.matrix.plan import Plan
from imagematrix.terminal import styled

GB = 1e9


class PreflightError(UsageError):
    """The host cannot run this build; exit code 2."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = False  # not even --skip-preflight goes on
    warning: bool = False  # ok, but worth reading (e.g. a driver without PTX JIT for a cell)


def print_checks(found: list[Check], console: Console, prefix: str, skip: bool = False) -> None:
    """One line per check: ok / warn / FAIL, what was found and the fix."""
    for c in found:
        if c.ok:
            mark = ("warn", "yellow") if c.warning else ("ok  ", "green")
        else:
            mark = ("warn", "yellow") if skip and not c.fatal else ("FAIL", "red")
        console.print(styled(f"{prefix} ", mark, f" {c.name}: {c.detail}"), soft_wrap=True, highlight=False)


_DEBIAN = re.compile(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)-slim")
_DEBIAN_ARM64 = re.compile(r"imagematrix-base/debian-arm64:([a-z]+)-slim")


def bootstrap_hint(refs: list[str]) -> str:
    """The exact command that makes the missing Debian bases from Debian's mirror, as root."""
    suites = [m.group(1) for r in refs if (m := _DEBIAN.fullmatch(r))]
    arm64 = [m.group(1) for r in refs if (m := _DEBIAN_ARM64.fullmatch(r))]
    if not suites and not arm64:
        return "make Debian bases with `bash scripts/bootstrap-host.sh` (as root)"
    env = [f"IMAGEMATRIX_BASE_SUITES={shlex.quote(' '.join(dict.fromkeys(suites)))}"] if suites else []
    env += [f"IMAGEMATRIX_BASE_ARM64={shlex.quote(' '.join(dict.fromkeys(arm64)))}"] if arm64 else []
    return f"make them from Debian's mirror with `{' '.join(env)} bash scripts/bootstrap-host.sh` (as root)"


def base_images(plan: Plan) -> list[str]:
    """Every base image a planned cell starts a stage from, in plan order."""
    refs: list[str] = []
    for step in plan.steps:
        for name in step.cell.target.lineage:
            t = plan.matrix.targets[name]
            if t.base:
                ref = step.cell.base(t.base)
                if ref not in refs:
                    refs.append(ref)
    return refs


def checks(plan: Plan, options: BuildOptions, builder: Builder, client) -> list[Check]:
    m = plan.matrix
    where = f"{m.path}"
    found: list[Check] = []
    info = client.info()
    found.append(Check("engine", True, f"Docker {info.get('ServerVersion', '?')} ({info.get('OperatingSystem', '?')})"))

    if shutil.which("docker") is None:
        found.append(
            Check(
                "docker CLI",
                False,
                "the `docker` command is not on PATH: install docker.io (or docker-ce-cli)",
                fatal=True,
            )
        )
    if builder.kind == BUILDX:
        found.append(
            Check(
                "BuildKit",
                bool(builder.driver),
                builder.describe()
                if builder.driver
                else "`docker buildx inspect` did not answer; run it to see why, or remove the plugin to use "
                "DOCKER_BUILDKIT=1 docker build",
            )
        )
    elif not builder.classic_has_buildkit:
        found.append(
            Check(
                "BuildKit",
                False,
                (
                    f"{builder.describe()}: a docker CLI from 23.0 on builds with BuildKit only through the buildx "
                    "plugin, "
                    "and it is missing or broken here (`docker buildx version` fails). Install it: `apt-get install "
                    "docker-buildx` "
                    "(Debian/Ubuntu) or docker-buildx-plugin (Docker's packages), or copy the plugin to "
                    "~/.docker/cli-plugins/ "
                    "(scripts/bootstrap-host.sh does); with DOCKER_CONFIG set, plugins are looked up under "
                    "$DOCKER_CONFIG/cli-plugins"
                ),
                fatal=True,
            )
        )
    else:
        version = tuple(int(x) for x in str(info.get("ServerVersion", "0")).split(".")[:2] if x.isdigit())
        ok = info.get("OSType") == "linux" and version >= (18, 9)
        found.append(
            Check(
                "BuildKit",
                ok,
                builder.describe()
                if ok
                else f"Docker {info.get('ServerVersion')} on {info.get('OSType')} has no BuildKit (needs 18.09+ on "
                "Linux); "
                "install a newer docker.io and the buildx plugin (scripts/bootstrap-host.sh)",
            )
        )
    try:
        check_cache_options(options, builder)
    except UsageError as exc:
        found.append(Check("cache", False, str(exc), fatal=True))

    need_disk = float(m.host.min_free_disk_gb or 0)
    root = info.get("DockerRootDir", "")
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        found.append(
            Check(
                "disk",
                need_disk == 0,
                f"cannot see Docker's data root {root or '?'} from here (remote or rootless engine); "
                f"the matrix asks for {need_disk:g} GB free (host.min_free_disk_gb in {where})",
            )
        )
    else:
        ok = free >= need_disk * GB
        detail = (
            f"{free / GB:.1f} GB free on {root}; the matrix asks for {need_disk:g} GB "
            f"(host.min_free_disk_gb in {where})"
        )
        if not ok:
            detail += (
                "; free space (docker image prune; invoke clean --images), build fewer cells, or pass --skip-preflight"
            )
        found.append(Check("disk", ok, detail))

    need_mem = float(m.host.min_memory_gb or 0)
    mem = float(info.get("MemTotal") or 0)
    ok = mem >= need_mem * GB
    detail = (
        f"{mem / GB:.1f} GB memory for the engine; the matrix asks for {need_mem:g} GB (host.min_memory_gb in {where})"
    )
    if not ok:
        detail += "; build on a bigger host or pass --skip-preflight (large source builds may then be OOM-killed)"
    found.append(Check("memory", ok, detail))

    ids = base_image_ids(client, base_images(plan))
    missing: dict[str, str] = {}  # ref -> why it cannot be pulled
    for ref, image_id in ids.items():
        if image_id and not options.pull:
            found.append(Check("base image", True, f"{ref} present ({image_id[:19]})"))
            continue
        why = _pullable(client, ref)
        if why is None:
            found.append(Check("base image", True, f"{ref} {'present, ' if image_id else ''}pullable"))
        elif image_id:
            found.append(
                Check(
                    "base image", False, f"{ref} is present but --pull cannot reach its registry ({why}); drop --pull"
                )
            )
        else:
            missing[ref] = why
    if missing:
        reasons = sorted(set(missing.values()))
        found.append(
            Check(
                "base images",
                False,
                f"not present and cannot be pulled: {', '.join(missing)} ({'; '.join(reasons)}). Where no registry is "
                f"reachable, {bootstrap_hint(list(missing))}, `docker load` them from a tarball, "
                f"or point cuda.*.bases in {where} at images you have",
            )
        )

    if options.ca_cert is not None:
        path = Path(options.ca_cert)
        if not path.is_file():
            found.append(
                Check(
                    "CA bundle",
                    False,
                    f"{path} does not exist (from --ca-cert or build.ca_cert in {where}); "
                    "fix the path, or drop the setting where no TLS-inspecting proxy is in the way",
                    fatal=True,
                )
            )
        elif b"-----BEGIN CERTIFICATE-----" not in path.read_bytes()[: 1 << 20]:
            found.append(
                Check("CA bundle", False, f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", fatal=True)
            )
        else:
            found.append(Check("CA bundle", True, f"{path} (a BuildKit secret, never written into a layer)"))
    return found


def _pullable(client, ref: str) -> str | None:
    """None if the registry knows ``ref``, else why not."""
    from docker.errors import DockerException

    try:
        client.images.get_registry_data(ref)
    except DockerException as exc:
        text = first_line(exc)
        # The engine wraps the registry's answer: 500 Server Error for ...: Internal Server Error ("<why>")
        return text.split("(", 1)[-1].rstrip(")").strip('"') if "(" in text else text
    return None


def preflight(
    plan: Plan, options: BuildOptions, builder: Builder, client, console: Console, skip: bool = False
) -> list[Check]:
    """Run the checks, print them, and raise PreflightError (exit 2) on failure unless ``skip``."""
    found = checks(plan, options, builder, client)
    if all(c.ok and not c.warning for c in found):  # one line; each check's detail: imagematrix doctor
        console.print(styled("preflight ", ("ok  ", "green"), f" {', '.join(c.name for c in found)}"), soft_wrap=True)
    else:
        print_checks(found, console, "preflight", skip)
    failed = [c for c in found if not c.ok and (c.fatal or not skip)]
    if failed:
        lines = "\n".join(f"  {c.name}: {c.detail}" for c in failed)
        hint = (
            ""
            if any(c.fatal for c in failed)
            else "\n(--skip-preflight builds anyway, e.g. a small example on a small host)"
        )
        raise PreflightError(f"preflight failed, nothing was built:\n{lines}{hint}")
    return found

"""What is installed in an image: its Python distributions and Debian packages, read from a throw-away
container of it. Published beside the image (publish), and compared between two builds (`report
--diff-packages OLD --diff-packages NEW`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from imagematrix.core.errors import ImagematrixError

# Every python3 on PATH is asked (the image's environment first); dpkg where the base has it.
LIST_SHELL = r"""
py=$(command -v python3 || command -v python || true)
if [ -n "$py" ]; then
  "$py" -c 'import json, importlib.metadata as m
print(json.dumps({d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]}))'
else
  echo '{}'
fi
echo '---'
command -v dpkg-query >/dev/null && dpkg-query -W -f '${Package} ${Version}\n' || true
echo '---'
arch=$(dpkg --print-architecture 2>/dev/null || true)
[ -r /etc/os-release ] && . /etc/os-release
echo "arch=${arch}"; echo "id=${ID:-}"; echo "distro=${ID:-}-${VERSION_ID:-}"
"""


class PackagesError(ImagematrixError):
    pass


def parse_listing(text: str) -> dict[str, dict[str, str]]:
    """LIST_SHELL's output -> {"python": {name: version}, "debian": {name: version}, "system": {arch, id, distro}}."""
    parts = text.split("\n---\n") if "\n---\n" in text else text.split("---")
    if len(parts) < 2:
        raise PackagesError(f"unreadable package listing: {text.strip()[-300:] or 'no output'}")
    head, tail = parts[0], parts[1]
    try:
        python = json.loads(head.strip().splitlines()[-1]) if head.strip() else {}
    except (ValueError, IndexError):
        raise PackagesError(f"unreadable Python distribution list: {head.strip()[-300:]}") from None
    if not isinstance(python, dict):
        raise PackagesError("unreadable Python distribution list: not an object")
    debian = dict(line.split(" ", 1) for line in tail.strip().splitlines() if " " in line)
    system = dict(
        line.split("=", 1) for line in (parts[2] if len(parts) > 2 else "").strip().splitlines() if "=" in line
    )
    system = {k: v for k, v in system.items() if v and v != "-"}
    if system.get("distro", "").endswith("-"):
        system["distro"] = system["distro"].rstrip("-")
    return {
        "python": dict(sorted(python.items(), key=lambda kv: kv[0].lower())),
        "debian": dict(sorted(debian.items())),
        "system": system,
    }


def manifest(client, ref: str) -> dict[str, dict[str, str]]:
    """The package manifest of a local image (by reference or id)."""
    from docker.errors import DockerException

    try:
        out = client.containers.run(
            ref,
            ["sh", "-c", LIST_SHELL],
            entrypoint=[],
            remove=True,
            network_disabled=True,
            labels={"imagematrix.reports.packages": "list"},
        )
    except DockerException as exc:
        raise PackagesError(
            f"cannot list the packages of {ref}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from None
    return parse_listing(out.decode(errors="replace"))


def diff(old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per package added (+), removed (-) or changed (~), Python then Debian."""
    lines = []
    for kind in ("python", "debian"):
        a, b = old.get(kind) or {}, new.get(kind) or {}
        for name in sorted(set(a) | set(b), key=str.lower):
            if name not in a:
                lines.append(f"+ {kind} {name} {b[name]}")
            elif name not in b:
                lines.append(f"- {kind} {name} {a[name]}")
            elif a[name] != b[name]:
                lines.append(f"~ {kind} {name} {a[name]} -> {b[name]}")
    return lines


def listings(refs: list[str]) -> list[dict]:
    """Each reference's packages: an image (ref or id, asked of the engine) or an SBOM file that publish
    wrote (build/sbom/<cell>.cdx.json, read as a file we did not write)."""
    from pathlib import Path

    from imagematrix.core import files
    from imagematrix.core.errors import UsageError
    from imagematrix.evidence.sbom import packages_of

    client = None
    out = []
    for ref in refs:
        if ref.endswith(".json") and Path(ref).is_file():
            try:
                doc = files.read_json(ref, "sbom")
            except files.Unreadable as exc:
                raise UsageError(f"{ref} is not an SBOM: {exc}") from None
            if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
                raise UsageError(f"{ref} is not a CycloneDX SBOM (no bomFormat: CycloneDX)")
            out.append(packages_of(doc))
            continue
        if client is None:
            from imagematrix.build.engine import docker_client

            client = docker_client()
        out.append(manifest(client, ref))
    return out

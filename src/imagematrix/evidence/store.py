"""Where evidence lives beside the record: ``build/attestations/<cell>.<suite>.<key>.intoto.jsonl`` (the
signed result of each run, one DSSE envelope a line: the in-toto test-result statement and the project's
own; by the first 16 digits of its reuse key, so a later run of the cell never overwrites the attestation
a reused result points at) and ``build/sbom/<cell>.cdx.json`` (the SBOM of what was published)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ATTESTATIONS_DIR = "attestations"
SBOM_DIR = "sbom"
GITHUB_DIR = "github"  # under ATTESTATIONS_DIR: the predicates the workflow's keyless attest steps sign


def _write(out: Path, doc: dict[str, Any]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def write_sbom(build_dir: Path, cell: str, bom: dict[str, Any]) -> Path:
    return _write(Path(build_dir) / SBOM_DIR / f"{cell}.cdx.json", bom)


def write_github_predicate(build_dir: Path, cell: str, suite: str, predicate: dict[str, Any]) -> Path:
    return _write(
        Path(build_dir).resolve() / ATTESTATIONS_DIR / GITHUB_DIR / f"{cell}.{suite}.test-result.json", predicate
    )


def write_attestation(build_dir: Path, cell: str, suite: str, key: str, envelopes: list[dict[str, Any]]) -> Path:
    name = f"{cell}.{suite}.{key[:16]}.intoto.jsonl" if key else f"{cell}.{suite}.intoto.jsonl"
    out = Path(build_dir) / ATTESTATIONS_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n" for e in envelopes))
    os.replace(tmp, out)
    return out

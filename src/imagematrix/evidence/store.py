"""Where evidence lives beside the record: ``build/attestations/<cell>.<suite>.<key>.intoto.json`` (the
signed result of each run, by the first 16 digits of its reuse key: a later run of the cell never
overwrites the attestation a reused result points at) and ``build/sbom/<cell>.cdx.json`` (the SBOM of
what was published)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ATTESTATIONS_DIR = "attestations"
SBOM_DIR = "sbom"


def _write(out: Path, doc: dict[str, Any]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def write_sbom(build_dir: Path, cell: str, bom: dict[str, Any]) -> Path:
    return _write(Path(build_dir) / SBOM_DIR / f"{cell}.cdx.json", bom)


def write_attestation(build_dir: Path, cell: str, suite: str, key: str, envelope: dict[str, Any]) -> Path:
    name = f"{cell}.{suite}.{key[:16]}.intoto.json" if key else f"{cell}.{suite}.intoto.json"
    return _write(Path(build_dir) / ATTESTATIONS_DIR / name, envelope)

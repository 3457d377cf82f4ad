"""Where signed evidence lives beside the record: ``build/attestations/<cell>.<suite>.intoto.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ATTESTATIONS_DIR = "attestations"


def write_attestation(build_dir: Path, cell: str, suite: str, envelope: dict[str, Any]) -> Path:
    out = Path(build_dir) / ATTESTATIONS_DIR / f"{cell}.{suite}.intoto.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(envelope, indent=1) + "\n")
    os.replace(tmp, out)
    return out

"""Evidence for GitHub's artifact attestations, the generated workflow's keyless path: for each published
cell, the standard test-result predicate of each required result in a file under
``build/attestations/github/``, and the subject (repository, digest) and those files as step outputs
(``$GITHUB_OUTPUT``) that the workflow's ``actions/attest`` steps read. GitHub signs there, with the
workflow run's identity; nothing here holds a key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagematrix.core.errors import UsageError
from imagematrix.core.reference import NAME_RE
from imagematrix.evidence import store
from imagematrix.matrix.workflow import step_outputs

OUTPUT_NAME = re.compile(r"[a-z][a-z0-9-]{0,99}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,998}[\x21-\x7e])?")  # one printable line: none can open another


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append ``name=value`` lines to a GitHub step-output file: the one writer of that sink. Names are the
    workflow's own; a value that is not one printable line is refused, never written."""
    for name, value in values.items():
        if not OUTPUT_NAME.fullmatch(name) or not VALUE.fullmatch(value):
            raise UsageError(f"refusing the step output {name[:100]!r}={value[:100]!r}: not one printable line")
    try:
        with open(path, "a", encoding="ascii") as f:
            f.write("".join(f"{k}={v}\n" for k, v in values.items()))
    except OSError as exc:
        raise UsageError(f"cannot write the step outputs to {str(path)[:200]}: {exc.strerror}") from None


def write_subject(
    build_dir: Path,
    output: Path,
    slot: str,
    cell: str,
    repository: str,
    digest: str,
    predicates: Mapping[str, Mapping[str, Any]],
) -> dict[str, str]:
    """Write each suite's predicate and the outputs naming them with ``repository@digest``; the outputs."""
    if not NAME_RE.fullmatch(repository) or not DIGEST.fullmatch(digest):
        raise UsageError(f"{repository[:200]}@{digest[:80]} is not a repository and a sha256 digest")
    values: dict[str, str] = {}
    for suite, predicate in predicates.items():
        names = step_outputs(slot, suite)
        path = store.write_github_predicate(build_dir, cell, suite, dict(predicate))
        values |= {names["name"]: repository, names["digest"]: digest, names["predicate"]: str(path)}
    write_outputs(output, values)
    return values

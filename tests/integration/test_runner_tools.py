"""What a runner does around the builds, against the real engine: the sheet written from a real
build and test run (and another runner's history merged in), and image hygiene."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagematrix.core import history

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "matrix.yaml")


def test_report_after_a_real_build_and_test_run_merges_another_runners_history(example_images, invoke, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != history.STATE_ENV}
    other = tmp_path / "other-runner"
    done = subprocess.run(
        [sys.executable, "-m", "imagematrix.testing", "--matrix", EXAMPLE, "--out", str(other), "--target", "devel"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    events, _ = history.read([other / history.HISTORY_FILE])
    assert [(e.kind, e.cell, e.state) for e in events] == [("test", "cu13.2-py3.13-devel", "passed")]
    info = events[0].test.gpu_info if events[0].test else None
    assert info is None or not info.devices  # this host has no GPU

    build_dir = example_images["build_dir"]
    done = invoke("report", "--matrix", EXAMPLE, "--out", str(build_dir), "--merge", str(other / history.HISTORY_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    # The sheet backslash-escapes every value's punctuation (reports/markdown.py); read it as it renders.
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", (build_dir / "reports" / "BUILD_MATRIX.md").read_text())
    summary = text.split("## Summary")[1].split("## Phases")[0]
    # Built here, tested by the other runner: merged into one row.
    assert "| 13.2 | 3.13 | devel | ⚠️ |" in summary and "smoke passed" in summary and "tested without a GPU" in summary
    assert "| 13.2 | 3.13 | runtime |" in summary
    assert "### Phase 1" in text and "## Base images" in text and "| debian:trixie-slim |" in text
    assert "not checked (no engine)" not in text  # the engine answered: drift was checked


def _labelled_image(docker_client, cell: str, salt: str, tag: str | None) -> str:
    # The title label lets the session's teardown find the untagged ones too.
    dockerfile = (
        f"FROM debian:trixie-slim\nLABEL imagematrix.cell={cell} org.opencontainers.image.title={cell}\n"
        f"RUN echo {salt} > /salt\n"
    )
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return image.id


def test_prune_keeps_the_tagged_and_newest_images_of_a_cell(docker_client, image_namespace, invoke):
    cell = f"{image_namespace}-prune"
    old = [_labelled_image(docker_client, cell, f"old{i}", None) for i in range(2)]
    tagged = _labelled_image(docker_client, cell, "current", f"{image_namespace}-prune:current")
    done = invoke("prune", "--keep", "1", "--dry-run")
    assert done.returncode == 0 and all(f"would remove {cell}: {i[7:17]}" in done.stdout for i in old), done.stdout
    done = invoke("prune", "--keep", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    left = {i.id for i in docker_client.images.list(filters={"label": f"imagematrix.cell={cell}"})}
    assert left == {tagged}

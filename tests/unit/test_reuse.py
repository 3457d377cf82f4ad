"""GPU results reused by an exact key: each part of the key, changed alone, makes the cell run again;
what only spreads a run (selection, --jobs, --workers) does not; only passed results of this runner's
own history are reused, never failures, never one older than the limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imagematrix.core import history
from imagematrix.testing import reuse

ROOT = Path(__file__).resolve().parents[2]
H200 = {"name": "NVIDIA H200", "compute_capability": "9.0"}


@pytest.fixture
def suite_tree(tmp_path) -> Path:
    tree = tmp_path / "gpu"
    tree.mkdir()
    (tree / "test_cuda.py").write_text("def test_x(): pass\n")
    return tree


def key(suite_tree: Path, **change) -> reuse.Key:
    suite = dict(
        mounted=[suite_tree],
        tools="pytest 9.1.1, pytest-xdist 3.8.0",
        suite="smoke",
        markers="smoke",
        require_gpu=True,
        pytest_extra=(),
    )
    host = dict(devices=[H200], driver="580.159.04", driver_cuda="13.0", libcuda="host-driver")
    suite.update({k: v for k, v in change.items() if k in suite})
    host.update({k: v for k, v in change.items() if k in host})
    return reuse.Key(change.get("image", "sha256:" + "a" * 64), reuse.suite_part(**suite), reuse.host_part(**host))


CHANGES = {
    "image": ("image", {"image": "sha256:" + "b" * 64}),
    "tools": ("suite", {"tools": "pytest 9.1.2, pytest-xdist 3.8.0"}),
    "suite name": ("suite", {"suite": "full"}),
    "markers": ("suite", {"markers": "smoke or full"}),
    "--require-gpu": ("suite", {"require_gpu": False}),
    "pytest arguments": ("suite", {"pytest_extra": ("-k", "abi")}),
    "another GPU": ("host", {"devices": [{"name": "NVIDIA H100", "compute_capability": "9.0"}]}),
    "two GPUs": ("host", {"devices": [H200, H200]}),
    "driver": ("host", {"driver": "580.160.01"}),
    "driver CUDA": ("host", {"driver_cuda": "13.1"}),
    "libcuda": ("host", {"libcuda": "compat:/usr/local/cuda-13.2/compat/libcuda.so.1"}),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_part_of_the_key_changed_alone_changes_only_that_part(suite_tree, change):
    part, kw = CHANGES[change]
    before, after = key(suite_tree), key(suite_tree, **kw)
    assert before.value != after.value
    assert reuse.changed_parts(before.parts, after) == [part]


def test_a_test_file_touched_changes_the_suite_part(suite_tree):
    before = key(suite_tree)
    (suite_tree / "test_cuda.py").write_text("def test_x(): assert True\n")
    assert reuse.changed_parts(before.parts, key(suite_tree)) == ["suite"]
    (suite_tree / "__pycache__").mkdir()
    (suite_tree / "__pycache__" / "x.pyc").write_bytes(b"\0")  # what Python writes beside it: not the suite
    assert reuse.changed_parts(key(suite_tree).parts, key(suite_tree)) == []


def _passed(build_dir, cell, k, finished, state="passed", **extra):
    history.append(
        build_dir,
        "test",
        cell,
        {
            "state": state,
            "finished": finished,
            "passed": 18,
            "skipped": 3,
            "require_gpu": True,
            "key": k.to_json(),
            **extra,
        },
    )


def test_only_a_passed_run_with_the_very_key_is_found(tmp_path, suite_tree, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    k = key(suite_tree)
    assert reuse.find(tmp_path, "c", k, now=now) is None
    _passed(tmp_path, "c", key(suite_tree, driver="570.1"), "2026-12-05T00:00:00Z")
    _passed(tmp_path, "c", k, "2026-12-05T01:00:00Z", state="failed")
    _passed(tmp_path, "other", k, "2026-12-05T02:00:00Z")
    assert reuse.find(tmp_path, "c", k, now=now) is None  # another driver, a failure, another cell
    _passed(tmp_path, "c", k, "2026-12-05T03:00:00Z")
    found = reuse.find(tmp_path, "c", k, now=now)
    assert found is not None and found.run.finished == "2026-12-05T03:00:00Z"
    assert reuse.find(tmp_path, "c", k, max_age_days=0.05, now=now) is None  # older than the limit


def test_a_reused_result_is_never_the_source_of_another(tmp_path, suite_tree, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    k = key(suite_tree)
    _passed(tmp_path, "c", k, "2026-12-05T03:00:00Z", reused_from={"runner": "r", "finished": "2026-10-01T00:00:00Z"})
    assert reuse.find(tmp_path, "c", k, now=datetime(2026, 12, 6, tzinfo=timezone.utc)) is None


def test_a_forged_history_line_of_another_shape_is_not_reused(tmp_path, suite_tree, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    k = key(suite_tree)
    path = history.history_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '{"kind": "test", "cell": "c", "at": "2026-12-05T00:00:00Z", "state": "passed", "key": "' + k.value + '"}\n'
    )
    assert reuse.find(tmp_path, "c", k, now=datetime(2026, 12, 6, tzinfo=timezone.utc)) is None
    assert timedelta(days=reuse.DEFAULT_MAX_AGE_DAYS).days == 30

"""uv.lock as imagematrix reads it: what it pins, and a located error for a lock that is hostile,
mistyped, too deep or too big (never a traceback, never a value that reaches a RUN line unchecked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagematrix.matrix.lockfile import MAX_LOCK_BYTES, LockError, read_uv_lock

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path, lock: str | bytes) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    data = lock.encode() if isinstance(lock, str) else lock
    (tmp_path / "uv.lock").write_bytes(data)
    return tmp_path


def test_the_example_lock_pins_torch_and_its_cuda():
    lock = read_uv_lock(ROOT / "examples" / "uv.project")
    assert lock.torch and lock.torch_cuda and "torch" in lock.packages


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[package]]\nname = "torch"\nversion = "2.9.0;touch${IFS}/tmp/pwned;#"\n', "is not a version"),
        ('[[package]]\nname = "torch"\nversion = "2.9.0\\nRUN id"\n', "is not a version"),
        ('[[package]]\nname = "to rch"\nversion = "2.9.0"\n', "is not a package name"),
        ('[[package]]\nname = "torch"\nversion = 2\n', "version is not a string"),
        ('package = "torch"\n', "not a list"),
        ('[[package]]\nversion = "1"\n', "has no name"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "uv.lock"),
        ("not toml at all = = =\n", "not a readable uv.lock"),
    ],
)
def test_a_hostile_or_mistyped_lock_is_a_located_error(tmp_path, text, needle):
    with pytest.raises(LockError) as err:
        read_uv_lock(_project(tmp_path, text))
    assert needle in str(err.value) and str(tmp_path / "uv.lock") in str(err.value)


def test_a_lock_bigger_than_any_real_one_is_not_parsed(tmp_path):
    project = _project(tmp_path, b"")
    with open(project / "uv.lock", "wb") as f:
        f.truncate(MAX_LOCK_BYTES + 1)
    with pytest.raises(LockError, match=r"more than a uv\.lock can be"):
        read_uv_lock(project)


def test_a_lock_with_a_nul_byte_is_not_readable(tmp_path):
    with pytest.raises(LockError, match=r"not a readable uv\.lock"):
        read_uv_lock(_project(tmp_path, b'[[package]]\nname = "a\x00b"\nversion = "1"\n'))

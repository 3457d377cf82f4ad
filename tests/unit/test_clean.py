"""`invoke clean` removes only a build directory imagematrix made, never through a link, and says what
it refused; whatever it refuses is left exactly as it was."""

from __future__ import annotations

import os

import pytest

from imagematrix.build.clean import clean
from imagematrix.core import builddir
from imagematrix.core.errors import UsageError


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def made(tmp_path):
    """A build directory as imagematrix leaves it: marker, lock, record, a context, a log."""
    out = tmp_path / "build"
    with builddir.build_lock(out, "test"):
        pass
    (out / "status.json").write_text('{"schema": 1, "cells": {}}')
    (out / "c1").mkdir()
    (out / "c1" / "Dockerfile").write_text("FROM scratch\n")
    (out / "logs").mkdir()
    return out


def test_a_directory_imagematrix_made_is_removed(made):
    assert (made / builddir.MARKER).is_file()
    clean(made)
    assert not made.exists()


def test_a_directory_it_did_not_make_is_refused_and_untouched(tmp_path):
    mine = tmp_path / "photos"
    (mine / "2026").mkdir(parents=True)
    (mine / "2026" / "a.jpg").write_bytes(b"x")
    before = _tree(mine)
    with pytest.raises(UsageError, match="not a build directory imagematrix made"):
        clean(mine)
    assert _tree(mine) == before


def test_a_symlinked_out_is_refused_and_its_target_untouched(made, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(made)
    before = _tree(made)
    with pytest.raises(UsageError, match="symbolic link"):
        clean(link)
    assert _tree(made) == before and link.is_symlink()


def test_links_inside_are_removed_not_followed(made, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (made / "c1" / "escape").symlink_to(outside)
    (made / "escape-file").symlink_to(outside / "keep.txt")
    clean(made)
    assert not made.exists()
    assert (outside / "keep.txt").read_text() == "mine"


def test_a_file_is_not_a_build_directory(tmp_path):
    f = tmp_path / "status.json"
    f.write_text("{}")
    with pytest.raises(UsageError, match="not a directory"):
        clean(f)
    assert f.read_text() == "{}"


def test_a_build_directory_of_an_earlier_release_is_recognised_by_its_record_and_lock(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "status.json").write_text("{}")
    (old / builddir.LOCK_FILE).write_text("")
    clean(old)
    assert not old.exists()


def test_the_history_stays_with_the_marker_so_a_later_clean_still_recognises_it(made):
    (made / "history.jsonl").write_text("{}\n")
    clean(made)
    assert sorted(os.listdir(made)) == sorted([builddir.MARKER, "history.jsonl"])
    clean(made, history=True)
    assert not made.exists()

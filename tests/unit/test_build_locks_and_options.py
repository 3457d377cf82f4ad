"""One build per build directory; cache options the builder cannot do; proxy pass-through."""

from __future__ import annotations

import os

import pytest

from imagematrix import build as builds
from imagematrix.docker import (
    BUILDX,
    CLASSIC,
    Builder,
    BuildOptions,
    cache_type,
    check_cache_options,
    proxy_build_args,
)
from imagematrix.errors import UsageError


def test_a_second_build_in_the_same_directory_is_refused_naming_the_holder(tmp_path):
    with builds.build_lock(tmp_path):
        assert builds.lock_holder(tmp_path).startswith(f"PID {os.getpid()} since ")
        with pytest.raises(builds.BuildLocked) as exc, builds.build_lock(tmp_path):
            pass
        assert f"PID {os.getpid()}" in str(exc.value) and "--out" in str(exc.value)
        assert exc.value.exit_code == 2
    assert builds.lock_holder(tmp_path) is None
    with builds.build_lock(tmp_path):  # free again
        pass


def test_clean_refuses_while_a_build_runs_and_never_removes_the_working_directory(tmp_path, monkeypatch):
    with builds.build_lock(tmp_path / "b"), pytest.raises(builds.BuildLocked):
        builds.clean(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError):
        builds.clean(tmp_path)
    builds.clean(tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("spec", "kind"), [
    ("type=local,dest=/tmp/c", "local"), ("type=inline", "inline"), ("user/app:cache", "registry"),
    ("mode=max, type=gha", "gha"),
])
def test_cache_type(spec, kind):
    assert cache_type(spec) == kind


def test_the_docker_driver_only_exports_inline_caches():
    docker_driver = Builder(BUILDX, driver="docker")
    check_cache_options(BuildOptions(cache_to=("type=inline",)), docker_driver)
    check_cache_options(BuildOptions(cache_to=("type=local,dest=x",)), Builder(BUILDX, driver="docker-container"))
    with pytest.raises(UsageError, match="docker-container"):
        check_cache_options(BuildOptions(cache_to=("type=local,dest=x",)), docker_driver)
    with pytest.raises(UsageError, match="buildx"):
        check_cache_options(BuildOptions(cache_to=("type=inline",)), Builder(CLASSIC))


def test_proxy_variables_are_passed_by_name_only():
    env = {"HTTPS_PROXY": "http://user:secret@proxy:3128", "no_proxy": "localhost", "HTTP_PROXY": ""}
    assert proxy_build_args(env) == ("HTTPS_PROXY", "no_proxy")

"""One build per build directory; cache options the builder cannot do; proxy pass-through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagematrix.build.buildkit import (
    BUILDX,
    CLASSIC,
    Builder,
    BuildOptions,
    cache_type,
    check_cache_options,
    csv_fields,
    proxy_build_args,
)
from imagematrix.build.clean import clean
from imagematrix.cli import commands
from imagematrix.core import builddir
from imagematrix.core.errors import UsageError
from imagematrix.matrix.plan import Selection


def test_a_second_build_in_the_same_directory_is_refused_naming_the_holder(tmp_path):
    with builddir.build_lock(tmp_path):
        assert builddir.lock_holder(tmp_path).startswith(f"PID {os.getpid()} (invoke build) since ")
        with pytest.raises(builddir.BuildLocked) as exc, builddir.build_lock(tmp_path):
            pass
        assert f"PID {os.getpid()}" in str(exc.value) and "--out" in str(exc.value)
        assert exc.value.exit_code == 2
    assert builddir.lock_holder(tmp_path) is None
    with builddir.build_lock(tmp_path):  # free again
        pass


def test_render_waits_for_no_one_it_refuses_while_a_build_holds_the_directory(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "matrix.yaml"
    with builddir.build_lock(tmp_path), pytest.raises(builddir.BuildLocked, match=r"\(invoke build\)"):
        commands.render(example, Selection(), tmp_path)
    assert not (tmp_path / "cu13.2-py3.13-devel").exists()  # nothing written
    commands.render(example, Selection(), tmp_path)  # free again: renders
    assert (tmp_path / "cu13.2-py3.13-devel" / "Dockerfile").is_file()


def test_a_classic_docker_cli_from_23_on_has_no_builtin_buildkit():
    assert Builder(CLASSIC, client="20.10.24+dfsg1").classic_has_buildkit
    assert not Builder(CLASSIC, client="28.2.2").classic_has_buildkit
    assert not Builder(CLASSIC, client="").classic_has_buildkit  # unknown: not assumed
    assert not Builder(BUILDX, client="20.10.24").classic_has_buildkit


def test_the_ca_secret_spec_keeps_a_path_with_a_comma_in_one_field():
    assert csv_fields("id=ca-bundle", "src=/etc/ca.pem") == "id=ca-bundle,src=/etc/ca.pem"
    assert csv_fields("id=ca-bundle", "src=/tmp/a,b.pem") == 'id=ca-bundle,"src=/tmp/a,b.pem"'


def test_clean_refuses_while_a_build_runs_and_never_removes_the_working_directory(tmp_path, monkeypatch):
    with builddir.build_lock(tmp_path / "b"), pytest.raises(builddir.BuildLocked):
        clean(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError):
        clean(tmp_path)
    clean(tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("type=local,dest=/tmp/c", "local"),
        ("type=inline", "inline"),
        ("user/app:cache", "registry"),
        ("mode=max, type=gha", "gha"),
    ],
)
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


def test_a_named_builder_or_a_context_builder_is_addressed_as_buildx_wants(example_matrix, tmp_path):
    from imagematrix.build.buildkit import build_argv, for_builder
    from imagematrix.matrix.plan import make_plan

    step = make_plan(example_matrix, Selection(), tmp_path).steps[0]
    remote = Builder(BUILDX, driver="remote", name="farm")
    argv = build_argv(step, for_builder(BuildOptions(builder="farm"), remote), BUILDX)
    assert argv[:6] == ["docker", "buildx", "build", "--builder", "farm", "--load"]
    context = Builder(BUILDX, driver="docker", name="gpu-box", engine="unix:///run/gpu-box.sock")
    argv = build_argv(step, for_builder(BuildOptions(builder="gpu-box"), context), BUILDX)
    assert argv[:6] == ["docker", "--context", "gpu-box", "buildx", "build", "--load"] and "--builder" not in argv
    assert (
        "builder gpu-box: buildx" in context.describe() and "images into unix:///run/gpu-box.sock" in context.describe()
    )


def test_a_cell_of_the_platforms_axis_is_built_for_its_platform(example_matrix, tmp_path):
    from dataclasses import replace

    from imagematrix.build.buildkit import build_argv
    from imagematrix.matrix.plan import make_plan

    step = make_plan(example_matrix, Selection(), tmp_path).steps[0]
    assert "--platform" not in build_argv(step, BuildOptions(), BUILDX)  # no platforms: the builder's own
    arm = replace(step, cell=replace(step.cell, platform="linux/arm64"))
    argv = build_argv(arm, BuildOptions(), BUILDX)
    assert argv[argv.index("--platform") + 1] == "linux/arm64"


def test_a_missing_debian_base_is_answered_with_the_exact_command_that_makes_it():
    from imagematrix.build.preflight import bootstrap_hint

    assert bootstrap_hint(["debian:forky-slim"]) == (
        "make them from Debian's mirror with `IMAGEMATRIX_BASE_SUITES=forky bash scripts/bootstrap-host.sh` (as root)"
    )
    both = bootstrap_hint(["debian:forky-slim", "docker.io/library/debian:bookworm-slim", "debian:forky-slim"])
    assert "`IMAGEMATRIX_BASE_SUITES='forky bookworm' bash scripts/bootstrap-host.sh`" in both
    arm = bootstrap_hint(["imagematrix-base/debian-arm64:trixie-slim"])
    assert "`IMAGEMATRIX_BASE_ARM64=trixie bash scripts/bootstrap-host.sh`" in arm
    assert bootstrap_hint(["nvidia/cuda:12.8.1-devel-ubuntu24.04"]).startswith("make Debian bases with")
    assert bootstrap_hint(["debian:forky-slim; rm -rf /"]).startswith("make Debian bases with")  # not a suite name


def test_provenance_is_asked_for_only_where_the_builder_keeps_it(example_matrix, tmp_path):
    from imagematrix.build.buildkit import build_argv, for_builder
    from imagematrix.matrix.plan import make_plan

    step = make_plan(example_matrix, Selection(), tmp_path).steps[0]
    classic_store = Builder(BUILDX, driver="docker")
    containerd_store = Builder(BUILDX, driver="docker", provenance=True)
    assert "--provenance=mode=max" not in build_argv(step, for_builder(BuildOptions(), classic_store), BUILDX)
    assert "--provenance=mode=max" in build_argv(step, for_builder(BuildOptions(), containerd_store), BUILDX)
    assert "provenance kept (containerd image store)" in containerd_store.describe()
    assert "provenance" not in classic_store.describe()
    # the classic CLI has no such flag, whatever the options say
    assert "--provenance=mode=max" not in build_argv(step, BuildOptions(provenance=True), CLASSIC)


def test_the_digest_of_a_push_is_read_from_either_image_store_s_answer():
    from imagematrix.build.candidates import push_image

    digest = "sha256:" + "c" * 64

    class Image:
        def tag(self, repository, tag):
            pass

    class Images:
        def __init__(self, lines):
            self.lines = lines

        def push(self, repository, tag, stream, decode):
            return iter(self.lines)

    class Client:
        def __init__(self, lines):
            self.images = Images(lines)

    classic = [{"status": "Pushed"}, {"aux": {"Tag": "v1", "Digest": digest, "Size": 1}}]
    containerd = [{"status": "Pushed", "id": "3d218c71f205"}, {"status": f"v1: digest: {digest} size: 855"}]
    assert push_image(Client(classic), Image(), "r/x", ["v1"]) == digest
    assert push_image(Client(containerd), Image(), "r/x", ["v1"]) == digest
    with pytest.raises(Exception, match="gave no digest"):  # a status that only looks like one is no digest
        push_image(Client([{"status": "v1: digest: sha256:abc size: 1"}]), Image(), "r/x", ["v1"])

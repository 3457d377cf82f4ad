"""BuildKit's plain progress output, as docker buildx 0.13 / BuildKit 0.8 print it here."""

from imagematrix.build.buildkit import BuildkitLog

FAILED = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 103B done
#1 DONE 0.0s

#4 [devel 1/3] FROM docker.io/library/debian:trixie-slim
#4 CACHED

#5 [devel 2/3] RUN echo hi
#5 0.791 hi
#5 DONE 0.8s

#7 [devel 3/3] COPY imagematrix/devel.json /etc/imagematrix/cell.json
#7 CACHED

#6 [broken 1/2] RUN echo step2 && exit 3
#6 1.148 step2
#6 ERROR: executor failed running [/bin/sh -c echo step2 && exit 3]: exit code: 3

#8 [prune-runtime 1/1] RUN rm -rf /opt/venv/cache
#8 CANCELED
------
 > [broken 1/2] RUN echo step2 && exit 3:
1.148 step2
------
ERROR: failed to solve: executor failed running [/bin/sh -c echo step2 && exit 3]: exit code: 3
"""


def parse(text: str, **kw) -> BuildkitLog:
    log = BuildkitLog(**kw)
    for line in text.splitlines(keepends=True):
        log.feed(line)
    return log


def test_the_failing_step_is_the_vertex_that_errored_not_the_cancelled_one():
    log = parse(FAILED)
    assert log.failing_step() == "#6 [broken 1/2] RUN echo step2 && exit 3"
    assert log.error() == "executor failed running [/bin/sh -c echo step2 && exit 3]: exit code: 3"
    assert log.vertices[8].state == "canceled"


def test_counts_leave_out_from_and_internal_vertices():
    assert parse(FAILED).counts() == {"steps_run": 1, "steps_cached": 1}


def test_feed_returns_each_new_vertex_once_and_tracks_the_current_one():
    log = BuildkitLog()
    started = [v.name for line in FAILED.splitlines() if (v := log.feed(line))]
    assert started[0] == 'building with "default" instance using docker driver'
    assert "[devel 2/3] RUN echo hi" in started and started.count("[devel 2/3] RUN echo hi") == 1
    assert log.current is not None and log.current.name == "[prune-runtime 1/1] RUN rm -rf /opt/venv/cache"


def test_the_running_step_is_the_unfinished_one_not_the_last_started():
    """A context load for a later COPY can start after a long RUN and finish at once: an interrupted
    build was under way in the RUN."""
    log = parse(
        "#5 [slow 2/3] RUN sleep 600\n"
        "#6 [internal] load build context\n#6 transferring context: 2B done\n#6 DONE 0.0s\n"
    )
    assert log.current.name == "[internal] load build context"
    assert log.running.name == "[slow 2/3] RUN sleep 600"
    assert parse("#1 [internal] load build definition from Dockerfile\n").running.number == 1
    assert parse("#1 [internal] load build definition\n#1 DONE 0.0s\n").running.number == 1  # nothing else


def test_failure_tail_starts_at_the_failing_step():
    tail = parse(FAILED).failure_tail(50)
    assert tail[0] == "#6 [broken 1/2] RUN echo step2 && exit 3"
    assert tail[-1].startswith("ERROR: failed to solve")
    assert "" not in tail
    assert len(parse(FAILED).failure_tail(3)) == 3


def test_an_error_before_any_step_falls_back_to_the_solve_error():
    text = (
        "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n"
        "ERROR: failed to solve: dockerfile parse error on line 3: unknown instruction: RNU\n"
    )
    log = parse(text)
    assert log.failing_step() == ""
    assert log.error() == "dockerfile parse error on line 3: unknown instruction: RNU"


def test_a_missing_base_image_names_the_metadata_step():
    text = (
        "#3 [internal] load metadata for docker.io/library/nosuch:1\n"
        "#3 ERROR: pull access denied, repository does not exist or may require authorization\n"
        "------\n > [internal] load metadata for docker.io/library/nosuch:1:\n------\n"
        "ERROR: failed to solve: nosuch:1: pull access denied\n"
    )
    log = parse(text)
    assert log.failing_step() == "#3 [internal] load metadata for docker.io/library/nosuch:1"
    assert log.error().startswith("pull access denied")


def test_without_a_vertex_error_the_quoted_step_heading_is_used():
    text = "------\n > [devel 4/5] RUN pip install torch:\n------\nerror: failed to solve: rpc error: code = Unknown\n"
    log = parse(text)
    assert log.failing_step() == "[devel 4/5] RUN pip install torch"
    assert log.error() == "rpc error: code = Unknown"


PIP_SOURCE_BUILD = (
    """\
#7 [pyg-devel 1/2] RUN python -m pip install --no-build-isolation torch_scatter==2.1.2
#7 3.210 Building wheels for collected packages: torch_scatter
#7 95.10 csrc/cuda/scatter_cuda.cu(41): error: identifier "AT_DISPATCH_X" is undefined
#7 95.11 1 error detected in the compilation of "csrc/cuda/scatter_cuda.cu".
#7 96.00 g++: fatal error: Killed signal terminated program cc1plus
#7 120.5 error: command '/usr/local/cuda/bin/nvcc' failed with exit code 2
"""
    + "".join(f"#7 121.{i} note: line {i} of pip's epilogue\n" for i in range(30))
    + """\
#7 182.7 ERROR: Could not build wheels for torch_scatter, which is required to install pyproject.toml-based projects
#7 ERROR: process "/bin/sh -c python -m pip install" did not complete successfully: exit code: 1
ERROR: failed to solve: process "/bin/sh -c python -m pip install" did not complete successfully: exit code: 1
"""
)


def test_the_lines_that_name_the_cause_are_kept_when_the_tail_has_scrolled_past_them():
    log = parse(PIP_SOURCE_BUILD, tail_lines=25)
    assert not any("scatter_cuda.cu(41)" in t for t in log.failure_tail(15))
    assert [line.split(" ", 2)[2] for line in log.error_lines] == [
        'csrc/cuda/scatter_cuda.cu(41): error: identifier "AT_DISPATCH_X" is undefined',
        "g++: fatal error: Killed signal terminated program cc1plus",
        "error: command '/usr/local/cuda/bin/nvcc' failed with exit code 2",
        "ERROR: Could not build wheels for torch_scatter, which is required to install pyproject.toml-based projects",
    ]
    assert not parse(FAILED).error_lines  # "exit 3" names nothing: no lines

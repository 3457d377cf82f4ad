"""The executor's decisions with a fake engine: skip, build, fail, block, interrupt.

Only the engine is fake here (image store + the docker build process); the plan,
the rendering and the status record are the real ones. tests/integration runs
the same paths against a real engine.
"""

from __future__ import annotations

import errno
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from docker.errors import ImageNotFound
from rich.console import Console

from imagematrix.build import executor as builds
from imagematrix.build.buildkit import BUILDX, Builder, BuildOptions
from imagematrix.build.progress import Progress
from imagematrix.core.contract import BUILD_HASH_LABEL
from imagematrix.core.errors import DiskWriteError, EngineLost
from imagematrix.core.status import read_raw
from imagematrix.matrix.load import load_matrix
from imagematrix.matrix.plan import Selection, make_plan

TINY = Path(__file__).resolve().parents[1] / "integration" / "matrices" / "tiny.yaml"
FAIL_LINES = [
    "#6 [broken 1/2] RUN exit 3\n",
    "#6 ERROR: executor failed running [/bin/sh -c exit 3]: exit code: 3\n",
    "ERROR: failed to solve: executor failed running [/bin/sh -c exit 3]: exit code: 3\n",
]


def cid(target: str) -> str:
    return f"cu1.0-py3.13-{target}"


class FakeImage:
    def __init__(self, ref: str, labels: dict[str, str], n: int):
        self.id = f"sha256:{n:064x}"
        self.short_id = self.id[:17]
        self.labels = labels
        self.tags = [ref]
        self.attrs = {"Size": 1000 * n, "Created": "2026-11-21T00:00:00Z"}

    def reload(self) -> None:
        pass


class FakeEngine:
    """Image store and `docker build`: builds succeed unless the target is in ``fail``."""

    def __init__(self):
        self.store: dict[str, FakeImage] = {"debian:trixie-slim": FakeImage("debian:trixie-slim", {}, 1)}
        self.fail: set[str] = set()
        self.built: list[str] = []
        self.argvs: dict[str, list[str]] = {}
        self.removed: list[str] = []
        self.images = self
        self.interrupt_on: str | None = None
        self.alive = True
        self.lose_engine_on: str | None = None  # a build of this target takes the engine down
        self.fill_disk_on: str | None = None  # a build of this target cannot write its log

    def ping(self) -> bool:
        if not self.alive:
            raise requests.exceptions.ConnectionError(
                "Connection aborted: FileNotFoundError(2, 'No such file or directory')"
            )
        return True

    def get(self, ref: str) -> FakeImage:
        self.ping()
        if ref not in self.store:
            raise ImageNotFound(ref)
        return self.store[ref]

    def run_docker_build(self, argv, env, log_path, parsed, on_output) -> int:
        target, ref = argv[argv.index("--target") + 1], argv[argv.index("--tag") + 1]
        labels = dict(a.split("=", 1) for a in argv[1:] if "=" in a and a.startswith("imagematrix."))
        labels["imagematrix.cell"] = ref.rpartition(":")[2]  # the Dockerfile's LABEL (tags are cell ids here)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("fake\n")
        self.built.append(target)
        self.argvs[target] = argv
        if target == self.lose_engine_on:
            self.alive = False
            parsed.feed("ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n")
            return 1
        if target == self.fill_disk_on:
            raise DiskWriteError.of(log_path, OSError(errno.ENOSPC, "No space left on device"))
        if target == self.interrupt_on:
            parsed.feed("#9 [slow 1/1] RUN sleep 600\n")
            raise KeyboardInterrupt("SIGTERM")
        if target in self.fail:
            for line in FAIL_LINES:
                parsed.feed(line)
            return 1
        if ref in self.store:
            self.store[ref].tags = []  # the tag moves to the new image
        self.store[ref] = FakeImage(ref, labels, len(self.store) + len(self.removed) + 1)
        return 0

    def remove(self, image_id: str) -> None:
        self.removed.append(image_id)


@pytest.fixture
def engine(monkeypatch) -> FakeEngine:
    e = FakeEngine()
    monkeypatch.setattr(builds, "run_docker_build", e.run_docker_build)
    return e


def quiet(plan) -> Progress:
    return Progress(Console(file=io.StringIO()), [s.cell.id for s in plan.steps])


def execute(engine: FakeEngine, build_dir: Path, force: bool = False, options: BuildOptions | None = None):
    plan = make_plan(load_matrix(TINY), Selection(), build_dir)
    builder = Builder(BUILDX, driver="docker")
    outcomes = builds.Executor(plan, options or BuildOptions(), builder, engine, quiet(plan), force=force).run()
    return {o.cell: o.state for o in outcomes}


def recorded(build_dir: Path) -> dict[str, str]:
    return {c: r["build"]["state"] for c, r in read_raw(build_dir).items()}


def test_a_failed_cell_blocks_only_its_dependants(engine, tmp_path):
    engine.fail = {"broken"}
    states = execute(engine, tmp_path)
    assert states == {
        cid("devel"): "built",
        cid("broken"): "failed",
        cid("extra"): "built",
        cid("runtime"): "built",
        cid("broken-runtime"): "blocked",
    }
    assert recorded(tmp_path) == states
    assert "broken-runtime" not in engine.built  # not attempted
    rec = read_raw(tmp_path)[cid("broken")]["build"]
    assert rec["step"] == "#6 [broken 1/2] RUN exit 3" and rec["error"].endswith("exit code: 3")
    assert read_raw(tmp_path)[cid("broken-runtime")]["build"]["blocked_by"] == cid("broken")


def test_a_failed_root_blocks_every_descendant_with_the_root_as_cause(engine, tmp_path):
    engine.fail = {"devel"}
    states = execute(engine, tmp_path)
    assert states[cid("devel")] == "failed"
    assert {c for c, s in states.items() if s == "blocked"} == {
        cid(t) for t in ("broken", "extra", "runtime", "broken-runtime")
    }
    assert {r["build"].get("blocked_by") for c, r in read_raw(tmp_path).items() if c != cid("devel")} == {cid("devel")}
    assert engine.built == ["devel"]


def test_a_rerun_builds_only_failed_blocked_and_missing_cells(engine, tmp_path):
    engine.fail = {"broken"}
    execute(engine, tmp_path)
    engine.fail, engine.built = set(), []
    del engine.store[next(r for r in engine.store if r.endswith(cid("extra")))]
    states = execute(engine, tmp_path)
    assert sorted(engine.built) == ["broken", "broken-runtime", "extra"]
    assert states[cid("devel")] == states[cid("runtime")] == "skipped"
    engine.built = []
    assert set(execute(engine, tmp_path).values()) == {"skipped"} and engine.built == []
    assert all(r["build"]["cached"] for r in read_raw(tmp_path).values())


def test_force_and_no_cache_rebuild_unchanged_cells(engine, tmp_path):
    execute(engine, tmp_path)
    engine.built = []
    assert set(execute(engine, tmp_path, force=True).values()) == {"built"}
    assert len(engine.built) == 5


def test_no_cache_builds_shared_stages_once_per_run(engine, tmp_path):
    execute(engine, tmp_path, force=True, options=BuildOptions(no_cache=True))
    assert "--no-cache" in engine.argvs["devel"] and "--no-cache-filter" not in engine.argvs["devel"]
    runtime = engine.argvs["runtime"]
    assert "--no-cache" not in runtime
    filters = [runtime[i + 1] for i, a in enumerate(runtime) if a == "--no-cache-filter"]
    assert filters == ["prune-runtime", "runtime"]  # devel's stages come from the devel build just made
    broken_runtime = engine.argvs["broken-runtime"]
    assert [broken_runtime[i + 1] for i, a in enumerate(broken_runtime) if a == "--no-cache-filter"] == [
        "prune-broken-runtime",
        "broken-runtime",
    ]


def test_a_rebuild_removes_the_image_it_replaced_but_no_other(engine, tmp_path):
    execute(engine, tmp_path)
    old = {ref: img.id for ref, img in engine.store.items()}
    execute(engine, tmp_path, force=True)
    replaced = {r["build"]["replaced_image_id"] for r in read_raw(tmp_path).values()}
    assert sorted(engine.removed) == sorted(replaced) == sorted(v for k, v in old.items() if k != "debian:trixie-slim")


def test_a_changed_base_image_rebuilds_every_cell(engine, tmp_path):
    execute(engine, tmp_path)
    engine.store["debian:trixie-slim"] = FakeImage("debian:trixie-slim", {}, 99)
    engine.built = []
    assert set(execute(engine, tmp_path).values()) == {"built"}


def test_the_build_hash_ignores_how_a_build_runs_but_not_what_it_makes(tmp_path):
    plan = make_plan(load_matrix(TINY), Selection(), tmp_path)
    step = plan.steps[0]
    bases = builds.cell_bases(step, plan)
    ids = {"debian:trixie-slim": "sha256:aa"}
    h = builds.build_hash(step, BuildOptions(), ids, bases)
    how = BuildOptions(
        no_cache=True, pull=True, cache_from=("type=local,src=x",), ca_cert=Path("/x"), build_args=("HTTP_PROXY",)
    )
    assert builds.build_hash(step, how, ids, bases) == h
    assert builds.build_hash(step, BuildOptions(labels={BUILD_HASH_LABEL: "old"}), ids, bases) == h
    assert builds.build_hash(step, BuildOptions(labels={"org.example": "1"}), ids, bases) != h
    assert builds.build_hash(step, BuildOptions(), {"debian:trixie-slim": "sha256:bb"}, bases) != h
    other = replace(step, rendered=replace(step.rendered, dockerfile=step.rendered.dockerfile + "RUN true\n"))
    assert builds.build_hash(other, BuildOptions(), ids, bases) != h


def test_an_interrupt_records_the_cell_as_failed_and_exits_130(engine, tmp_path):
    engine.interrupt_on = "extra"
    with pytest.raises(builds.BuildInterrupted) as exc:
        execute(engine, tmp_path)
    assert exc.value.exit_code == 130 and "interrupted (SIGTERM)" in str(exc.value)
    rec = read_raw(tmp_path)[cid("extra")]["build"]
    assert rec["state"] == "failed" and rec["interrupted"] is True and rec["step"] == "#9 [slow 1/1] RUN sleep 600"
    assert recorded(tmp_path)[cid("devel")] == "built"
    json.loads((tmp_path / "status.json").read_text())


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [("lose_engine_on", EngineLost, "engine lost"), ("fill_disk_on", DiskWriteError, "no space left")],
)
def test_a_host_fault_fails_the_cell_and_starts_nothing_more(engine, tmp_path, fault, error, reason):
    setattr(engine, fault, "broken")
    with pytest.raises(error) as exc:
        execute(engine, tmp_path)
    assert exc.value.exit_code == 1
    assert recorded(tmp_path) == {
        cid("devel"): "built",
        cid("broken"): "failed",
        cid("extra"): "blocked",
        cid("runtime"): "blocked",
        cid("broken-runtime"): "blocked",
    }
    assert engine.built == ["devel", "broken"]  # nothing started after the fault
    cells = read_raw(tmp_path)
    assert cells[cid("broken")]["build"]["host_fault"] == reason
    assert cells[cid("runtime")]["build"]["error"] == f"not attempted: {reason} while building {cid('broken')}"


def test_an_engine_that_vanishes_between_cells_is_named_not_a_traceback(engine, tmp_path):
    engine.lose_engine_on = "broken"
    engine.fail = set()
    with pytest.raises(EngineLost, match=r"cannot reach the Docker engine at .* any more"):
        execute(engine, tmp_path)


def test_stale_building_records_become_interrupted_failures(tmp_path):
    from imagematrix.core.status import update_cell

    update_cell(tmp_path, "a", "build", {"state": "building"})
    update_cell(tmp_path, "b", "build", {"state": "built"})
    assert builds.mark_stale(tmp_path) == ["a"]
    assert read_raw(tmp_path)["a"]["build"]["interrupted"] is True
    assert recorded(tmp_path) == {"a": "failed", "b": "built"}


def test_the_failure_message_names_cell_step_log_tail_and_blocked(engine, tmp_path):
    engine.fail = {"broken"}
    plan = make_plan(load_matrix(TINY), Selection(), tmp_path)
    outcomes = builds.Executor(plan, BuildOptions(), Builder(BUILDX), engine, quiet(plan)).run()
    msg = builds.failure_message(outcomes)
    assert f"cell {cid('broken')} failed at step #6 [broken 1/2] RUN exit 3: executor failed" in msg
    assert f"log: {tmp_path / 'logs' / (cid('broken') + '.log')}" in msg
    assert "  | #6 ERROR: executor failed" in msg
    assert f"blocked, not attempted: {cid('broken-runtime')}" in msg

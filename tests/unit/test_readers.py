"""Every reader of a file imagematrix did not just write fails closed: a FIFO, a device, /dev/zero, a
directory, /proc or a 5,000-character path given where a key, an envelope, a record, an audit, the
history, a lock or Docker's config is read is refused with a message (never a hang, a traceback or
unbounded memory); a damaged input is "untested", never "passed". Each read runs under a watchdog."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagematrix.core import files, history, status
from imagematrix.core.builddir import flocked
from imagematrix.core.errors import ImagematrixError, UsageError

WATCHDOG_S = 10


def within(fn, seconds: float = WATCHDOG_S):
    """``fn()``'s result or exception, or fail when it has not returned in time (a hang)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # the caller inspects it
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} did not return within {seconds} s (it blocks)"
    return box


@pytest.fixture
def hostile(tmp_path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    d = tmp_path / "dir"
    d.mkdir()
    return {
        "fifo": fifo,
        "/dev/zero": Path("/dev/zero"),
        "/dev/null": Path("/dev/null"),
        "directory": d,
        "/proc": Path("/proc/self/status"),
        "long": Path("x" * 5000),
    }


KINDS = sorted(files.LIMITS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["fifo", "/dev/zero", "/dev/null", "directory", "/proc", "long"])
def test_the_one_reader_refuses_what_is_not_a_bounded_regular_file(hostile, kind, case):
    box = within(lambda: files.read_bytes(hostile[case], kind))
    err = box.get("error")
    if case == "/proc":  # a regular file in /proc: read, but never past the kind's cap
        assert err is None or isinstance(err, files.Unreadable)
        assert err is not None or len(box["value"]) <= files.LIMITS[kind]
        return
    assert isinstance(err, files.Unreadable), box


def test_a_file_over_its_cap_and_json_too_deep_are_refused(tmp_path):
    big = tmp_path / "big.pub"
    big.write_bytes(b"x" * (files.LIMITS["key"] + 1))
    with pytest.raises(files.Unreadable, match="more than a key file"):
        files.read_bytes(big, "key")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200 + "]" * 200)
    with pytest.raises(files.Unreadable, match="nest"):
        files.read_json(deep, "envelope")
    deeper = tmp_path / "deeper.json"
    deeper.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(files.Unreadable, match="RecursionError"):
        files.read_json(deeper, "envelope")


KEY_READERS = {
    "verify --key / publish.verify_key": lambda p: __import__("imagematrix.evidence.attest").evidence.attest.public_key(
        p
    ),
    "--signing-key / IMAGEMATRIX_SIGNING_KEY_FILE": lambda p: __import__(
        "imagematrix.evidence.attest"
    ).evidence.attest.signer(str(p)),
}


@pytest.mark.parametrize("reader", KEY_READERS)
@pytest.mark.parametrize("case", ["fifo", "/dev/zero", "/dev/null", "directory", "long"])
def test_key_files_are_read_only_as_bounded_regular_files(hostile, reader, case):
    box = within(lambda: KEY_READERS[reader](hostile[case]))
    assert isinstance(box.get("error"), UsageError), box


@pytest.mark.parametrize("case", ["fifo", "/dev/zero", "directory", "long"])
def test_an_envelope_file_is_read_only_as_a_bounded_regular_file(hostile, case):
    from imagematrix.evidence.verify import read_envelope

    box = within(lambda: read_envelope(hostile[case]))
    assert isinstance(box.get("error"), UsageError), box


def test_the_history_a_lock_and_status_json_as_fifos_neither_hang_nor_pass(tmp_path, monkeypatch):
    monkeypatch.delenv(history.STATE_ENV, raising=False)
    os.mkfifo(history.history_path(tmp_path))
    box = within(lambda: history.read([history.history_path(tmp_path)]))
    events, notes = box["value"]
    assert events == [] and "a FIFO" in notes[0]
    box = within(lambda: history.append(tmp_path, "test", "c", {"state": "passed", "passed": 1}))
    assert isinstance(box.get("error"), history.HistoryError) and "a FIFO" in str(box["error"])
    lock = tmp_path / "x.lock"
    os.mkfifo(lock)

    def hold():
        with flocked(lock):
            return True

    box = within(hold)
    assert isinstance(box.get("error"), ImagematrixError) and "a FIFO" in str(box["error"])
    other = tmp_path / "s"
    other.mkdir()
    os.mkfifo(status.status_path(other))
    box = within(lambda: status.read_status(other))
    assert "error" in box or box["value"].get("c").test is None


@pytest.mark.parametrize(
    "content",
    ["fifo", "[" * 5000 + "]" * 5000, '{"objects": [1, 2, "x"]}', "[]", "not json", '{"objects": "x"}'],
)
def test_an_audit_beside_the_record_that_is_not_one_is_no_audit(tmp_path, content):
    from imagematrix.oracle.audit import AUDITS_DIR, load

    image = "sha256:" + "a" * 64
    path = tmp_path / AUDITS_DIR / f"{'a' * 64}.json"
    path.parent.mkdir(parents=True)
    if content == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(content)
    box = within(lambda: load(tmp_path, image))
    assert "error" not in box, box
    doc = box["value"]
    if doc is not None:  # read, but a prediction from it must not crash or pass
        from imagematrix.oracle.gpus import gpu
        from imagematrix.oracle.predict import predict

        verdict = predict(doc, gpu("H100"), "580")
        assert verdict.mark is not None


def test_docker_config_that_is_a_fifo_means_no_credentials(tmp_path, monkeypatch):
    from imagematrix.evidence import registry

    os.mkfifo(tmp_path / "config.json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    box = within(lambda: registry.credentials("127.0.0.1:5000"))
    assert box.get("value") is None and "error" not in box


# --- statements of another shape, signed by the right key -------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
FIELDS = ("subject", "predicate", "predicateType")
PREDICATE_FIELDS = ("result", "suite", "gpus", "key", "driver", "finished", "requireGpu", "passed")


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    from imagematrix.evidence import attest

    d = tmp_path_factory.mktemp("k")
    attest.keygen(d)
    return attest.signer(str(d / attest.PRIVATE_NAME)), d / attest.PUBLIC_NAME


def _good() -> dict:
    from imagematrix.evidence import attest

    run = {
        "state": "passed",
        "suite": "smoke",
        "passed": 3,
        "require_gpu": True,
        "finished": "2026-12-07T10:00:00Z",
        "gpu_info": {"driver": "580.159.04", "devices": [{"name": "H100", "compute_capability": "9.0"}]},
        "key": {"value": "k" * 64},
    }
    return attest.statement("r/x", "sha256:" + "a" * 64, "c", run)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(FIELDS + PREDICATE_FIELDS), value=JSONISH, max_age=st.sampled_from([None, 30.0]))
def test_a_signed_statement_of_any_shape_is_refused_or_verified_never_a_crash(keypair, field, value, max_age):
    from imagematrix.evidence import attest
    from imagematrix.evidence.verify import verify_envelopes

    signer, public = keypair
    doc = _good()
    if field in PREDICATE_FIELDS:
        doc["predicate"][field] = value
    else:
        doc[field] = value
    answer = verify_envelopes(
        [attest.sign(doc, signer)], public, "sha256:" + "a" * 64, cc="9.0", driver="580", max_age_days=max_age
    )
    assert answer.lines  # refused with a reason, or verified: either way an answer, never an exception
    if answer.ok:
        p = doc["predicate"]
        assert p.get("result") == "passed" and p.get("requireGpu") is True


def test_a_zoneless_time_under_max_age_is_refused_not_a_crash(keypair):
    from imagematrix.evidence import attest
    from imagematrix.evidence.verify import verify_envelopes

    signer, public = keypair
    doc = _good()
    doc["predicate"]["finished"] = "2026-12-07T10:00:00"
    answer = verify_envelopes([attest.sign(doc, signer)], public, "sha256:" + "a" * 64, max_age_days=30)
    assert not answer.ok and "has no zone" in answer.lines[0]


# --- history lines of any shape: never a pass that did not happen -------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    passed=st.one_of(st.integers(-5, 50), st.none(), st.text(max_size=3)),
    failed=st.one_of(st.integers(-2, 5), st.none()),
    errors=st.one_of(st.integers(-2, 5), st.none()),
    finished=st.one_of(
        st.sampled_from(["2026-12-07T10:00:00Z", "2026-12-07T10:00:00", "2099-01-01T00:00:00Z", "", "x"]),
        st.text(max_size=25),
    ),
    state=st.sampled_from(["passed", "failed", "error", "timeout", "missing", "x"]),
)
def test_a_history_line_is_reused_only_when_it_holds_up(tmp_path_factory, passed, failed, errors, finished, state):
    from imagematrix.testing import reuse

    d = tmp_path_factory.mktemp("h")
    key = reuse.Key("sha256:" + "a" * 64, {"s": 1}, {"h": 1})
    line = {"kind": "test", "cell": "c", "at": finished, "runner": "r", "state": state, "key": key.to_json()}
    line |= {"passed": passed, "failed": failed, "errors": errors, "finished": finished}
    path = history.history_path(d)
    path.write_text(json.dumps(line) + "\n")
    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    found = reuse.lookup(d, "c", key, now=now).found
    if found is not None:
        run = found.run
        assert run.state == "passed" and isinstance(run.passed, int) and run.passed > 0
        assert not run.failed and not run.errors
        assert reuse.parse_time(run.finished or "") is not None

"""nox sessions: `nox -l` lists them. The gpu_* sessions are generated from the matrix's Pythons.

Every session uses the host's tools (venv_backend "none"): the Python under
test lives inside each image, so the host needs none of the matrix's Pythons.
Options after `--` go to `python -m imagematrix.testing` (`nox -s gpu_smoke-<python> -- --help`),
the same as `imagematrix test`'s.
"""

from __future__ import annotations

import functools
import sys

import nox

from imagematrix.testing import run as testrun
from imagematrix.testing import suite as suites

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "unit"]  # plain `nox`; GPU and engine sessions are asked for by name
# nox's own interpreter, where the package is installed; `-m` puts the top directory on sys.path as CI's run does.
PY = (sys.executable, "-m")


@nox.session
def unit(session):
    """Unit tests: no Docker engine, no GPU."""
    session.run(*PY, "pytest", "tests/unit", *session.posargs)


@nox.session(default=False)
def integration(session):
    """Real-engine tests (pytest -m docker tests/integration); CI sets IMAGEMATRIX_REQUIRE_DOCKER=1."""
    session.run(*PY, "pytest", "-m", "docker", "tests/integration", *session.posargs)


@nox.session
def lint(session):
    """invoke lint: ruff on the code, hadolint on the rendered Dockerfiles, actionlint and zizmor on the workflow."""
    session.run(*PY, "invoke", "lint", *session.posargs)


def gpu(session, suite, python):
    code = testrun.main(["--suite", suite, "--python", python, *session.posargs])
    if code:
        session.error(suites.EXIT_MEANING.get(code, f"exit {code}"))


# One session per Python with an explicit name: a python=[...] list with
# venv_backend "none" would collapse into one session named gpu_smoke (nox ignores the list then).
PYTHONS, PROBLEM = suites.session_pythons()
if PROBLEM:
    print(f"nox: no gpu_* sessions, the matrix cannot be read:\n{PROBLEM}", file=sys.stderr)
for _py in PYTHONS:
    for _suite in suites.SUITES.values():
        _fn = functools.partial(gpu, suite=_suite.name, python=_py)
        _fn.__doc__ = _suite.describe(_py)
        # Tagged: `nox -t gpu_smoke` runs every Python's session without naming a version (CI, runners).
        nox.session(_fn, name=f"gpu_{_suite.name}-{_py}", default=False, tags=[f"gpu_{_suite.name}"])

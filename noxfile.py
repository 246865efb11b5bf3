"""Workflows: ``nox -s tests`` and ``nox -s benchmark``.

Each session builds its own virtualenv with the CPU torch wheel pinned first (as the
README's install does), then the package. ``tests`` runs the benchmark files once,
untimed; ``benchmark`` times them, autosaves and compares with the previous saved run.
"""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
# One set of pytest-benchmark flags for every timed run.
BENCHMARK_FLAGS = ["--benchmark-enable", "--benchmark-only", "--benchmark-autosave", "--benchmark-columns=min,median,mean,ops,rounds"]


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, plus the benchmark files once with timing disabled."""
    _install(session)
    session.run("pytest", "tests", "benchmarks", "--benchmark-disable", *session.posargs)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Timed benchmarks, saved under .benchmarks/ and compared with the previous run."""
    _install(session)
    session.run("pytest", "benchmarks", *BENCHMARK_FLAGS, "--benchmark-compare", *session.posargs, success_codes=[0])

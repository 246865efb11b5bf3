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
BENCHMARK_STORAGE = ".benchmarks"
BENCHMARK_FLAGS = [
    "--benchmark-enable", "--benchmark-only", "--benchmark-autosave", f"--benchmark-storage={BENCHMARK_STORAGE}",
    "--benchmark-columns=min,median,mean,ops,rounds", "--benchmark-group-by=group",
]


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, plus the benchmark files once with timing disabled."""
    _install(session)
    session.run("pytest", "tests", "benchmarks", "--benchmark-disable", *session.posargs)


def _split_fail_above(posargs: list[str]) -> tuple[list[str], list[str]]:
    """``--fail-above PCT`` goes to the comparison report; everything else to pytest."""
    args, report = list(posargs), []
    for i, arg in enumerate(args):
        if arg == "--fail-above" and i + 1 < len(args):
            report = ["--fail-above", args[i + 1]]
            del args[i : i + 2]
            break
        if arg.startswith("--fail-above="):
            report = ["--fail-above", arg.split("=", 1)[1]]
            del args[i]
            break
    return args, report


@nox.session
def benchmark(session: nox.Session) -> None:
    """Timed benchmarks, saved under .benchmarks/, compared with the previous run.

    Writes .benchmarks/report/comparison.md, loaders.csv and others.csv (clips/s per
    setting, ratios to the seed loader and the best peer, change since the previous run).
    ``nox -s benchmark -- --fail-above 10`` fails when a median time grew by more than 10%;
    other arguments after ``--`` go to pytest (e.g. ``-k loaders``).
    """
    _install(session)
    pytest_args, report_args = _split_fail_above(session.posargs)
    session.run("pytest", "benchmarks", *BENCHMARK_FLAGS, "--benchmark-compare", *pytest_args)
    session.run("python", "benchmarks/compare.py", "--latest", BENCHMARK_STORAGE, "--out-dir",
                f"{BENCHMARK_STORAGE}/report", *report_args)

"""fuzzkit's pytest plugin, loaded by pytest wherever fuzzkit is installed (entry point
``pytest11``; ``-p no:fuzzkit`` turns it off).

* The hypothesis profiles ``fuzzkit-ci``, ``fuzzkit-dev`` and ``fuzzkit-overnight`` are
  registered at start-up: ``pytest --hypothesis-profile=fuzzkit-ci`` works in any project.
* ``--fuzzkit-arch``, ``--fuzzkit-revision`` choose the configuration regression cases are
  replayed on (default: each program's own) and the ``fuzzkit_state_machine`` fixture builds
  (default x86, revision fixed); ``--fuzzkit-plugin NAME`` / ``no:NAME`` (repeatable) choose the
  plugins as ``fuzzkit -p`` does (default for a regression case: the installed plugins its
  program was recorded with).
* :func:`fuzzkit_regressions` turns a reports folder, a folder of programs or one program
  file into test cases, so fuzzkit's regression bundles join a suite in one line::

      from fuzzkit.pytest_plugin import fuzzkit_regressions

      test_fuzzkit_bugs = fuzzkit_regressions("reports/")

  A case fails while its bug still reproduces. The ``test_<slug>.py`` of every report bundle
  is such a line.
* Fixtures: ``fuzzkit_session`` (the plugin set the options choose) and
  ``fuzzkit_state_machine`` (the hypothesis state machine class of the chosen target, for
  ``hypothesis.stateful.run_state_machine_as_test``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import pytest

import fuzzkit.profiles  # noqa: F401  (importing it registers the hypothesis profiles)

if TYPE_CHECKING:
    from hypothesis.stateful import RuleBasedStateMachine

    from fuzzkit.program import Program
    from fuzzkit.runner import Session

__all__ = ["RegressionCase", "RegressionTest", "fuzzkit_regressions", "regression_cases"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fuzzkit", "fuzzkit regression cases and state machines")
    group.addoption(
        "--fuzzkit-arch",
        metavar="ARCH",
        help="replay fuzzkit regression cases on ARCH (default: each program's own) and build "
        "fuzzkit_state_machine for it (default x86)",
    )
    group.addoption(
        "--fuzzkit-revision",
        metavar="REV",
        choices=("merged", "fixed"),
        help="the same for the code revision (default: each program's own; fixed)",
    )
    group.addoption(
        "--fuzzkit-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="as 'fuzzkit -p': NAME loads a plugin (or imports a module), no:NAME disables one; "
        "repeatable (default: the installed plugins a program was recorded with)",
    )


@dataclass(frozen=True)
class RegressionCase:
    """One program to replay: the case fails while it gives one of ``titles`` (any finding
    when ``titles`` is empty). ``problem`` makes the case fail with that message instead: a
    damaged reports folder is a failing test, not a crash of the collection."""

    id: str
    program: Path
    titles: frozenset[str] = frozenset()
    problem: str = ""

    def check(self, config: pytest.Config | None = None, *, session: Session | None = None) -> None:
        """Replay and fail (``pytest.fail``, one message) while the bug reproduces; with
        ``session``, on its plugins rather than those the options choose."""
        from fuzzkit.errors import FuzzkitError
        from fuzzkit.program import load
        from fuzzkit.text import printable
        from fuzzkit.triage import signature

        if self.problem:
            pytest.fail(self.problem, pytrace=False)
        options = _Options.of(config)
        try:
            program = load(self.program)
            program.arch = options.arch or program.arch
            program.revision = options.revision or program.revision
            session = session or _session(*options.registry_flags(program))
            found = signature(session, program, str(self.program))
        except FuzzkitError as exc:
            pytest.fail(f"cannot replay: {exc}", pytrace=False)
        if found is None or (self.titles and not found.titles & self.titles):
            return
        f = found.finding
        pytest.fail(
            printable(f"still reproduces: {found.title} (cpu{f.cpu}, step {f.step}) {f.detail}")
            + "\n"
            + printable(f"see the trace with: fuzzkit replay {self.program}"),
            pytrace=False,
        )


class RegressionTest(Protocol):
    """The test function :func:`fuzzkit_regressions` returns; ``cases`` are its parameters."""

    cases: list[RegressionCase]

    def __call__(self, fuzzkit_case: RegressionCase, request: pytest.FixtureRequest) -> None: ...


def fuzzkit_regressions(path: str | os.PathLike[str], *, titles: Iterable[str] = ()) -> RegressionTest:
    """A test function with one case per bug of a reports folder (one holding ``bugs.json``:
    each bug's ``repro.json``, failing while it gives the bug's title or an alternative
    title), per program of a folder of ``*.json`` programs, or for one program file (failing
    on any finding, or only on ``titles`` when given). Assign it to a ``test_*`` name. A
    relative ``path`` is taken from the folder of the module calling this."""
    where = Path(path)
    if not where.is_absolute():
        caller = sys._getframe(1).f_globals.get("__file__")
        where = (Path(caller).resolve().parent if caller else Path.cwd()) / where
    cases = regression_cases(where, titles)

    @pytest.mark.parametrize("fuzzkit_case", cases, ids=[c.id for c in cases])
    def test_no_longer_reproduces(fuzzkit_case: RegressionCase, request: pytest.FixtureRequest) -> None:
        fuzzkit_case.check(request.config)

    test = cast(RegressionTest, test_no_longer_reproduces)
    test.cases = cases
    return test


def regression_cases(path: Path, titles: Iterable[str] = ()) -> list[RegressionCase]:
    """The cases of ``path`` (see :func:`fuzzkit_regressions`); never raises: what cannot be
    read becomes a case that fails saying why."""
    from fuzzkit.errors import FuzzkitError
    from fuzzkit.triage import BugStore

    wanted = frozenset(titles)
    if path.is_file():
        return [RegressionCase(path.stem, path, wanted)]
    if not path.is_dir():
        return [RegressionCase(path.name or "missing", path, problem=f"{path}: no such file or folder")]
    if (path / "bugs.json").exists():
        try:
            store = BugStore.load(path)
            return [RegressionCase(b.slug, store.bundle(b) / "repro.json", b.titles) for b in store.bugs]
        except FuzzkitError as exc:
            return [RegressionCase("bugs.json", path / "bugs.json", problem=str(exc))]
    programs = sorted(path.glob("*.json"))
    if not programs:
        return [RegressionCase(path.name, path, problem=f"{path}: no program files (*.json) found")]
    return [RegressionCase(p.stem, p, wanted) for p in programs]


@dataclass(frozen=True)
class _Options:
    arch: str | None = None
    revision: str | None = None
    plugins: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: pytest.Config | None) -> _Options:
        if config is None:
            return cls()
        return cls(
            config.getoption("fuzzkit_arch", None),
            config.getoption("fuzzkit_revision", None),
            tuple(config.getoption("fuzzkit_plugin", None) or ()),
        )

    def registry_flags(self, program: Program | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(disable, enable) for :func:`fuzzkit.load_registry`: the options' plugins, else
        the installed plugins ``program`` was recorded with (all when it records none)."""
        from fuzzkit.plugins import installed

        if self.plugins:
            disable = tuple(sorted(p[3:] for p in self.plugins if p.startswith("no:")))
            return disable, tuple(sorted(p for p in self.plugins if not p.startswith("no:")))
        recorded = program.recorded_with.get("plugins") if program is not None else None
        names = {name for name, *_ in installed()}
        wanted = names & set(recorded) if isinstance(recorded, dict) else set()
        return (tuple(sorted(names - wanted)) if wanted else ()), ()


@functools.cache
def _session(disable: Sequence[str], enable: Sequence[str]) -> Session:
    """One session per plugin set: loading plugins is start-up work."""
    from fuzzkit.plugins import load_registry
    from fuzzkit.runner import Session

    return Session(load_registry(disable=disable, enable=enable))


@pytest.fixture(scope="session")
def fuzzkit_session(request: pytest.FixtureRequest) -> Session:
    """The plugins ``--fuzzkit-plugin`` chooses (all installed plugins by default)."""
    return _session(*_Options.of(request.config).registry_flags())


@pytest.fixture(scope="session")
def fuzzkit_state_machine(
    request: pytest.FixtureRequest, fuzzkit_session: Session
) -> type[RuleBasedStateMachine]:
    """The hypothesis state machine of the target the options choose (x86, fixed, 2 CPUs by
    default), for ``run_state_machine_as_test``."""
    from fuzzkit.engines.hypothesis_engine import state_machine
    from fuzzkit.registry import DEFAULT_REVISION

    options = _Options.of(request.config)
    return state_machine(
        options.arch or "x86", options.revision or DEFAULT_REVISION, session=fuzzkit_session
    )

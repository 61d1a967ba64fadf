"""The engine contract and the events a campaign emits.

An engine turns a :class:`~fuzzkit.engines.worker.Job` into a worker process; the
supervisor (:mod:`fuzzkit.engines.supervisor`) runs the workers, reads their events, and is
the only part that knows there is more than one. Both engines (atheris, hypothesis)
implement :class:`Engine`; nothing else about them differs for the supervisor or the CLI.

Events are plain JSON objects with ``kind``, ``target``, ``worker`` and ``time`` (Unix
seconds) and fields by kind:

* ``started``: ``pid``, ``engine``, ``seed``;
* ``stats``: ``execs``, ``exec_per_second``, ``bugs`` (distinct bugs the worker found or
  met again this run), and where the engine knows them ``coverage``, ``features``
  (libFuzzer's ``cov``/``ft``) and ``corpus`` (hypothesis: entries in its example database
  folder);
* ``coverage``: as ``stats``, when the engine kept an input for new coverage;
* ``finding``: ``title`` (the finding's), ``bug`` and ``slug`` (the bug it was recorded as),
  ``new`` (neither the store nor ``known.json`` knew the bug), ``known`` (``known.json``
  lists it), ``execs``, ``file``;
* ``seen``: ``slug``, one more occurrence of a bug this worker already recorded;
* ``plugin_failure``: ``message``, ``plugin``, ``file`` (the program that triggers it);
* ``stopped``: ``returncode``, ``reason``, ``occurrences`` (findings by bug slug).

Observers (the console, the stats series, a plugin's ``fuzzkit_campaign_event`` hook)
receive every event in the supervisor process, never in the per-execution path.
"""

from __future__ import annotations

from typing import Any, Protocol

from fuzzkit.engines.worker import Job
from fuzzkit.errors import ConfigError
from fuzzkit.runner import Session

Event = dict[str, Any]


class Engine(Protocol):
    #: What ``--engine`` calls it.
    name: str
    #: Executions (atheris) or examples (hypothesis) per worker when neither --runs nor
    #: --time is given.
    default_runs: int

    def check(self, job: Job) -> None:
        """Refuse a job this engine cannot run (raise ConfigError or MissingFeature),
        before any worker starts."""

    def prepare(self, job: Job, session: Session) -> None:
        """Create or check what the job's worker needs on disk (corpus stamp, dictionary)."""

    def command(self, job: Job) -> list[str]:
        """The worker's command line (the job itself travels in the environment)."""

    def parse(self, line: str) -> Event | None:
        """An event for one line of the worker's log (libFuzzer's status lines), or None."""


def engine(name: str) -> Engine:
    """The engine called ``name``; ``auto`` is atheris where it is installed, else hypothesis."""
    from fuzzkit.engines.atheris_engine import AtherisEngine, atheris_available
    from fuzzkit.engines.hypothesis_engine import HypothesisEngine

    if name == "auto":
        name = "atheris" if atheris_available() else "hypothesis"
    engines: dict[str, Engine] = {"atheris": AtherisEngine(), "hypothesis": HypothesisEngine()}
    if name not in engines:
        raise ConfigError(f"--engine: unknown engine '{name}'; one of auto, {', '.join(engines)}")
    return engines[name]

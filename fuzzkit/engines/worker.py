"""What runs inside a campaign's worker process, whichever engine drives it.

A worker is started by the supervisor (:mod:`fuzzkit.engines.supervisor`) with its
:class:`Job` in the environment (``FUZZKIT_JOB``, JSON) and a pipe for events
(``FUZZKIT_EVENTS_FD``). The environment, not the command line, carries the job because
libFuzzer re-executes its own ``argv[0]`` for ``-merge`` and would take our flags for its own.

Every finding is durable when it is found: its program file is written atomically into
``<reports>/findings/`` and the dedup store records it (new bug, or one more occurrence of a
known one) before the worker goes on. Later occurrences of a title this worker already
recorded are only counted: one ``seen`` event each, which the supervisor adds to the store
in batches (libFuzzer ends the process with ``exit()``, so a worker gets no last word).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzzkit.engines.campaign import Target, save_program, slug
from fuzzkit.errors import PluginFailure
from fuzzkit.machine.core import Finding
from fuzzkit.program import Program
from fuzzkit.runner import Session

#: How often a worker that produces its own statistics (hypothesis) reports them.
STATS_SECONDS = 5.0
PLUGIN_FAILURES = "plugin-failures"


@dataclass(frozen=True)
class Job:
    """One worker's share of a campaign."""

    engine: str
    target: Target
    #: The worker's slot on its target: its stats series and its seed offset.
    worker: int
    seed: int
    runs: int | None
    seconds: float | None
    reports: Path
    #: atheris: the target's corpus folder; hypothesis: its example database (a folder).
    corpus: Path
    plugin_flags: tuple[str, ...] = ()
    libfuzzer_args: tuple[str, ...] = ()
    #: Other workers use the same corpus (libFuzzer then re-reads it to share inputs).
    shared: bool = False
    #: Database spec for hypothesis when not a folder (``redis://...``); empty: ``corpus``.
    database: str = ""

    @property
    def name(self) -> str:
        return f"{self.target.name}/w{self.worker}"

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        doc["target"] = dataclasses.asdict(self.target)
        return json.dumps(doc, default=str)

    @classmethod
    def from_json(cls, text: str) -> Job:
        doc = json.loads(text)
        t = doc.pop("target")
        return cls(
            **{
                **doc,
                "target": Target(t["arch"], t["revision"], t["cpus"], tuple(t["ops"])),
                "reports": Path(doc["reports"]),
                "corpus": Path(doc["corpus"]),
                "plugin_flags": tuple(doc["plugin_flags"]),
                "libfuzzer_args": tuple(doc["libfuzzer_args"]),
            }
        )

    @classmethod
    def from_env(cls) -> Job:
        return cls.from_json(os.environ["FUZZKIT_JOB"])


class Emitter:
    """Writes one JSON line per event to the supervisor's pipe (a single ``write`` each, so
    lines never interleave); without a pipe, events are dropped."""

    def __init__(self, job: Job, fd: int | None) -> None:
        self.job = job
        self.fd = fd

    @classmethod
    def from_env(cls, job: Job) -> Emitter:
        fd = os.environ.get("FUZZKIT_EVENTS_FD")
        return cls(job, int(fd) if fd else None)

    def __call__(self, kind: str, **data: Any) -> None:
        if self.fd is None:
            return
        line = {"kind": kind, "target": self.job.target.name, "worker": self.job.worker, "time": time.time()}
        os.write(self.fd, (json.dumps({**line, **data}) + "\n").encode())


@dataclass
class Recorder:
    """Makes a worker's findings durable (see the module docstring)."""

    job: Job
    session: Session
    emit: Callable[..., None]
    #: Bug slug of each finding title this worker recorded (None: it did not replay).
    slugs: dict[str, str | None] = field(default_factory=dict)

    def finding(self, finding: Finding, program: Program, execs: int) -> None:
        from fuzzkit.triage.pipeline import FINDINGS, record

        if finding.title in self.slugs:
            bug = self.slugs[finding.title]
            if bug is not None:
                self.emit("seen", slug=bug)
            return
        program.description = f"{finding.title} (cpu{finding.cpu}, step {finding.step})"
        with _signals_held():
            path = save_program(self.job.reports / FINDINGS, f"{slug(finding.title)}.json", program)
            done = record(self.session, self.job.reports, path, program)
        self.slugs[finding.title] = done.bug.slug if done else None
        self.emit(
            "finding",
            title=finding.title,
            bug=done.bug.title if done else None,
            slug=done.bug.slug if done else None,
            new=bool(done and done.new),
            known=bool(done and done.known),
            execs=execs,
            file=str(path),
        )

    def plugin_failure(self, failure: PluginFailure, program: Program, execs: int) -> Path:
        site = failure.site
        program.description = str(failure)
        name = f"{slug(f'{site.plugin} {site.function} {site.op} {site.error}')}.json"
        with _signals_held():
            path = save_program(self.job.reports / PLUGIN_FAILURES, name, program)
        self.emit("plugin_failure", message=str(failure), plugin=site.plugin, file=str(path), execs=execs)
        return path


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait while a finding is written: libFuzzer's handlers end the
    process on the spot, and a store update cut in half would leave its temporary file."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def worker_env(job: Job | None = None, events_fd: int | None = None) -> dict[str, str]:
    """The environment of a worker process. It imports what this process can: a plugin
    loaded by module name (``-p module``) may live on a path added at run time (a test
    folder, a notebook's cwd). Its string hashes are fixed: set order steers branches, so
    coverage, and with it what libFuzzer keeps, would otherwise differ from one run of the
    same seed to the next."""
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.setdefault("PYTHONHASHSEED", "0")
    if job is not None:
        env["FUZZKIT_JOB"] = job.to_json()
    if events_fd is not None:
        env["FUZZKIT_EVENTS_FD"] = str(events_fd)
    return env

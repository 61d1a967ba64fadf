"""The supervisor: one campaign's worker processes, their events, and how they stop.

``fuzzkit fuzz`` plans a :class:`~fuzzkit.engines.worker.Job` per worker (``--jobs``
workers spread over the targets, those of one target sharing its corpus or example
database), runs at most ``--jobs`` of them at once, and turns what they report into events
for its observers. What it promises:

* **Nothing is lost.** Workers record every finding in the dedup store the moment they find
  it (see :mod:`fuzzkit.engines.worker`); the supervisor adds the ``seen`` counts to the
  store every few seconds and at the end, then records any finding file a killed worker
  left unrecorded and minimizes and bundles the new bugs.
* **Stopping.** SIGINT or SIGTERM: no new workers, SIGTERM to the running ones (libFuzzer
  and the hypothesis worker both stop between two inputs), then triage as usual. A second
  SIGINT or SIGTERM kills the workers and returns at once: what was recorded stays
  recorded, bundling waits for the next ``fuzzkit fuzz`` or ``fuzzkit report``.
* **No orphans.** Workers get the parent-death signal (SIGKILL) from the kernel, so a
  supervisor killed with SIGKILL takes them with it. They run in their own session, so a
  Ctrl-C on the terminal reaches the supervisor only, which stops them in order.
* **Concurrent campaigns** on one reports folder cooperate: the store is locked around
  each update, finding files are created atomically, and each worker holds a lock on its
  slot (``<reports>/campaign/<target>/w<N>.lock``), so a second campaign on the same
  target takes the next free slot (its own stats series, log and seed) instead of
  writing into the first one's.
* **Plugin failures** (exit code 3) are never findings: the first one stops the campaign,
  naming the plugin and the saved program that triggers it.

Each worker's events are appended to ``<reports>/campaign/<target>/w<N>.jsonl`` (the stats
series, continued by a resumed campaign) and its engine output to ``w<N>.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from fuzzkit.engines.base import Engine, Event
from fuzzkit.engines.campaign import Target
from fuzzkit.engines.worker import Job, worker_env
from fuzzkit.errors import EXIT_CLEAN, EXIT_FAILURE, EXIT_FOUND, PluginError
from fuzzkit.runner import Session

#: How often the supervisor writes ``seen`` counts to the store and prints progress.
FLUSH_SECONDS = 5.0
PROGRESS_SECONDS = 10.0
CAMPAIGN = "campaign"


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Worker:
    job: Job
    proc: subprocess.Popen[bytes] | None = None
    lock: IO[str] | None = None
    started: float = 0.0
    stats: Event = field(default_factory=dict)
    found: list[Event] = field(default_factory=list)
    #: Findings by bug slug, first and later occurrences alike.
    occurrences: Counter[str] = field(default_factory=Counter)
    readers: list[threading.Thread] = field(default_factory=list)
    returncode: int | None = None
    #: When the next statistics line may go into the stats series.
    next_series: float = 0.0
    #: ``stats`` holds figures the series does not have yet (a throttled or coverage event).
    unwritten: bool = False
    #: Why it stopped, when not on its own budget ("interrupted", "plugin failure", ...).
    reason: str = ""

    @property
    def folder(self) -> Path:
        return self.job.reports / CAMPAIGN / self.job.target.name

    def series(self, suffix: str) -> Path:
        return self.folder / f"w{self.job.worker}{suffix}"


@dataclass
class CampaignResult:
    """What a campaign did, whichever engine ran it."""

    workers: list[Worker]
    findings: list[Event]
    plugin_failures: list[Event]
    #: Workers that exited with an error of their own (neither a stop nor a plugin failure).
    engine_failures: list[str]
    interrupted: bool
    #: Bundles made for new bugs at the end (None: skipped by a second interrupt).
    triaged: list[Any] | None = None

    @property
    def exit_code(self) -> int:
        """Known bugs (``known.json``) are counted, not found: a campaign that met only
        those exits 0."""
        if self.plugin_failures or self.engine_failures:
            return EXIT_FAILURE
        return EXIT_FOUND if any(not f.get("known") for f in self.findings) else EXIT_CLEAN


def plan(
    engine: Engine,
    targets: Sequence[Target],
    *,
    jobs: int,
    seed: int,
    runs: int | None,
    seconds: float | None,
    reports: Path,
    corpora: Path,
    plugin_flags: Sequence[str] = (),
    libfuzzer_args: Sequence[str] = (),
    database: str = "",
) -> list[Job]:
    """``jobs`` workers spread over ``targets`` (at least one each; with fewer jobs than
    targets the targets take turns). Worker slots are assigned when a worker starts."""
    share = [jobs // len(targets) + (i < jobs % len(targets)) for i in range(len(targets))]
    folder = corpora if engine.name == "atheris" else corpora / "hypothesis"
    out = []
    for target, n in zip(targets, share, strict=True):
        n = max(1, n)
        for _ in range(n):
            out.append(
                Job(
                    engine=engine.name,
                    target=target,
                    worker=0,
                    seed=seed,
                    runs=runs if runs is not None or seconds is not None else engine.default_runs,
                    seconds=seconds,
                    reports=reports.resolve(),
                    corpus=(folder / target.name).resolve(),
                    plugin_flags=tuple(plugin_flags),
                    libfuzzer_args=tuple(libfuzzer_args),
                    shared=n > 1,
                    database=database,
                )
            )
    return out


Observer = Callable[[Event], None]


def fuzz(
    engine: Engine,
    session: Session,
    targets: Sequence[Target],
    *,
    reports: Path,
    corpora: Path,
    jobs: int = 1,
    seed: int = 1,
    runs: int | None = None,
    seconds: float | None = None,
    plugin_flags: Sequence[str] = (),
    libfuzzer_args: Sequence[str] = (),
    database: str = "",
    observers: Sequence[Observer] = (),
    triage: bool = True,
    until: Callable[[Event], bool] | None = None,
) -> CampaignResult:
    """A whole campaign: plan the workers, check everything that can be wrong before the
    first execution (reports folder, store, corpus stamps, engine flags), run, triage. A
    finding for which ``until`` is true stops the campaign (as a first SIGINT does): a
    benchmark timing the way to one bug spends nothing after it."""
    from fuzzkit.triage.pipeline import absorb, check_reports

    for target in targets:
        target.kernel(session)  # a bad arch, revision, cpus or --ops fails here, early
    check_reports(reports)
    work = plan(
        engine,
        targets,
        jobs=jobs,
        seed=seed,
        runs=runs,
        seconds=seconds,
        reports=reports,
        corpora=corpora,
        plugin_flags=plugin_flags,
        libfuzzer_args=libfuzzer_args,
        database=database,
    )
    for job in work:
        engine.check(job)
        engine.prepare(job, session)
    absorb(session, reports)  # what a campaign killed before recording it left behind
    supervisor = Supervisor(engine, session, work, parallel=jobs, observers=observers, until=until)
    return supervisor.run(triage=triage)


class Supervisor:
    def __init__(
        self,
        engine: Engine,
        session: Session,
        jobs: Sequence[Job],
        *,
        parallel: int,
        observers: Sequence[Observer] = (),
        until: Callable[[Event], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.until = until
        self.session = session
        self.pending = [Worker(job) for job in jobs]
        self.parallel = max(1, parallel)
        self.observers = list(observers)
        self.running: list[Worker] = []
        self.done: list[Worker] = []
        self.events: queue.Queue[tuple[Worker, Event | None]] = queue.Queue()
        self.stops = 0
        self.seen: Counter[str] = Counter()
        self.findings: list[Event] = []
        self.plugin_failures: list[Event] = []
        self.engine_failures: list[str] = []

    # -- running -------------------------------------------------------------------------

    def run(self, *, triage: bool = True, triage_budget: int | None = None) -> CampaignResult:
        """Run every job; returns when all workers stopped (or at once on a second stop).
        Then, unless ``triage`` is off, minimize and bundle the new bugs."""
        with self._signals():
            next_flush = time.monotonic() + FLUSH_SECONDS
            while self.pending or self.running:
                while self.pending and len(self.running) < self.parallel and not self.stops:
                    self._start(self.pending.pop(0))
                if self.stops and not self.running:
                    break
                if self.stops >= 2:
                    self._kill()
                    break
                try:
                    w, event = self.events.get(timeout=0.5)
                except queue.Empty:
                    pass
                else:
                    self._handle(w, event)
                self._reap()
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + FLUSH_SECONDS
                    self._flush()
        self._flush()
        triaged = None
        if triage and self.stops < 2:
            try:
                triaged = self._triage(triage_budget)
            except KeyboardInterrupt:  # Ctrl-C while minimizing: 'fuzzkit report' finishes it
                self.stops = 2
        return CampaignResult(
            workers=self.done + self.running,
            findings=self.findings,
            plugin_failures=self.plugin_failures,
            engine_failures=self.engine_failures,
            interrupted=self.stops > 0 and not self.plugin_failures,
            triaged=triaged,
        )

    def stop(self, reason: str = "interrupted") -> None:
        """Ask every worker to stop (as the first SIGINT does); a second call kills them."""
        self.stops += 1
        for w in self.running:
            if w.reason == "plugin failure" and self.stops == 1:
                continue
            w.reason = w.reason or reason
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM if self.stops == 1 else signal.SIGKILL)

    def _start(self, w: Worker) -> None:
        job = w.job
        w.lock, slot = _take_slot(job.reports / CAMPAIGN / job.target.name)
        job = w.job = dataclasses.replace(job, worker=slot, seed=job.seed + slot)
        w.folder.mkdir(parents=True, exist_ok=True)
        log = open(w.series(".log"), "ab")  # noqa: SIM115 (closed by its reader thread)
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.name} seed {job.seed}\n".encode())
        read_fd, write_fd = os.pipe()
        try:
            w.proc = subprocess.Popen(
                self.engine.command(job),
                env=worker_env(job, write_fd),
                cwd=w.folder,  # a file libFuzzer leaves outside its artifact prefix lands here
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(write_fd)
        w.started = time.monotonic()
        self.running.append(w)
        assert w.proc.stdout is not None
        w.readers = [
            threading.Thread(target=self._read_events, args=(w, read_fd), daemon=True),
            threading.Thread(target=self._read_log, args=(w, w.proc.stdout, log), daemon=True),
        ]
        for t in w.readers:
            t.start()
        self._emit(w, {"kind": "started", "pid": w.proc.pid, "engine": self.engine.name, "seed": job.seed})

    def _read_events(self, w: Worker, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    self.events.put((w, json.loads(line)))
        self.events.put((w, None))

    def _read_log(self, w: Worker, stream: IO[bytes], log: IO[bytes]) -> None:
        with log:
            for raw in stream:
                log.write(raw)
                log.flush()
                event = self.engine.parse(raw.decode(errors="replace").rstrip("\n"))
                if event is not None:
                    self.events.put((w, event))
        self.events.put((w, None))

    def _handle(self, w: Worker, event: Event | None) -> None:
        if event is None:  # a reader reached the end of its stream
            return
        kind = event.get("kind")
        if kind == "seen":
            self.seen[event["slug"]] += 1
            w.occurrences[event["slug"]] += 1
            return
        if kind in ("stats", "coverage"):
            w.stats.update({k: v for k, v in event.items() if v is not None and k != "kind"})
            w.unwritten = True
        elif kind == "finding":
            w.found.append(event)
            self.findings.append(event)
            if event.get("slug"):
                w.occurrences[event["slug"]] += 1
            if self.until is not None and self.stops == 0 and self.until(event):
                self.stop("target reached")
        elif kind == "plugin_failure":
            self.plugin_failures.append(event)
            w.reason = "plugin failure"  # it exits by itself, with the code that says so
            if self.stops == 0:
                self.stop("plugin failure")
        self._emit(w, event)

    def _reap(self) -> None:
        for w in list(self.running):
            assert w.proc is not None
            if w.proc.poll() is None:
                continue
            for t in w.readers:
                t.join()
            while True:  # what the readers queued before they ended
                try:
                    other, event = self.events.get_nowait()
                except queue.Empty:
                    break
                self._handle(other, event)
            self.running.remove(w)
            self.done.append(w)
            w.returncode = w.proc.returncode
            if w.lock is not None:
                w.lock.close()
            failed = w.returncode not in (0, EXIT_FAILURE) and not w.reason
            if failed:
                self.engine_failures.append(
                    f"{w.job.name}: the {self.engine.name} worker exited with code {w.returncode}; "
                    f"its output is in {w.series('.log')}"
                )
            self._emit(
                w,
                {
                    "kind": "stopped",
                    "returncode": w.returncode,
                    "reason": w.reason or "done",
                    "occurrences": dict(w.occurrences),
                },
            )

    def _kill(self) -> None:
        for w in self.running:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
            if w.proc is not None:
                w.proc.wait()

    def _flush(self) -> None:
        from fuzzkit.triage.pipeline import add_counts

        for w in self.running:
            # libFuzzer prints status lines mostly on new coverage (``coverage`` events, not
            # series lines by themselves): its latest figures reach the series within a flush.
            if w.unwritten and time.time() >= w.next_series:
                line = {"target": w.job.target.name, "worker": w.job.worker, "time": time.time()}
                self._append(w, {**line, **w.stats, "kind": "stats", "bugs": len(w.occurrences)})
        if self.seen:
            add_counts(self.pending_reports(), dict(self.seen))
            self.seen.clear()

    def pending_reports(self) -> Path:
        workers = self.done + self.running + self.pending
        return workers[0].job.reports

    def _triage(self, budget: int | None) -> list[Any]:
        from fuzzkit.triage import DEFAULT_BUDGET
        from fuzzkit.triage.pipeline import absorb, bundle_pending

        reports = self.pending_reports()
        absorb(self.session, reports)
        return bundle_pending(self.session, reports, budget=budget or DEFAULT_BUDGET)

    def _emit(self, w: Worker, event: Event) -> None:
        event = {"target": w.job.target.name, "worker": w.job.worker, "time": time.time(), **event}
        kind = event["kind"]
        if kind in ("stats", "coverage"):
            # The distinct bugs of this run, so the series charts bugs over time on its own.
            event["bugs"] = len(w.occurrences)
        if kind == "stopped" and w.stats:
            self._append(w, {**event, **w.stats, "kind": "stats", "bugs": len(w.occurrences)})
        if kind in ("started", "finding", "plugin_failure", "stopped") or (
            kind == "stats" and event["time"] >= w.next_series
        ):
            self._append(w, event)
        for observe in self.observers:
            try:
                observe(event)
            except PluginError as exc:  # an observing plugin's failure, not the kernel model's
                self.plugin_failures.append({**event, "kind": "plugin_failure", "message": str(exc)})
                self.observers.remove(observe)
                if self.stops == 0:
                    self.stop("plugin failure")

    def _append(self, w: Worker, event: Event) -> None:
        """One line of the worker's stats series (statistics at most every FLUSH_SECONDS)."""
        if event["kind"] == "stats":
            w.next_series = time.time() + FLUSH_SECONDS
            w.unwritten = False
        with open(w.series(".jsonl"), "a") as f:
            f.write(json.dumps(event) + "\n")

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _take_slot(folder: Path) -> tuple[IO[str], int]:
    """Lock the first free worker slot of a target; held for the worker's lifetime."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        f = open(folder / f"w{slot}.lock", "a")  # noqa: SIM115 (held until the worker ends)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            slot += 1
            continue
        return f, slot


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the supervisor dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

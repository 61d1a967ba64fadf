"""What a campaign is doing, or did: its workers' stats series read back.

Each worker of a campaign appends its events to ``<reports>/campaign/<target>/w<N>.jsonl``
(see :mod:`fuzzkit.engines.supervisor`): ``started``, ``stats`` at most every few seconds,
``finding``, ``plugin_failure`` and ``stopped``, a resumed campaign continuing the same
series. :func:`read_campaign` folds those lines into one :class:`WorkerStatus` per worker;
the live progress display folds the supervisor's events the same way, as they come.

A worker is running while its slot lock ``w<N>.lock`` is held (the supervisor holds it for
the worker's lifetime), whatever its series says: a supervisor killed outright writes no
``stopped`` line.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzzkit.errors import ConfigError

CAMPAIGN = "campaign"
#: The stats of one interval, as the plots draw them.
SAMPLE_FIELDS = ("execs", "exec_per_second", "corpus", "coverage", "features", "bugs")


@dataclass
class Sample:
    time: float
    values: dict[str, float]


@dataclass
class WorkerStatus:
    """One worker slot of a target: the last run in detail, the whole series as history."""

    target: str
    worker: int
    engine: str = ""
    running: bool = False
    #: Starts recorded in the series (1 + how often it was resumed).
    runs: int = 0
    started: float | None = None
    stopped: float | None = None
    reason: str = ""
    returncode: int | None = None
    #: The last run's latest statistics (a field the engine does not measure stays absent).
    stats: dict[str, float] = field(default_factory=dict)
    #: Bugs this run found: distinct ones, and those nobody had recorded before.
    bugs: set[str] = field(default_factory=set)
    new_bugs: set[str] = field(default_factory=set)
    #: When coverage (libFuzzer's features, else its edges) last grew over the whole series.
    last_new_coverage: float | None = None
    last_new_bug: float | None = None
    best_coverage: float = 0
    #: When the series last said anything (a run killed outright ends there).
    last_event: float | None = None
    history: list[Sample] = field(default_factory=list)
    #: Every finding event of the series, in order.
    findings: list[dict[str, Any]] = field(default_factory=list)
    plugin_failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.target}/w{self.worker}"

    def add(self, event: dict[str, Any]) -> None:
        """Fold one event of this worker into its status."""
        kind = event.get("kind")
        at = float(event.get("time", 0))
        self.last_event = at
        if kind == "started":
            self.runs += 1
            self.engine = str(event.get("engine", self.engine))
            self.started, self.stopped, self.reason, self.returncode = at, None, "", None
            self.stats = {}
            self.bugs, self.new_bugs = set(), set()
            # Every run's curves start from nothing done and nothing found.
            self.history.append(Sample(at, {"execs": 0, "bugs": 0}))
        elif kind in ("stats", "coverage"):
            values = {k: float(event[k]) for k in SAMPLE_FIELDS if event.get(k) is not None}
            self.stats.update(values)
            grown = values.get("features", values.get("coverage"))
            if grown is not None and grown > self.best_coverage:
                self.best_coverage = grown
                self.last_new_coverage = at
            if kind == "stats":
                self.history.append(Sample(at, values))
        elif kind == "finding":
            self.findings.append(event)
            bug = str(event.get("slug") or event.get("title", ""))
            self.bugs.add(bug)
            if event.get("new"):
                self.new_bugs.add(bug)
                self.last_new_bug = at
        elif kind == "plugin_failure":
            self.plugin_failures.append(event)
        elif kind == "stopped":
            self.stopped = at
            self.reason = str(event.get("reason", ""))
            self.returncode = event.get("returncode")

    def uptime(self, now: float) -> float | None:
        """Seconds the last run ran (so far, while it runs)."""
        if self.started is None:
            return None
        end = now if self.running else self.stopped or self.last_event or self.started
        return max(0.0, end - self.started)

    def to_json(self, now: float) -> dict[str, Any]:
        def since(t: float | None) -> float | None:
            return None if t is None else round(max(0.0, now - t), 1)

        uptime = self.uptime(now)
        return {
            "target": self.target,
            "worker": self.worker,
            "engine": self.engine,
            "running": self.running,
            "runs": self.runs,
            "started": self.started,
            "stopped": None if self.running else self.stopped,
            "reason": "" if self.running else self.reason,
            "uptime": None if uptime is None else round(uptime, 1),
            "execs": _int(self.stats.get("execs")),
            "exec_per_second": self.stats.get("exec_per_second"),
            "corpus": _int(self.stats.get("corpus")),
            "coverage": _int(self.stats.get("coverage")),
            "features": _int(self.stats.get("features")),
            "bugs": len(self.bugs),
            "new_bugs": len(self.new_bugs),
            "since_new_coverage": since(self.last_new_coverage),
            "since_new_bug": since(self.last_new_bug),
        }


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def series_files(reports: Path) -> list[Path]:
    """Every worker's series under ``reports/campaign``, by target then slot."""
    folder = reports / CAMPAIGN

    def key(path: Path) -> tuple[str, int]:
        return path.parent.name, int(path.stem[1:])

    return sorted(
        (p for p in folder.glob("*/w*.jsonl") if p.stem[1:].isdigit()),
        key=key,
    )


def read_series(path: Path) -> list[dict[str, Any]]:
    """The events of one series. A last line cut short (a worker writing it right now) is
    left out; a bad line anywhere else is bad input."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline yet: still being written
                continue
            raise ConfigError(f"{path}: line {number}: not JSON: {exc.msg}") from None
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise ConfigError(f"{path}: line {number}: not an event (an object with 'kind')")
        events.append(event)
    return events


def slot_held(lock: Path) -> bool:
    """Whether a worker holds the slot lock: a non-blocking shared lock taken and released
    at once (never created here, so a status reader leaves no lock files behind)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_worker(path: Path) -> WorkerStatus:
    status = WorkerStatus(target=path.parent.name, worker=int(path.stem[1:]))
    for event in read_series(path):
        status.add(event)
    status.running = slot_held(path.with_suffix(".lock"))
    return status


def read_campaign(reports: Path) -> list[WorkerStatus]:
    """Every worker that ever ran in ``reports``; bad input when no campaign ran there."""
    if not (reports / CAMPAIGN).is_dir():
        raise ConfigError(f"{reports}: no campaign has run here (no {reports / CAMPAIGN} folder)")
    return [read_worker(path) for path in series_files(reports)]


def target_summary(workers: list[WorkerStatus], now: float) -> dict[str, Any]:
    """One target's workers added up: executions and rates summed, the best coverage, the
    distinct bugs of the current runs, and the most recent progress of any worker."""
    rows = [w.to_json(now) for w in workers]

    def total(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) if values else None

    def latest(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return min(values) if values else None

    coverage = [r["coverage"] for r in rows if r["coverage"] is not None]
    return {
        "target": workers[0].target,
        "running": sum(r["running"] for r in rows),
        "workers": len(rows),
        "execs": total("execs"),
        "exec_per_second": total("exec_per_second"),
        "coverage": max(coverage) if coverage else None,
        "bugs": len(set().union(*(w.bugs for w in workers))),
        "new_bugs": len(set().union(*(w.new_bugs for w in workers))),
        "since_new_coverage": latest("since_new_coverage"),
        "since_new_bug": latest("since_new_bug"),
    }


def status_json(workers: list[WorkerStatus], now: float | None = None) -> dict[str, Any]:
    """What ``fuzzkit status --json`` prints."""
    now = time.time() if now is None else now
    by_target: dict[str, list[WorkerStatus]] = {}
    for w in workers:
        by_target.setdefault(w.target, []).append(w)
    return {
        "time": now,
        "running": any(w.running for w in workers),
        "targets": [
            {**target_summary(ws, now), "worker_status": [w.to_json(now) for w in ws]}
            for ws in by_target.values()
        ],
    }


def duration(seconds: float | None) -> str:
    """``3h05m``, ``4m10s``, ``12s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


HEADERS = ["worker", "state", "uptime", "execs", "exec/s", "corpus", "cov", "bugs", "new cov", "new bug"]


def rows(workers: list[WorkerStatus], now: float) -> list[list[str]]:
    """One table row per worker, in :data:`HEADERS` order (the terminal and the page)."""
    out = []
    for w in workers:
        j = w.to_json(now)
        state = "running" if w.running else (f"stopped ({j['reason']})" if j["reason"] else "stopped")
        out.append(
            [
                w.name,
                state,
                duration(j["uptime"]),
                number(j["execs"]),
                number(j["exec_per_second"]),
                number(j["corpus"]),
                number(j["coverage"]),
                f"{j['bugs']} ({j['new_bugs']} new)",
                duration(j["since_new_coverage"]) + (" ago" if j["since_new_coverage"] is not None else ""),
                duration(j["since_new_bug"]) + (" ago" if j["since_new_bug"] is not None else ""),
            ]
        )
    return out

"""A campaign's progress on the user's terminal: an observer of the supervisor's events.

On a terminal, a live status block (rich) redrawn at most once a second: a row per worker
with the same columns as ``fuzzkit status``, findings and stops printed above it as they
happen. Anywhere else (a log file, CI), plain lines: each start, finding and stop, and one
progress line per worker every ``PROGRESS_SECONDS``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from tabulate import tabulate

from fuzzkit.engines.supervisor import PROGRESS_SECONDS
from fuzzkit.status import HEADERS, WorkerStatus, read_campaign, rows, status_json

#: The live block is redrawn at most this often.
REFRESH_SECONDS = 1.0


def describe(event: dict[str, Any]) -> str | None:
    """The line a start, finding or stop is reported with (None for other events). Tests and
    scripts wait for the finding line: ``found after N executions: TITLE [new bug]``."""
    who = f"{event['target']}/w{event['worker']}"
    kind = event["kind"]
    if kind == "started":
        return f"   {who}: started (pid {event['pid']}, seed {event['seed']})"
    if kind == "finding":
        status = "new bug" if event.get("new") else "known.json" if event.get("known") else "seen before"
        return f"   {who}: found after {event['execs']:,} executions: {event['title']} [{status}]"
    if kind == "stopped":
        return f"   {who}: stopped ({event['reason']}, exit {event['returncode']})"
    return None


def status_table(workers: list[WorkerStatus], now: float) -> Any:
    """The status block: a rich table with the columns of ``fuzzkit status``."""
    from rich.table import Table

    table = Table(title="fuzzkit campaign", title_justify="left")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i < 3 else "right")
    for row in rows(workers, now):
        table.add_row(*row, style="bold" if row[1] == "running" else "dim")
    return table


def show_status(reports: Path, *, as_json: bool, watch: bool, page: bool, every: float) -> None:
    """``fuzzkit status``: the table (or JSON) once; with ``watch`` again every ``every``
    seconds until no worker runs, redrawn in place on a terminal, one after the other
    elsewhere. ``page`` rewrites the campaign page each time too."""

    def read() -> list[WorkerStatus]:
        workers = read_campaign(reports)
        if page:
            from fuzzkit.campaign_page import render

            render(reports)
        return workers

    if watch and not as_json and sys.stdout.isatty():
        from rich.live import Live

        with Live(auto_refresh=False) as live:
            while True:
                workers = read()
                live.update(status_table(workers, time.time()), refresh=True)
                if not any(w.running for w in workers):
                    return
                time.sleep(every)
    while True:
        workers = read()
        doc = status_json(workers)
        if as_json:
            print(json.dumps(doc, indent=2), flush=True)
        elif workers:
            print(tabulate(rows(workers, doc["time"]), headers=HEADERS, tablefmt="simple"), flush=True)
        else:
            print("no worker has started yet", flush=True)
        if not watch or not doc["running"]:
            return
        time.sleep(every)


class Progress:
    """The campaign observer ``fuzzkit fuzz`` prints with; ``close`` ends the live block."""

    def __init__(
        self, stream: IO[str] | None = None, live: bool | None = None, width: int | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        #: Columns of the live block (None: the terminal's).
        self.width = width
        self.live_wanted = self.stream.isatty() if live is None else live
        self.workers: dict[str, WorkerStatus] = {}
        self.last: dict[str, float] = {}
        self.live: Any = None
        self.drawn = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        who = f"{event['target']}/w{event['worker']}"
        w = self.workers.get(who)
        if w is None:
            w = self.workers[who] = WorkerStatus(event["target"], int(event["worker"]))
        w.add(event)
        if event["kind"] == "started":
            w.running = True
        elif event["kind"] == "stopped":
            w.running = False
        line = describe(event)
        if self.live_wanted:
            self._draw(line, force=line is not None)
        elif line is not None:
            print(line, file=self.stream, flush=True)
        elif event["kind"] in ("stats", "coverage"):
            self._plain_progress(who, w, event)

    def _plain_progress(self, who: str, w: WorkerStatus, event: dict[str, Any]) -> None:
        if event["time"] - self.last.get(who, w.started or 0) < PROGRESS_SECONDS:
            return
        self.last[who] = event["time"]
        rate = event.get("exec_per_second")
        extra = "".join(
            f", {name} {event[key]:,}"
            for key, name in (("coverage", "cov"), ("corpus", "corpus"), ("bugs", "bugs"))
            if event.get(key) is not None
        )
        print(
            f"   {who}: {w.uptime(event['time']) or 0:.0f}s, {event['execs']:,} executions"
            + (f" ({rate:,.0f}/s)" if rate else "")
            + extra,
            file=self.stream,
            flush=True,
        )

    def _table(self) -> Any:
        return status_table(list(self.workers.values()), time.time())

    def _draw(self, line: str | None, *, force: bool) -> None:
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, width=self.width)
            self.live = Live(console=console, auto_refresh=False, redirect_stdout=False)
            self.live.start()
        if line is not None:
            self.live.console.print(line.strip(), highlight=False, markup=False)
        now = time.monotonic()
        if force or now - self.drawn >= REFRESH_SECONDS:
            self.drawn = now
            self.live.update(self._table(), refresh=True)

    def close(self) -> None:
        """Leave the last state of the live block on the screen."""
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            self.live.stop()
            self.live = None

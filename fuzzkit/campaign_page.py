"""The campaign page: ``<reports>/campaign.html``, one self-contained file to open in the
morning.

It shows what the stats series (:mod:`fuzzkit.status`) hold: the status table, coverage,
corpus, executions/s and distinct bugs over time for the whole campaign and for each worker
(matplotlib figures inlined as SVG), and the bug table of the reports folder with each bug's
``report.md`` rendered in place and linked. It loads nothing from anywhere (no script, no
font, no stylesheet outside the file), so it opens from the file system. While a worker runs
the page asks the browser to reload it every minute.

:class:`CampaignPage` is a campaign observer that rewrites the page at most every
``RENDER_SECONDS`` while the campaign runs; ``close`` writes it a last time at the end.
"""

from __future__ import annotations

import html
import io
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fuzzkit.status import HEADERS, WorkerStatus, read_campaign, rows, status_json

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from fuzzkit.triage.store import Bug

PAGE = "campaign.html"
RENDER_SECONDS = 60.0
#: The panels of every figure: series field, axis title.
PANELS = (
    ("coverage", "coverage (edges)"),
    ("corpus", "corpus"),
    ("exec_per_second", "executions/s"),
    ("bugs", "distinct bugs"),
)

STYLE = """
body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; }
figure { margin: 0 0 1.5em; }
figure svg { max-width: 100%; height: auto; }
details { margin: 0.3em 0; }
.report { border-left: 3px solid #ccc; padding-left: 1em; }
.report pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
.running { color: #070; font-weight: bold; }
"""


def render(reports: Path, now: float | None = None) -> Path:
    """Write ``reports/campaign.html`` from the series and bugs in ``reports`` (atomically:
    a browser reloading it never sees half a page)."""
    from fuzzkit.triage.store import BugStore

    now = time.time() if now is None else now
    workers = read_campaign(reports)
    bugs = BugStore.load(reports).bugs
    page = reports / PAGE
    tmp = page.with_name(f".{PAGE}.{os.getpid()}.tmp")
    tmp.write_text(document(reports, workers, bugs, now), encoding="utf-8")
    os.replace(tmp, page)
    return page


def document(reports: Path, workers: list[WorkerStatus], bugs: Sequence[Bug], now: float) -> str:
    running = any(w.running for w in workers)
    summary = status_json(workers, now)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="refresh" content="60">' if running else "",
        f"<title>fuzzkit campaign: {html.escape(str(reports))}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>fuzzkit campaign</h1>",
        f"<p>Reports folder <code>{html.escape(str(reports))}</code>; page written "
        f"{_clock(now)}; "
        + ('<span class="running">running</span> (reloads every minute)' if running else "stopped")
        + "</p>",
        '<h2 id="status">Status</h2>',
        _table(HEADERS, rows(workers, now), "status"),
        '<h2 id="targets">Targets</h2>',
        _table(
            ["target", "running", "execs", "exec/s", "cov", "bugs", "new bugs"],
            [
                [
                    t["target"],
                    f"{t['running']} of {t['workers']}",
                    _n(t["execs"]),
                    _n(t["exec_per_second"]),
                    _n(t["coverage"]),
                    str(t["bugs"]),
                    str(t["new_bugs"]),
                ]
                for t in summary["targets"]
            ],
            "targets",
        ),
        '<h2 id="over-time">Over time</h2>',
        _figure(workers, "every worker", "campaign-plot"),
        '<h2 id="bugs">Bugs</h2>',
        _bug_table(reports, workers, bugs),
        '<h2 id="workers">Per worker</h2>',
    ]
    for w in workers:
        parts.append(f"<h3>{html.escape(w.name)} ({html.escape(w.engine or '?')}, {w.runs} run(s))</h3>")
        parts.append(_figure([w], w.name, "worker-plot"))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def _clock(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _table(headers: Sequence[str], body: Sequence[Sequence[str]], css_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in body
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>'


def _figure(workers: Sequence[WorkerStatus], caption: str, css_class: str) -> str:
    """Coverage, corpus, executions/s and bugs over time, a line per worker, a dotted
    vertical line where a worker found a new bug."""
    from matplotlib import rc_context
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 7), layout="constrained")
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        drawn = False
        for w in workers:
            points = [(datetime.fromtimestamp(s.time), s.values[key]) for s in w.history if key in s.values]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="." if len(points) < 30 else None,
                    drawstyle="steps-post" if key == "bugs" else "default",
                    label=w.name,
                )
                drawn = True
            for f in w.findings:
                if f.get("new"):
                    ax.axvline(datetime.fromtimestamp(f["time"]), color="#c00", linestyle=":", linewidth=1)
        ax.set_ylabel(title)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if not drawn:
            _not_measured(ax, workers, key)
        elif len(workers) > 1 and key == PANELS[0][0]:
            ax.legend(loc="upper left", fontsize="small")
    locator = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    out = io.StringIO()
    # A salt per figure keeps the SVG element ids of several inlined figures apart.
    with rc_context({"svg.hashsalt": f"{css_class}-{caption}", "svg.fonttype": "none"}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]
    return (
        f'<figure class="{css_class}">{svg}<figcaption>{html.escape(caption)}: coverage, corpus, '
        "executions/s and distinct bugs over time; dotted red lines mark new bugs</figcaption></figure>"
    )


def _not_measured(ax: Axes, workers: Sequence[WorkerStatus], key: str) -> None:
    engines = sorted({w.engine for w in workers if w.engine})
    why = f"not measured by the {' and '.join(engines)} engine" if engines else "no statistics yet"
    if key == "coverage" and engines == ["hypothesis"]:
        why += " (hypothesis searches without coverage feedback)"
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="#666")
    ax.set_yticks([])


def _bug_table(reports: Path, workers: Sequence[WorkerStatus], bugs: Sequence[Bug]) -> str:
    if not bugs:
        return '<p id="no-bugs">No bugs recorded in this reports folder.</p>'
    found_by: dict[str, list[str]] = {}
    for w in workers:
        for f in w.findings:
            if f.get("slug"):
                found_by.setdefault(f["slug"], []).append(f"{w.name} at {_clock(f.get('time'))}")
    md = _markdown()
    body = []
    for bug in bugs:
        report = Path(bug.slug) / "report.md"
        text = _read(reports / report)
        rendered = (
            f'<details><summary>report</summary><div class="report">{_render_md(md, text, bug.slug)}'
            "</div></details>"
            if text is not None
            else "<em>no report.md yet ('fuzzkit report' writes it)</em>"
        )
        who = "<br>".join(html.escape(x) for x in found_by.get(bug.slug, [])) or "-"
        body.append(
            "<tr>"
            f'<td><a href="{html.escape(report.as_posix())}">{html.escape(bug.title)}</a></td>'
            f'<td>{html.escape(bug.status)}</td><td class="num">{bug.count}</td>'
            f"<td>{html.escape(bug.first_seen or '-')}</td><td>{who}</td>"
            f"<td>{rendered}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("bug", "status", "seen", "first seen", "found by this campaign", "report")
    )
    return f'<table id="bug-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # Raw HTML in a report stays text: a program's strings never become markup on the page.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _render_md(md: Any, text: str, folder: str) -> str:
    """A report's Markdown as HTML, its relative links pointing into the bug's folder."""
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            attr = {"link_open": "href", "image": "src"}.get(child.type)
            target = child.attrGet(attr) if attr else None
            if attr and isinstance(target, str) and not _absolute(target):
                child.attrSet(attr, f"{folder}/{target}")
    rendered: str = md.renderer.render(tokens, md.options, {})
    return rendered


def _absolute(link: str) -> bool:
    return link.startswith(("#", "/")) or "://" in link or link.startswith("mailto:")


class CampaignPage:
    """An observer that keeps ``reports/campaign.html`` current while a campaign runs: written
    when the first event arrives, then at most every ``every`` seconds; ``close`` writes it
    once more when the campaign (and its triage) ended."""

    def __init__(
        self, reports: Path, every: float = RENDER_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reports = reports
        self.every = every
        self.clock = clock
        self.next: float | None = None
        #: Why the last write during the campaign failed, if it did.
        self.error = ""

    def __call__(self, event: dict[str, Any]) -> None:
        now = self.clock()
        if self.next is None or now >= self.next:
            self.next = now + self.every
            try:
                self.write()
            except OSError as exc:  # a full disk costs the page, never the campaign
                self.error = f"{self.reports / PAGE}: not written: {exc}"

    def write(self) -> Path:
        return render(self.reports)

    def close(self) -> str:
        """Write the page a last time; what to tell the user: its path, or why not."""
        try:
            return str(self.write())
        except OSError as exc:
            return f"{self.reports / PAGE} not written: {exc}"

"""Report bundles and the index: what a person reads after a campaign.

A bundle is a folder ``<reports>/<slug>/`` holding

* ``report.md``: the bug explained (sections documented in ``reports/README.md``);
* ``repro.json``: the minimized program, replayable with ``fuzzkit replay``;
* ``original.json``: the program as the engine found it;
* ``test_<slug>.py`` (dashes as underscores): a pytest regression test that fails while the
  bug reproduces.

Bundles are written once. The files are written into a hidden temporary folder that is then
renamed into place, which fails rather than replace an existing folder, so a bundle is never
half-written and never overwritten. Counts and statuses change; they live in ``bugs.json``
and ``index.md``, not in the bundle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from fuzzkit.files import temp_dir, write_atomic
from fuzzkit.program import Program
from fuzzkit.runner import Session
from fuzzkit.text import printable
from fuzzkit.triage.explain import regression_test_name, render_report
from fuzzkit.triage.known import Known, load_known
from fuzzkit.triage.layout import WIDTH, wrap
from fuzzkit.triage.minimize import Minimized
from fuzzkit.triage.size import ProgramSize
from fuzzkit.triage.store import Bug, BugStore

TEST_TEMPLATE = '''"""Regression test for one bug fuzzkit found: fails while repro.json (next to this
file) still gives the bug's title or one of its alternative titles (TITLES).

Runs from anywhere with plain pytest (atheris is not needed). The program is replayed with the
installed plugins it was recorded with (all installed plugins when it records none), so a bug
found with an in-process variant plugin passes once the real implementation is back;
--fuzzkit-plugin, --fuzzkit-arch and --fuzzkit-revision replay it with other plugins or on
another configuration. Written by fuzzkit triage; edit freely.
"""

from pathlib import Path

from fuzzkit import fuzzkit_regressions

# cd {folder}
# python -m pytest {test}
TITLES = {titles!r}

test_no_longer_reproduces = fuzzkit_regressions(Path(__file__).with_name("repro.json"), titles=TITLES)
'''


def render_test(bug: Bug, program: Program, bundle: Path) -> str:
    """The bundle's pytest regression test. Text from the reports folder's path or the bug
    goes in as a ``repr`` or, escaped, in a comment, so no path can break the module."""
    return TEST_TEMPLATE.format(
        folder=printable(str(bundle.resolve())),
        test=printable(regression_test_name(bug.slug)),
        titles=(bug.title, *bug.alt_titles),
    )


def write_bundle(
    session: Session,
    reports: Path,
    bug: Bug,
    program: Program,
    original: Program,
    minimized: Minimized | None = None,
) -> Path | None:
    """Write the bundle of ``bug`` into ``reports/<slug>``; None, and nothing written, when
    that folder already exists."""
    reports = Path(reports)
    target = reports / bug.slug
    if target.exists():
        return None
    files = {
        "report.md": render_report(session, bug, program, minimized, target),
        "repro.json": program.dumps(),
        "original.json": original.dumps(),
        regression_test_name(bug.slug): render_test(bug, program, target),
    }
    reports.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(reports, f".{bug.slug}.")
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, target)  # fails on an existing non-empty folder: never overwrite
        except OSError:
            return None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def _size(size: dict[str, int] | None) -> str:
    if not size:
        return "-"
    with contextlib.suppress(TypeError):
        return str(ProgramSize(**size))
    return "?"


def _known_entry(bug: Bug, known: dict[str, Known]) -> Known | None:
    return next((known[t] for t in (bug.title, *bug.alt_titles) if t in known), None)


def render_index(store: BugStore, tablefmt: str = "github") -> str:
    """Every bug with its counts, when it was seen, its sizes and its status; the bugs
    ``known.json`` lists apart, after the others. ``github`` (index.md) gives a markdown
    list whose links are references, so no line is longer than the title; any other
    tabulate format gives a table (for a terminal)."""
    known = {k.title: k for k in load_known(store.folder)}
    listed = {bug.slug: _known_entry(bug, known) for bug in store.bugs}
    new = [b for b in store.bugs if listed[b.slug] is None]
    accepted = [b for b in store.bugs if listed[b.slug] is not None]

    def status(bug: Bug) -> str:
        entry = listed[bug.slug]
        text = bug.status + (f": {bug.note}" if bug.note else "")
        text += f"; {bug.dependence}" if bug.dependence else ""
        if entry is not None:
            return "known" + (f" ({entry.note})" if entry.note else "") + f", {text}"
        return text

    def sizes(bug: Bug) -> str:
        return f"{_size(bug.minimized_size)} (from {_size(bug.original_size)})"

    if tablefmt == "github":
        return _index_list(store, new, accepted, status, sizes)
    parts = []
    headers = ["bug", "count", "first seen", "last seen", "minimized (original)", "status"]
    for title, bugs in (("", new), ("Known bugs (known.json): counted, not reported as new.\n\n", accepted)):
        rows = [[b.title, b.count, b.first_seen, b.last_seen, sizes(b), status(b)] for b in bugs]
        if rows:
            parts.append(title + tabulate(rows, headers=headers, tablefmt=tablefmt))
    return "\n\n".join(parts) or "no bugs recorded"


def _index_list(
    store: BugStore,
    new: list[Bug],
    accepted: list[Bug],
    status: Callable[[Bug], str],
    sizes: Callable[[Bug], str],
) -> str:
    parts: list[str] = []
    refs: list[str] = []
    for heading, bugs in (
        ("## Bugs", new),
        ("## Known bugs (known.json: counted, not reported as new)", accepted),
    ):
        if not bugs:
            continue
        parts += [heading, ""]
        for bug in bugs:
            if (store.folder / bug.slug / "report.md").exists():
                refs.append(f"[{len(refs) + 1}]: {bug.slug}/report.md")
                first = f"- [{bug.title}][{len(refs)}]"
            else:
                first = f"- {bug.title}"
            parts += wrap(first, WIDTH, "  ")
            line = (
                f"  {bug.count} seen, first {bug.first_seen}, last {bug.last_seen}; {sizes(bug)}; "
                f"{status(bug)}"
            )
            parts += wrap(line, WIDTH, "  ")
        parts.append("")
    if not parts:
        return "no bugs recorded"
    return "\n".join([*parts, *refs]).rstrip()


def write_index(store: BugStore) -> Path:
    """Write ``index.md`` next to ``bugs.json`` (it is regenerated every time)."""
    text = "# fuzzkit bugs\n\nOne entry per distinct bug; formats in reports/README.md.\n\n"
    text += render_index(store) + "\n"
    path = store.folder / "index.md"
    write_atomic(path, text)
    return path

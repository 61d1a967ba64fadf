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
from pathlib import Path

from tabulate import tabulate

from fuzzkit import __version__
from fuzzkit.machine.core import TraceStep
from fuzzkit.program import Program
from fuzzkit.runner import Session, format_result, trace_table
from fuzzkit.triage.files import temp_dir, write_atomic
from fuzzkit.triage.minimize import Minimized
from fuzzkit.triage.probe import Replayer, Snapshot, snapshot
from fuzzkit.triage.size import ProgramSize
from fuzzkit.triage.store import Bug, BugStore

#: Steps of the trace shown before the violating step.
TRACE_WINDOW = 16
#: At most this many PTEs (changed ones first) in a report's state table.
MAX_PTE_ROWS = 48


def regression_test_name(slug: str) -> str:
    return f"test_{slug.replace('-', '_')}.py"


def program_table(program: Program, results: dict[int, object], order: list[int], violation: int) -> str:
    """The program with one column per CPU, one row per op in the order the ops started
    (ops that never ran last), each cell the op, its explicit arguments and its result."""
    ranked = order + [i for i in range(len(program.ops)) if i not in order]
    rows = []
    for i in ranked:
        oc = program.ops[i]
        args = " ".join(f"{k}={v}" for k, v in oc.args.items())
        result = format_result(results[i]) if i in results else "(in flight)" if i in order else "(not run)"
        if i == violation:
            result += " <- VIOLATION"
        cell = f"{oc.op}({args}) -> {result}"
        rows.append([i, *(cell if c == oc.cpu else "" for c in range(program.cpus))])
    return tabulate(rows, headers=["#", *(f"cpu{c}" for c in range(program.cpus))], tablefmt="github")


def _state_tables(before: Snapshot, after: Snapshot) -> str:
    out = []
    addrs = sorted(set(before.ptes) | set(after.ptes))
    changed = [a for a in addrs if before.ptes.get(a, "none") != after.ptes.get(a, "none")]
    shown = sorted(set(changed) | set(addrs[: max(0, MAX_PTE_ROWS - len(changed))]))[:MAX_PTE_ROWS]
    rows = [
        [f"{a:#x}", before.ptes.get(a, "none"), after.ptes.get(a, "none"), "changed" if a in changed else ""]
        for a in shown
    ]
    hidden = len(addrs) - len(shown)
    out.append("**Kernel PTEs** (present before or after; absent means none)\n")
    out.append(
        tabulate(rows, headers=["address", f"before step {before.step}", "after", ""], tablefmt="github")
        if rows
        else "(no PTE set)"
    )
    if hidden:
        out.append(f"\n{hidden} unchanged PTEs not shown.")
    names = sorted(set(before.free_ranges) | set(after.free_ranges))
    if names:
        rows = [[n, _ranges(before.free_ranges.get(n)), _ranges(after.free_ranges.get(n))] for n in names]
        out.append("\n**Range trees** (FREE page offsets `[start, end)`)\n")
        out.append(
            tabulate(rows, headers=["object", f"before step {before.step}", "after"], tablefmt="github")
        )
    cpus = sorted(set(before.tlbs) | set(after.tlbs))
    rows = [[f"cpu{c}", _tlb(before.tlbs.get(c, {})), _tlb(after.tlbs.get(c, {}))] for c in cpus]
    out.append("\n**TLBs** (cached translations)\n")
    out.append(tabulate(rows, headers=["cpu", f"before step {before.step}", "after"], tablefmt="github"))
    return "\n".join(out)


def _ranges(ranges: list[tuple[int, int]] | None) -> str:
    if ranges is None:
        return "(not created)"
    return " ".join(f"[{s}, {e})" for s, e in ranges) or "(all TAKEN)"


def _tlb(entries: dict[int, str]) -> str:
    return "; ".join(f"{a:#x} -> {what}" for a, what in entries.items()) or "(empty)"


def _md_trace(trace: list[TraceStep], cpus: int) -> str:
    return "```\n" + trace_table(trace, cpus) + "\n```"


def render_report(session: Session, bug: Bug, program: Program, minimized: Minimized | None, rel: str) -> str:
    """report.md for ``bug`` whose reproducer is ``program``; ``rel`` is the bundle's path as
    a user would type it (``reports/<slug>``)."""
    replayer = Replayer(session)
    plain = replayer.run(program, trace=True)
    sig_finding = plain.result.finding
    assert sig_finding is not None, "a bundle is only written for a program that reproduces"
    violation = sig_finding.step
    start = max(1, violation - TRACE_WINDOW)
    before = replayer.run(program, snapshot_at=start).before
    assert before is not None, "every step up to the violation runs, so the snapshot is taken"
    after = snapshot(plain.result.machine, violation)
    trace = plain.result.trace or []
    window = [t for t in trace if t.step >= start]
    order: list[int] = []
    for t in trace:
        if t.call not in order:
            order.append(t.call)

    f = sig_finding
    invariants = sorted(
        inv.summary for (sid, _), inv in session.registry.invariants.items() if sid == f.spec_id
    )
    replaced = session.registry.replacements
    rows = [
        ["invariant", f"{f.spec_id}: " + ("; ".join(invariants) or "checked by the machine (SPEC.md)")],
        ["fired in", f"op `{f.op}` (call {f.call}, cpu{f.cpu}, step {f.step})"],
        [
            "primitive",
            f"`{bug.primitive}`" if bug.primitive else "none (the op's own code or a check at its end)",
        ],
        ["detail", f.detail or "-"],
        ["configuration", f"arch {program.arch}, revision {program.revision}, {program.cpus} cpu(s)"],
        [
            "replaced primitives",
            ", ".join(
                f"`{name}` by plugin `{plugin}`" + (f" ({replaced[name].reason})" if name in replaced else "")
                for name, plugin in f.replaced
            )
            or "none: the plugins' own kernel code",
        ],
        ["alternative titles", "; ".join(bug.alt_titles) or "none"],
    ]
    if minimized is not None:
        rows.append(["minimized", minimized.summary()])
    recorded = program.recorded_with
    plugins = recorded.get("plugins", {}) if isinstance(recorded.get("plugins"), dict) else {}
    env = [[name, version] for name, version in sorted(plugins.items())]
    test = regression_test_name(bug.slug)
    parts = [
        f"# {bug.title}\n",
        tabulate(rows, headers=["", ""], tablefmt="github"),
        "\n## Program\n",
        "Ops in the order they started, one column per CPU; arguments not shown take their "
        "defaults (see `fuzzkit plugins`).\n",
        program_table(program, plain.result.results, order, f.call),
        "\nSchedule switches (before global step, run cpu): "
        + (", ".join(f"step {s} -> cpu{c}" for s, c in program.switches) or "none: default schedule")
        + ".\n\nInjected failures: "
        + (", ".join(f"{p}#{n}" for p, n in program.inject) or "none")
        + ".\n",
        f"\n## Trace around the violation (steps {start}-{violation})\n",
        _md_trace(window, program.cpus),
        f"\n## State before step {start} and after step {violation}\n",
        _state_tables(before, after),
        "\n## Environment\n",
        f"fuzzkit {__version__}; op table `{recorded.get('op_table', '?')}`.\n",
        tabulate(env, headers=["plugin", "version"], tablefmt="github") if env else "(plugins not recorded)",
        "\n## Reproduce\n",
        "```sh",
        f"fuzzkit replay {rel}/repro.json        # the step trace, one column per CPU",
        f"python -m pytest {rel}/{test}   # fails while the bug reproduces",
        "```",
        "\n`original.json` is the program as the engine found it.\n",
    ]
    return "\n".join(parts)


TEST_TEMPLATE = '''"""Regression test for: {title}

Replays repro.json (next to this file) and fails while that program still produces the
finding above. Run it from anywhere, with plain pytest (atheris is not needed)::

    python -m pytest {path}

Passing means the bug no longer reproduces with the installed plugins. The program is
replayed with the plugins it was recorded with that are installed here (all installed plugins
when it records none); an in-process variant plugin cannot be loaded from here, so a bug found
with one passes once the real implementation is back. Written by fuzzkit triage; edit freely.
"""

from __future__ import annotations

from pathlib import Path

from fuzzkit.plugins import installed, load_registry
from fuzzkit.program import load
from fuzzkit.runner import Session
from fuzzkit.triage import signature

REPRO = Path(__file__).resolve().with_name("repro.json")
TITLE = {title_repr}
#: Plugins the program was recorded with.
PLUGINS = {plugins!r}


def recorded_session() -> Session:
    names = {{name for name, *_ in installed()}}
    wanted = names & set(PLUGINS)
    return Session(load_registry(disable=sorted(names - wanted) if wanted else ()))


def check(session: Session) -> None:
    """Fail (AssertionError) when replaying repro.json with ``session`` gives TITLE."""
    found = signature(session, load(REPRO), source=str(REPRO))
    if found is not None and found.title == TITLE:
        f = found.finding
        raise AssertionError(
            f"still reproduces: {{TITLE}} (cpu{{f.cpu}}, step {{f.step}}) {{f.detail}}\\n"
            f"see the trace with: fuzzkit replay {{REPRO}}"
        )


def test_no_longer_reproduces() -> None:
    check(recorded_session())
'''


def render_test(bug: Bug, program: Program, rel: str) -> str:
    plugins = program.recorded_with.get("plugins", {})
    names = tuple(sorted(plugins)) if isinstance(plugins, dict) else ()
    return TEST_TEMPLATE.format(
        title=bug.title,
        title_repr=repr(bug.title),
        plugins=names,
        path=f"{rel}/{regression_test_name(bug.slug)}",
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
    rel = f"{reports.name}/{bug.slug}" if reports.name else bug.slug
    files = {
        "report.md": render_report(session, bug, program, minimized, rel),
        "repro.json": program.dumps(),
        "original.json": original.dumps(),
        regression_test_name(bug.slug): render_test(bug, program, rel),
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


def render_index(store: BugStore, tablefmt: str = "github") -> str:
    """Every bug with its counts, when it was seen, its sizes and its status."""
    rows = []
    for bug in store.bugs:
        link = f"[{bug.title}]({bug.slug}/report.md)" if tablefmt == "github" else bug.title
        rows.append(
            [
                link,
                bug.count,
                bug.first_seen,
                bug.last_seen,
                f"{_size(bug.minimized_size)} (from {_size(bug.original_size)})",
                bug.status + (f": {bug.note}" if bug.note else ""),
            ]
        )
    table = tabulate(
        rows,
        headers=["bug", "count", "first seen", "last seen", "minimized (original)", "status"],
        tablefmt=tablefmt,
    )
    return table if rows else "no bugs recorded"


def write_index(store: BugStore) -> Path:
    """Write ``index.md`` next to ``bugs.json`` (it is regenerated every time)."""
    text = "# fuzzkit bugs\n\nOne row per distinct bug; formats in reports/README.md.\n\n"
    text += render_index(store) + "\n"
    path = store.folder / "index.md"
    write_atomic(path, text)
    return path

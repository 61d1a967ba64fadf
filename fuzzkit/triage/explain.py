"""``report.md``: one bug explained so that a kernel developer can paste it into a mail.

Sections (documented in ``reports/README.md``): a summary (the invariant, where it fired,
where the state broke: the step, op and kernel function, the detail, configuration, replaced
primitives, alternative titles, minimization); the program with every argument of every op,
one column per CPU; the trace from the first step of every op still in flight when the
invariant broke (so another CPU's steps that set a race up are shown) and of the write that
broke the state; the PTE, range-tree and TLB state before and after those steps; the
environment; and reproduce lines that work as printed, with the ``-p`` flags the plugin set
needs. Every line fits in :data:`~fuzzkit.triage.layout.WIDTH` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fuzzkit import PAGE_SHIFT, __version__
from fuzzkit.machine.core import Finding, Machine, TraceStep
from fuzzkit.plugins import installed
from fuzzkit.program import Program
from fuzzkit.runner import Session, format_result
from fuzzkit.triage.layout import WIDTH, item, text_table, wrap
from fuzzkit.triage.minimize import Minimized
from fuzzkit.triage.probe import ProbeRun, Replayer, Snapshot, snapshot
from fuzzkit.triage.store import Bug

#: Steps of the trace shown before the violating step, at least.
TRACE_WINDOW = 16
#: At most this many PTEs (changed ones first) in a report's state table.
MAX_PTE_ROWS = 48


def regression_test_name(slug: str) -> str:
    return f"test_{slug.replace('-', '_')}.py"


def all_args(session: Session, program: Program, index: int) -> str:
    """Every argument of op ``index``, defaults included, in declaration order."""
    oc = program.ops[index]
    domains = session.kernel(program.arch, program.revision, program.cpus).ops[oc.op].args
    return " ".join(f"{k}={format_result(oc.args.get(k, d.base()))}" for k, d in domains.items())


def program_table(
    session: Session, program: Program, results: dict[int, object], order: list[int], violation: int
) -> str:
    """The program with one column per CPU, one row per op in the order the ops started
    (ops that never ran last): each cell the op, its result and every argument."""
    ranked = order + [i for i in range(len(program.ops)) if i not in order]
    rows = []
    for i in ranked:
        oc = program.ops[i]
        result = format_result(results[i]) if i in results else "(in flight)" if i in order else "(not run)"
        if i == violation:
            result += " <- VIOLATION"
        cell = f"{oc.op} -> {result}\n  {all_args(session, program, i)}"
        rows.append([str(i), *(cell if c == oc.cpu else "" for c in range(program.cpus))])
    return text_table(rows, ["#", *(f"cpu{c}" for c in range(program.cpus))])


def trace_text(trace: list[TraceStep], cpus: int) -> str:
    """The step trace with one column per CPU: each row is one atomic step, with its notes."""
    rows = []
    for t in trace:
        cell = "\n".join([f"[{t.call}] {t.op}: {t.label}", *(f"  {n}" for n in t.notes)])
        rows.append([str(t.step), *(cell if c == t.cpu else "" for c in range(cpus))])
    return text_table(rows, ["step", *(f"cpu{c}" for c in range(cpus))])


def trace_start(finding: Finding, machine: Machine, trace: list[TraceStep]) -> int:
    """Where the trace a report shows starts: :data:`TRACE_WINDOW` steps before the violation
    or earlier, at the first step of every op still in flight on any CPU and at the write
    that broke the state, so the steps that led into it are all shown."""
    start = finding.step - TRACE_WINDOW
    in_flight = {c.call.index for c in machine.cpus if c.gen is not None and c.call is not None}
    in_flight.add(finding.call)
    firsts = [t.step for t in trace if t.call in in_flight]
    if firsts:
        start = min(start, *firsts)
    if finding.cause is not None:
        start = min(start, finding.cause.step)
    return max(1, start)


def _state_tables(before: Snapshot, after: Snapshot) -> str:
    addrs = sorted(set(before.ptes) | set(after.ptes))
    changed = [a for a in addrs if before.ptes.get(a, "none") != after.ptes.get(a, "none")]
    shown = sorted(set(changed) | set(addrs[: max(0, MAX_PTE_ROWS - len(changed))]))[:MAX_PTE_ROWS]
    rows = [
        [f"{a:#x}", before.ptes.get(a, "none"), after.ptes.get(a, "none"), "changed" if a in changed else ""]
        for a in shown
    ]
    out = ["Kernel PTEs (present before or after; absent means none):\n"]
    headers = ["address", f"before step {before.step}", "after", ""]
    out.append(_fenced(text_table(rows, headers)) if rows else "(no PTE set)")
    hidden = len(addrs) - len(shown)
    if hidden:
        out.append(f"\n{hidden} unchanged PTEs not shown.")
    names = sorted(set(before.free_ranges) | set(after.free_ranges))
    if names:
        rows = [[n, _ranges(before.free_ranges.get(n)), _ranges(after.free_ranges.get(n))] for n in names]
        out.append("\nRange trees (FREE page offsets `[start, end)`):\n")
        out.append(_fenced(text_table(rows, ["object", f"before step {before.step}", "after"])))
    cpus = sorted(set(before.tlbs) | set(after.tlbs))
    rows = [[f"cpu{c}", _tlb(before.tlbs.get(c, {})), _tlb(after.tlbs.get(c, {}))] for c in cpus]
    out.append("\nTLBs (cached translations):\n")
    out.append(_fenced(text_table(rows, ["cpu", f"before step {before.step}", "after"])))
    return "\n".join(out)


def _ranges(ranges: list[tuple[int, int]] | None) -> str:
    if ranges is None:
        return "(not created)"
    return " ".join(f"[{s}, {e})" for s, e in ranges) or "(all TAKEN)"


def _tlb(entries: dict[int, str]) -> str:
    return "\n".join(f"{a:#x} -> {what}" for a, what in entries.items()) or "(empty)"


def _fenced(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text}\n```"


def _chain(names: list[str]) -> str:
    return " <- ".join(f"`{n}`" for n in names)


def where_it_broke(run: ProbeRun) -> str:
    """The step, op and kernel function that broke the state: the write the finding's cause
    names, or the primitive the violation fired in."""
    f = run.result.finding
    assert f is not None
    c = f.cause
    if c is not None:
        what = {"pte": "the PTE write", "tlb": "the TLB fill"}.get(c.what, c.what)
        text = (
            f"{what} at {c.vpage << PAGE_SHIFT:#x} in step {c.step}, cpu{c.cpu}, call {c.call} `{c.op}`"
            + (f", in {_chain(run.cause_chain)}" if run.cause_chain else ", in the op's own code")
            + f"; the check tripped over it in step {f.step} (call {f.call}, `{f.op}`)"
        )
        return text
    if run.chain:
        return f"step {f.step}, cpu{f.cpu}, call {f.call} `{f.op}`, in {_chain(run.chain)}"
    return f"step {f.step}, cpu{f.cpu}, call {f.call} `{f.op}` (the op's own code or a check at its end)"


def plugin_flags(session: Session, needs: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The ``-p`` flags that load the plugin set of ``session`` on the command line, and the
    plugins no flag can load (in-process ones, as tests make). Every plugin of ``needs`` (a
    bug's variant) is named even when installed, so the line works with autoload off too."""
    loaded = {p.name: p for p in session.registry.plugins}
    names = {name for name, *_ in installed()}
    flags = [f"-p no:{n}" for n in sorted(names - loaded.keys())]
    flags += [
        f"-p {n}"
        for n, p in sorted(loaded.items())
        if p.distribution == "(imported)" or (n in needs and p.distribution != "(in-process)")
    ]
    missing = sorted(n for n, p in loaded.items() if p.distribution == "(in-process)")
    return flags, missing


def reproduce(session: Session, bundle: Path, test: str, needs: Sequence[str] = ()) -> list[str]:
    """Lines that reproduce the bug as printed, from any directory."""
    flags, missing = plugin_flags(session, needs)
    folder = bundle.resolve()
    cds = [f"cd {folder}"] if len(f"cd {folder}") <= WIDTH else [f"cd {folder.parent}", f"cd {folder.name}"]
    replay = " ".join(["python -m fuzzkit", *flags, "replay repro.json"])
    lines = ["```sh", *cds]
    lines += wrap(replay + "  # the step trace, one column per CPU", WIDTH, "    ")
    lines += [f"python -m pytest {test}" if len(test) + 17 <= WIDTH else "python -m pytest .", "```"]
    lines.append("\nThe regression test fails while the bug reproduces, with the installed plugins.")
    if needs:
        lines += wrap(
            f"The bug needs {', '.join(needs)}: without it the program does not show the bug, "
            "and 'fuzzkit report' says 'cannot replay'.",
            WIDTH,
        )
    if missing:
        lines += wrap(
            "Found with plugins loaded in-process, which no flag can load: " + ", ".join(missing) + ".",
            WIDTH,
        )
    return lines


def _dependence(bug: Bug) -> str:
    if bug.needs:
        return f"{bug.dependence}: the same program replayed without it shows no such bug"
    return f"{bug.dependence}: the same program replayed without it shows the same bug"


def render_report(
    session: Session, bug: Bug, program: Program, minimized: Minimized | None, bundle: Path
) -> str:
    """report.md for ``bug`` whose reproducer is ``program``, to be written in ``bundle``."""
    replayer = Replayer(session)
    plain = replayer.run(program, trace=True)
    f = plain.result.finding
    assert f is not None, "a bundle is only written for a program that reproduces"
    trace = plain.result.trace or []
    start = trace_start(f, plain.result.machine, trace)
    before = replayer.run(program, snapshot_at=start).before
    assert before is not None, "every step up to the violation runs, so the snapshot is taken"
    after = snapshot(plain.result.machine, f.step)
    window = [t for t in trace if t.step >= start]
    order = list(dict.fromkeys(t.call for t in trace))

    invariants = sorted(
        inv.summary for (sid, _), inv in session.registry.invariants.items() if sid == f.spec_id
    )
    replaced = session.registry.replacements
    summary = [
        item("invariant", f"{f.spec_id} (SPEC.md): " + ("; ".join(invariants) or "checked by the machine")),
        item("fired in", f"op `{f.op}` (call {f.call}, cpu{f.cpu}, step {f.step})"),
        item("state broke", where_it_broke(plain)),
        item("detail", f.detail or "-"),
        item("configuration", f"arch {program.arch}, revision {program.revision}, {program.cpus} cpu(s)"),
        item(
            "replaced primitives",
            ", ".join(
                f"`{name}` by plugin `{plugin}`" + (f" ({replaced[name].reason})" if name in replaced else "")
                for name, plugin in f.replaced
            )
            or "none: the plugins' own kernel code",
        ),
        *([item("variant", _dependence(bug))] if bug.dependence else []),
        item("alternative titles", "none") if not bug.alt_titles else "- **alternative titles**:",
        *("\n".join(wrap(f"  - {t}", WIDTH, "    ")) for t in bug.alt_titles),
    ]
    if minimized is not None:
        summary.append(item("minimized", minimized.summary()))
    recorded = program.recorded_with
    plugins = recorded.get("plugins", {}) if isinstance(recorded.get("plugins"), dict) else {}
    env = [[name, version] for name, version in sorted(plugins.items())]
    heading = f"# {bug.title}"
    head = [heading] if len(heading) <= WIDTH else ["# " + bug.slug, "", *wrap(bug.title, WIDTH)]
    parts = [
        *head,
        "",
        *summary,
        "\n## Program\n",
        "Ops in the order they started, one column per CPU, each with every argument.\n",
        _fenced(program_table(session, program, plain.result.results, order, f.call)),
        "",
        *wrap(
            "Schedule switches (before global step, run cpu): "
            + (", ".join(f"step {s} -> cpu{c}" for s, c in program.switches) or "none: default schedule")
            + ".",
            WIDTH,
        ),
        "",
        *wrap(
            "Injected failures: " + (", ".join(f"{p}#{n}" for p, n in program.inject) or "none") + ".", WIDTH
        ),
        f"\n## Trace around the violation (steps {start}-{f.step})\n",
        *wrap(
            "From the first step of every op still in flight when the invariant broke, on every "
            "CPU, and of the write that broke the state.",
            WIDTH,
        ),
        "",
        _fenced(trace_text(window, program.cpus)),
        f"\n## State before step {start} and after step {f.step}\n",
        _state_tables(before, after),
        "\n## Environment\n",
        f"fuzzkit {__version__}; op table `{recorded.get('op_table', '?')}`.\n",
        _fenced(text_table(env, ["plugin", "version"])) if env else "(plugins not recorded)",
        "\n## Reproduce\n",
        *reproduce(session, bundle, regression_test_name(bug.slug), bug.needs),
        "\n`original.json` is the program as the engine found it.\n",
    ]
    return "\n".join(parts)

"""The ``fuzzkit`` command."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fuzzkit import __version__
from fuzzkit.errors import FuzzkitError
from fuzzkit.plugins import load_registry
from fuzzkit.program import load
from fuzzkit.registry import DEFAULT_REVISION, Registry
from fuzzkit.runner import Session, ops_table, trace_json, trace_table

#: Exit codes: a clean run, a run that found something, and bad input or configuration.
EXIT_CLEAN, EXIT_FINDING, EXIT_USAGE = 0, 1, 2

EXAMPLES = Path(__file__).resolve().parent.parent / "corpora" / "examples"
BENCH_PROGRAMS = EXAMPLES.parent / "bench"
REPORTS = EXAMPLES.parent.parent / "reports"

DESCRIPTION = """\
fuzzkit fuzzes a model of BPF arena direct kernel access: arena pages reachable from kernel
code, a per-arena scratch page the arch fault hook installs into empty PTEs, and the
struct_ops / sched_ext code built on it. Plugins provide arches, subsystems and design
variants; see 'fuzzkit plugins'.

exit status: 0 clean, 1 an invariant was violated, 2 bad input or configuration.
"""

EPILOG = """\
examples:
  fuzzkit run                          replay the bundled example programs
  fuzzkit replay corpora/examples/scratch_install.json
  fuzzkit -p no:arm64 plugins          list plugins with arm64 disabled
  FUZZKIT_DISABLE_PLUGIN_AUTOLOAD=1 fuzzkit -p x86 -p arena plugins
  fuzzkit fuzz -p mypkg.variant --ops 'scx.*'
                                       fuzz an uninstalled design variant, aimed at sched_ext
"""


def _plugin_args(p: argparse.ArgumentParser, dest: str) -> None:
    # The main parser and each subcommand keep separate lists (argparse lets a subparser's
    # default overwrite the main parser's value), merged in _registry.
    p.add_argument(
        "-p",
        dest=dest,
        action="append",
        default=[],
        metavar="NAME",
        help="'no:NAME' disables plugin NAME; 'NAME' loads it when autoload is off "
        "(FUZZKIT_DISABLE_PLUGIN_AUTOLOAD=1); a NAME no installed plugin has is imported as "
        "'module' or 'module:attribute' (an uninstalled variant). Repeatable.",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _plugin_args(common, "sub_plugin_flags")
    parser = argparse.ArgumentParser(
        prog="fuzzkit",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _plugin_args(parser, "plugin_flags")
    parser.add_argument("--version", action="version", version=f"fuzzkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", parents=[common], help="list loaded plugins and what each registered")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "replay",
        parents=[common],
        help="run program files exactly as recorded and print the step trace",
        description="Run each program with its recorded choices. Prints the ops with their "
        "results, the step trace (one column per CPU) and any finding. Replay is exact: the "
        "same file always gives the same trace.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output, one object per file")
    p.add_argument("--no-trace", action="store_true", help="omit the step trace")

    p = sub.add_parser(
        "fuzz",
        parents=[common],
        help="fuzz a target with atheris (coverage-guided) or hypothesis (stateful, shrinking)",
        description="Fuzz one or more targets (arch, revision, cpus, loaded plugins). Findings are "
        "written as program files that 'fuzzkit replay' reproduces. The same --seed and --runs "
        "give the same findings (atheris: with a fresh corpus and one job).",
        epilog="Arguments after '--' go to libFuzzer unchanged (atheris only), e.g. -- -jobs=2.",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "atheris", "hypothesis"),
        default="auto",
        help="atheris (coverage-guided; Linux x86-64) or hypothesis (stateful, shrinking; anywhere); "
        "auto, the default, takes atheris where it is installed",
    )
    p.add_argument("--arch", default="x86", help="x86, arm64 or all (default x86)")
    p.add_argument(
        "--revision",
        default=DEFAULT_REVISION,
        choices=("merged", "fixed"),
        help=f"code revision (R4), default {DEFAULT_REVISION}",
    )
    p.add_argument("--cpus", type=int, default=2, help="emulated CPUs (default 2)")
    p.add_argument(
        "--ops",
        action="append",
        default=[],
        metavar="PATTERN",
        help="focus on the ops matching PATTERN (an op id or a glob such as 'scx.*'; repeatable), "
        "plus the ops creating the objects they take; default: every op. Use it to aim a campaign "
        "at one subsystem or at the ops a replaced primitive runs in",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, help="executions (atheris) or examples (hypothesis) per target")
    budget.add_argument("--time", type=int, metavar="SECONDS", help="wall-clock budget per target (atheris)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--reports", type=Path, default=REPORTS, help=f"where findings go (default {REPORTS})")
    p.add_argument("--corpus", type=Path, help="atheris corpora go in CORPUS/<target>/ (default corpora/)")
    p.add_argument("libfuzzer", nargs="*", metavar="-- LIBFUZZER_ARG", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "minimize",
        parents=[common],
        help="shrink a program to the smallest that still gives the same finding title",
        description="Drop ops and CPUs, remove preemptions and injected failures, and move "
        "arguments toward their defaults, keeping a change only when replay gives the same "
        "finding title. Bounded by a replay budget; says how far it got.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument(
        "-o", "--output", type=Path, help="where to write it (default FILE.min.json; never overwritten)"
    )
    p.add_argument("--budget", type=int, default=None, help="replays at most (default 20000)")

    p = sub.add_parser(
        "report",
        parents=[common],
        help="re-run every known bug and print and write the index",
        description="Replays each bug's repro.json, records whether it still reproduces, "
        "and writes DIR/index.md.",
    )
    p.add_argument("dir", nargs="?", type=Path, default=REPORTS, help=f"reports folder (default {REPORTS})")

    p = sub.add_parser(
        "known",
        parents=[common],
        help="mark a recorded bug known (counted, never reported as new), list or unmark them",
        description="Known bugs are listed in DIR/known.json, a small file to review and commit "
        "with the reports: findings of the model you accept, or kernel bugs with a fix on its "
        "way. Campaigns still count them, but do not report them as new nor minimize them.",
    )
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("bug", nargs="?", metavar="BUG", help="a bug's slug, its bundle folder, or its title")
    p.add_argument("--note", default="", help="why it is known (add)")
    p.add_argument("--reports", type=Path, default=REPORTS, help=f"reports folder (default {REPORTS})")

    p = sub.add_parser(
        "run",
        parents=[common],
        help="the default job: replay every bundled example program and summarise",
    )
    p.add_argument(
        "dir", nargs="?", type=Path, default=EXAMPLES, help=f"folder of programs (default {EXAMPLES})"
    )

    p = sub.add_parser(
        "bench",
        parents=[common],
        help="measure emulator steps per second on a canonical workload",
        description="Emulator steps per second on seeded programs of 32 ops drawn from the "
        "whole op table, oracles on, for 1 and 2 CPUs; then peak memory of replaying each "
        f"program in {BENCH_PROGRAMS} (a 4 GiB arena with a few hundred touched pages).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--programs", type=int, default=1000, help="programs per configuration (default 1000)")
    p.add_argument("--arch", default=None, help="arch to measure (default: the first loaded)")
    p.add_argument("--no-engines", action="store_true", help="skip the atheris and hypothesis figures")
    return parser


def _registry(args: argparse.Namespace) -> Registry:
    flags: list[str] = args.plugin_flags + getattr(args, "sub_plugin_flags", [])
    disable = [f[3:] for f in flags if f.startswith("no:")]
    enable = [f for f in flags if not f.startswith("no:")]
    return load_registry(disable=disable, enable=enable)


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = _registry(args)
    what: dict[str, dict[str, list[str]]] = {p.name: {} for p in reg.plugins}

    def add(plugin: str, kind: str, name: str) -> None:
        what.setdefault(plugin, {}).setdefault(kind, []).append(name)

    for name, (_, plugin) in sorted(reg.arches.items()):
        add(plugin, "arches", name)
    for (name, rev), prim in sorted(reg.primitives.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        add(prim.plugin, "primitives", name + (f"[{rev}]" if rev else ""))
    for name, rep in sorted(reg.replacements.items()):
        add(rep.plugin, "replaces", f"{name}: {rep.reason}")
    for name, st in sorted(reg.fault_stages.items()):
        add(st.plugin, "fault_stages", name)
    for name, ip in sorted(reg.injection_points.items()):
        add(ip.plugin, "injection_points", name)
    for op in reg.op_table():
        add(op.plugin, "ops", op.id)
    for (sid, name), inv in sorted(reg.invariants.items()):
        add(inv.plugin, "invariants", f"{sid}/{name}" + (f" ({inv.arch} only)" if inv.arch else ""))
    if args.json:
        out = [
            {
                "name": p.name,
                "version": p.version,
                "distribution": p.distribution,
                "module": p.module,
                "registered": what.get(p.name, {}),
            }
            for p in reg.plugins
        ]
        print(json.dumps({"plugins": out, "op_table": reg.fingerprint()}, indent=2))
        return EXIT_CLEAN
    rows = [
        [
            p.name,
            p.version,
            p.distribution,
            "\n".join(f"{k}: {', '.join(v)}" for k, v in what.get(p.name, {}).items()) or "-",
        ]
        for p in reg.plugins
    ]
    print(
        tabulate(
            rows,
            headers=["plugin", "version", "distribution", "registered"],
            tablefmt="simple",
            maxcolwidths=[None, None, None, 90],
        )
    )
    print(f"\nop table fingerprint: {reg.fingerprint()}")
    return EXIT_CLEAN


def cmd_replay(args: argparse.Namespace) -> int:
    session = Session(_registry(args))
    worst = EXIT_CLEAN
    docs: list[dict[str, Any]] = []
    for path in args.files:
        prog = load(path)
        result = session.run(prog, trace=True, source=str(path))
        worst = max(worst, EXIT_FINDING if result.finding else EXIT_CLEAN)
        if args.json:
            docs.append(
                {
                    "file": str(path),
                    "config": {"arch": prog.arch, "revision": prog.revision, "cpus": prog.cpus},
                    "steps": result.steps,
                    "results": {str(k): v for k, v in sorted(result.results.items())},
                    "finding": result.finding.to_json() if result.finding else None,
                    "trace": trace_json(result.trace or []),
                }
            )
            continue
        print(f"== {path} ({prog.arch}, {prog.revision}, {prog.cpus} cpu{'s' if prog.cpus > 1 else ''})")
        if prog.description:
            print(prog.description)
        print()
        print(ops_table(prog, result))
        if not args.no_trace:
            print()
            print(trace_table(result.trace or [], prog.cpus))
        print()
        if result.finding:
            print(f"FINDING: {result.finding.title}  (cpu{result.finding.cpu}, step {result.finding.step})")
        else:
            print(f"clean: no invariant violated in {result.steps} steps")
        print()
    if args.json:
        print(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
    return worst


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzzkit.engines.campaign import FindingSink, Target

    arches = ("x86", "arm64") if args.arch == "all" else (args.arch,)
    if args.engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            args.engine = "hypothesis"
        else:
            args.engine = "atheris"
    flags = args.plugin_flags + getattr(args, "sub_plugin_flags", [])
    session = Session(_registry(args))
    targets = [Target(arch, args.revision, args.cpus, tuple(args.ops)) for arch in arches]
    for target in targets:
        target.kernel(session)  # a bad arch, revision, cpus or --ops fails here, early
    findings_dir = args.reports / "findings"
    total: list[tuple[str, str]] = []
    for target in targets:
        print(f"== fuzzing {target.name} with {args.engine}", flush=True)
        if args.engine == "atheris":
            from fuzzkit.engines import atheris_engine

            corpus = (args.corpus or EXAMPLES.parent) / target.name
            runs = args.runs if args.runs is not None or args.time is not None else 20_000
            print(f"   corpus: {corpus}", flush=True)
            result = atheris_engine.run(
                target,
                corpus=corpus,
                findings=findings_dir,
                plugin_flags=flags,
                seed=args.seed,
                runs=runs,
                seconds=args.time,
                libfuzzer_args=args.libfuzzer,
            )
            total += [(f["title"], f["file"]) for f in result.found]
        else:
            from fuzzkit.engines.hypothesis_engine import DATABASE, campaign

            if args.libfuzzer:
                raise FuzzkitError("arguments after '--' are libFuzzer's; they need --engine atheris")
            sink = FindingSink(findings_dir)
            for failure in campaign(
                session, target, examples=args.runs or 300, seed=args.seed, database=DATABASE
            ):
                path = sink.add(failure.finding, failure.program)
                total.append((failure.finding.title, str(path or sink.written[failure.finding.title])))
                print(f"   found: {failure.finding.title}", flush=True)
    print()
    if not total:
        print("no findings. Run longer (--runs, --time) or on more targets (--arch all).")
        return EXIT_CLEAN
    from fuzzkit.triage import triage

    print(f"triage: deduplicating and minimizing {len(total)} finding(s)...", flush=True)
    triaged = triage(session, [(file, load(Path(file))) for _, file in total], args.reports)
    rows = [
        [t.bug.title, "new" if t.new else "known", t.occurrences, t.bundle or args.reports / t.bug.slug]
        for t in triaged.bugs
    ]
    print(tabulate(rows, headers=["bug", "", "seen", "report"], tablefmt="simple"))
    print(f"\nindex: {args.reports / 'index.md'}; regression tests: pytest {args.reports}/*/test_*.py")
    return EXIT_FINDING


def cmd_minimize(args: argparse.Namespace) -> int:
    from fuzzkit.triage import DEFAULT_BUDGET, minimize_file

    out = args.output or args.file.with_name(args.file.name.removesuffix(".json") + ".min.json")
    result = minimize_file(Session(_registry(args)), args.file, out, budget=args.budget or DEFAULT_BUDGET)
    print(result.summary())
    print(f"written: {out}")
    return EXIT_CLEAN


def cmd_report(args: argparse.Namespace) -> int:
    from fuzzkit.triage import recheck, render_index

    store = recheck(Session(_registry(args)), args.dir)
    print(render_index(store, "simple"))
    print(f"\nwritten: {args.dir / 'index.md'}")
    return EXIT_CLEAN


def cmd_known(args: argparse.Namespace) -> int:
    from fuzzkit.triage import timestamp
    from fuzzkit.triage.known import load_known, mark_known, unmark_known

    if args.action == "list":
        known = load_known(args.reports)
        for k in known:
            print(k.title + (f"  ({k.note})" if k.note else ""))
        print(f"{len(known)} known bug(s) in {args.reports / 'known.json'}")
        return EXIT_CLEAN
    if not args.bug:
        raise FuzzkitError(f"known {args.action}: BUG is missing (a slug, a bundle folder or a title)")
    if args.action == "add":
        entry = mark_known(args.reports, args.bug, args.note, timestamp())
        print(f"known: {entry.title}")
    else:
        entry = unmark_known(args.reports, args.bug)
        print(f"no longer known: {entry.title}")
    print(f"written: {args.reports / 'known.json'}")
    return EXIT_CLEAN


def cmd_run(args: argparse.Namespace) -> int:
    files = sorted(args.dir.glob("*.json"))
    if not files:
        raise FuzzkitError(f"{args.dir}: no program files (*.json) found")
    session = Session(_registry(args))
    rows = []
    found = 0
    for path in files:
        prog = load(path)
        result = session.run(prog, source=str(path))
        found += result.finding is not None
        rows.append(
            [
                path.name,
                f"{prog.arch}/{prog.revision}",
                prog.cpus,
                result.steps,
                result.finding.title if result.finding else "clean",
            ]
        )
    print(tabulate(rows, headers=["program", "config", "cpus", "steps", "outcome"], tablefmt="simple"))
    print(
        f"\n{len(files)} programs replayed, {found} with findings. "
        f"Replay one with its trace: fuzzkit replay {files[0]}"
    )
    return EXIT_CLEAN


def cmd_bench(args: argparse.Namespace) -> int:
    from fuzzkit.bench import emulator_throughput, memory

    reg = _registry(args)
    session = Session(reg)
    arch = args.arch or (sorted(reg.arches)[0] if reg.arches else "x86")
    figures = []
    for cpus in (1, 2):
        fig = emulator_throughput(session, arch, DEFAULT_REVISION, cpus, args.programs)
        figures.append(fig)
        if not args.json:
            print(
                f"{fig.name}, {cpus} cpu: {fig.steps_per_second:,.0f} steps/s "
                f"({fig.steps} steps, {fig.programs} programs, {fig.findings} with findings, "
                f"{fig.seconds:.2f}s)",
                flush=True,
            )
    engines: dict[str, float] = {}
    if not args.no_engines:
        from fuzzkit.bench import hypothesis_throughput
        from fuzzkit.engines import atheris_engine
        from fuzzkit.engines.campaign import Target

        flags = args.plugin_flags + getattr(args, "sub_plugin_flags", [])
        rounds: list[float] = []
        try:
            rounds = atheris_engine.bench(Target(arch, DEFAULT_REVISION, 2), 1000, flags)
        except FuzzkitError as exc:
            print(f"atheris: skipped ({exc})", flush=True)
        if rounds:
            engines["atheris_exec_per_second"] = statistics.median(rounds)
            engines["atheris_exec_per_second_lowest"] = min(rounds)
            engines["atheris_exec_per_second_highest"] = max(rounds)
        engines["hypothesis_examples_per_second"] = hypothesis_throughput(
            session, arch, DEFAULT_REVISION, 2, 200
        )
        if "atheris_exec_per_second" in engines:
            engines["ratio"] = engines["atheris_exec_per_second"] / engines["hypothesis_examples_per_second"]
        if not args.json:
            atheris = (
                f"atheris exec per second {engines['atheris_exec_per_second']:,.0f} (median of "
                f"{len(rounds)} rounds of 1,000, {min(rounds):,.0f}-{max(rounds):,.0f}), "
                if rounds
                else ""
            )
            print(
                f"engines, 32-op programs, 2 cpus, oracles on: {atheris}hypothesis examples per second "
                f"{engines['hypothesis_examples_per_second']:,.0f}"
                + (f" (ratio {engines['ratio']:.1f}x)" if "ratio" in engines else ""),
                flush=True,
            )
    if not args.no_engines:
        from fuzzkit.triage import minimize_figure

        fig_min, _ = minimize_figure(session, arch, "merged")
        engines["minimize_seconds"] = fig_min.seconds
        if not args.json:
            print(fig_min, flush=True)
    mem = []
    for path in sorted(BENCH_PROGRAMS.glob("*.json")):
        fig_m = memory(session, path)
        mem.append(fig_m)
        if not args.json:
            print(
                f"memory {fig_m.program}: peak {fig_m.peak_bytes / 2**20:.1f} MiB heap, "
                f"+{fig_m.rss_growth_bytes / 2**20:.1f} MiB RSS, {fig_m.steps} steps, "
                f"{fig_m.finding or 'clean'}",
                flush=True,
            )
    if args.json:
        print(
            json.dumps(
                {"figures": [f.to_json() for f in figures], "memory": [f.to_json() for f in mem]}, indent=2
            )
        )
    return EXIT_CLEAN


COMMANDS = {
    "plugins": cmd_plugins,
    "replay": cmd_replay,
    "fuzz": cmd_fuzz,
    "minimize": cmd_minimize,
    "report": cmd_report,
    "known": cmd_known,
    "run": cmd_run,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "fuzz":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.libfuzzer = [*args.libfuzzer, *extra]
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except FuzzkitError as exc:
        print(f"fuzzkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fuzzkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as cat does
        sys.stderr.close()
        return EXIT_CLEAN

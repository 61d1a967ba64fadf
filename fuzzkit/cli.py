"""The ``fuzzkit`` command."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fuzzkit import __version__
from fuzzkit.engines.supervisor import PROGRESS_SECONDS, default_jobs
from fuzzkit.errors import (
    EXIT_CLEAN,
    EXIT_FAILURE,
    EXIT_FOUND,
    EXIT_USAGE,
    ConfigError,
    EngineFailure,
    FuzzkitError,
    PluginError,
    PluginFailure,
)
from fuzzkit.plugins import registry_from_flags
from fuzzkit.program import load
from fuzzkit.registry import DEFAULT_REVISION, Registry
from fuzzkit.runner import Session, jsonable, ops_table, trace_json, trace_table
from fuzzkit.text import printable

#: Shipped with the package, so an installed fuzzkit finds them wherever it runs.
EXAMPLES = Path(__file__).resolve().parent / "data" / "examples"
BENCH_PROGRAMS = EXAMPLES.parent / "bench"
#: What ``fuzz`` passes on to libFuzzer unasked: ``-name`` or ``-name=value``.
LIBFUZZER_FLAG = re.compile(r"-[a-z_]+(=.*)?$")
#: Campaign output is relative to the working directory: where the user runs fuzzkit.
REPORTS = Path("reports")
CORPORA = Path("corpora")
#: How often ``fuzzkit status --watch`` reads the series again.
STATUS_SECONDS = 2.0

EXIT_CODES = """\
exit status (every command):
  0  nothing found (a clean replay, a campaign without findings)
  1  bugs found (an invariant of the kernel model was violated)
  2  bad usage or input (the message names the file, field, flag or plugin)
  3  a plugin or the engine failed (plugin code raised or hung; never a model bug)
"""

DESCRIPTION = """\
fuzzkit fuzzes a model of BPF arena direct kernel access: arena pages reachable from kernel
code, a per-arena scratch page the arch fault hook installs into empty PTEs, and the
struct_ops / sched_ext code built on it. Plugins provide arches, subsystems and design
variants; see 'fuzzkit plugins'.

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


def _target_args(p: argparse.ArgumentParser) -> None:
    """What names a campaign's target, the same for every command that takes one."""
    p.add_argument("--arch", default="x86", help="an arch or 'all' (every loaded arch); default x86")
    p.add_argument(
        "--revision",
        default=DEFAULT_REVISION,
        help=f"a code revision the plugins register (R4, see fuzzkit plugins), default {DEFAULT_REVISION}",
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _plugin_args(common, "sub_plugin_flags")
    parser = argparse.ArgumentParser(
        prog="fuzzkit",
        description=DESCRIPTION,
        epilog=EPILOG + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _plugin_args(parser, "plugin_flags")
    parser.add_argument("--version", action="version", version=f"fuzzkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", parents=[common], help="list loaded plugins and what each registered")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also the contract in force: ops with argument domains, primitives with signature and "
        "summary, each arch's fault path, injection points, invariants, revisions",
    )

    p = sub.add_parser(
        "new-plugin",
        parents=[common],
        help="scaffold an installable plugin package",
        description="Write an installable plugin package into DIR/NAME: pyproject.toml with the "
        "fuzzkit entry point, the typed module, and a test replaying a program with and "
        "without the plugin, which passes as generated once the package is installed.",
    )
    p.add_argument("name", metavar="NAME", help="plugin and module name, a lower-case identifier")
    p.add_argument(
        "--kind",
        required=True,
        choices=("variant", "subsystem", "arch"),
        help="variant: replaces a primitive; subsystem: ops, primitives, invariants; arch: an arch",
    )
    p.add_argument("--dir", type=Path, default=Path(), help="where the package folder goes (default .)")

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
        help="fuzz targets with atheris (coverage-guided) or hypothesis (stateful) on every core",
        description="""\
Fuzz one or more targets (arch, revision, cpus, loaded plugins) with --jobs worker
processes. Every finding is written as a program file and recorded in REPORTS/bugs.json
the moment it is found; when the workers stop, new bugs are minimized into report bundles.
Ctrl-C (or SIGTERM) stops the workers and still triages; a second Ctrl-C stops at once,
keeping everything recorded. A rerun resumes the corpus (atheris) or the example database
(hypothesis). The same --seed and --runs give the same findings (atheris: with a fresh
corpus and one worker per target).""",
        epilog="""\
examples:
  fuzzkit fuzz --arch all --time 28800     a night on every arch, one worker per core
  fuzzkit fuzz --revision merged --runs 50000 --jobs 2
                                           two workers sharing one corpus
  fuzzkit fuzz -p my_variant --ops 'arena.*' --engine hypothesis
                                           a design variant, aimed at the arena's ops
  fuzzkit fuzz -- -max_len=2048            libFuzzer flags after '--' (atheris only); the
                                           flags fuzzkit sets itself (-jobs, -fork, -merge,
                                           -runs, -seed, ...) are refused, naming its own

"""
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--engine",
        choices=("auto", "atheris", "hypothesis"),
        default="auto",
        help="atheris (coverage-guided; Linux x86-64) or hypothesis (stateful, shrinking; anywhere); "
        "auto, the default, takes atheris where it is installed",
    )
    _target_args(p)
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"worker processes (default: the CPUs this process may use, {default_jobs()} here), "
        "spread over the targets; the workers of one target share its corpus or database",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--runs",
        type=int,
        help="executions (atheris, default 20000) or examples (hypothesis, default 300) per worker",
    )
    budget.add_argument("--time", type=float, metavar="SECONDS", help="wall-clock budget per worker")
    p.add_argument("--seed", type=int, default=1, help="random seed of the first worker (default 1)")
    p.add_argument("--reports", type=Path, default=REPORTS, help=f"where findings go (default {REPORTS})")
    p.add_argument(
        "--corpus",
        type=Path,
        default=CORPORA,
        help=f"atheris corpora go in CORPUS/<target>/, hypothesis databases in "
        f"CORPUS/hypothesis/<target>/ (default {CORPORA})",
    )
    p.add_argument(
        "--database",
        default="",
        metavar="DIR|redis://HOST:PORT/N",
        help="hypothesis: the example database (default: CORPUS/hypothesis/<target>/); a "
        "redis:// URL shares one among workers on several machines",
    )
    p.add_argument("libfuzzer", nargs="*", metavar="-- LIBFUZZER_ARG", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "corpus",
        parents=[common],
        help="keep a grown atheris corpus small: prune it, or merge other corpora into it",
        description="prune: keep the smallest subset of the target's corpus with the same "
        "coverage (libFuzzer -merge=1 into an empty folder, swapped in when done). merge DIR...: "
        "add the inputs of DIRs that bring new coverage. The target is chosen as for 'fuzzkit "
        "fuzz' (--arch, --revision, --cpus, --ops, -p); a corpus a campaign is using is refused.",
    )
    p.add_argument("action", choices=("prune", "merge"))
    p.add_argument("sources", nargs="*", type=Path, metavar="DIR", help="merge: folders of inputs")
    _target_args(p)
    p.add_argument("--corpus", type=Path, default=CORPORA, help=f"corpora root (default {CORPORA})")
    p.add_argument("--reports", type=Path, default=REPORTS, help=f"reports folder (default {REPORTS})")

    p = sub.add_parser(
        "export",
        parents=[common],
        help="write OSS-Fuzz / ClusterFuzzLite targets: a project layout and one libFuzzer target each",
        description="Write an OSS-Fuzz project folder (oss-fuzz DIR: project.yaml, Dockerfile, "
        "build.sh) or a ClusterFuzzLite setup (clusterfuzzlite REPO: REPO/.clusterfuzzlite/), with "
        "per target (arch x revision x cpus, with the loaded plugin set and --ops focus) "
        "<name>_fuzzer.py, .options, .dict, a seed corpus zip of its campaign corpus, and "
        "fuzzkit-targets.json mapping names back to targets for 'fuzzkit import'. A finding "
        "raises an exception whose message begins with the bug title, so ClusterFuzz files "
        "and deduplicates fuzzkit's bugs.",
    )
    p.add_argument("form", choices=("oss-fuzz", "clusterfuzzlite"), help="which system the layout is for")
    p.add_argument(
        "dir",
        type=Path,
        metavar="DIR",
        help="the OSS-Fuzz project folder, or the repository for ClusterFuzzLite",
    )
    p.add_argument("--arch", default="all", help="a loaded arch or all (every loaded arch, the default)")
    p.add_argument(
        "--revision",
        default="all",
        help="a registered code revision (R4) or all (every one, the default)",
    )
    p.add_argument(
        "--cpus", type=int, action="append", metavar="N", help="emulated CPUs, repeatable (default 2)"
    )
    p.add_argument(
        "--ops",
        action="append",
        default=[],
        metavar="PATTERN",
        help="focus the targets on these ops, as fuzz does",
    )
    p.add_argument(
        "--corpus",
        type=Path,
        default=CORPORA,
        help=f"seed corpora come from CORPUS/<target>/ (default {CORPORA}, as fuzz writes them)",
    )
    p.add_argument("--repo", metavar="URL", help="git URL the OSS-Fuzz build clones fuzzkit from (oss-fuzz)")
    p.add_argument("--contact", metavar="EMAIL", help="project.yaml primary_contact (oss-fuzz)")

    p = sub.add_parser(
        "import",
        parents=[common],
        help="turn a ClusterFuzz testcase (raw bytes) of an exported target into a program file",
        description="Decode the testcase exactly as the exported target did, run it once, and "
        "write the program (its recorded choices and finding title) to OUT; a finding is then "
        "triaged into the reports folder like a local one. Exit 1 when it reproduces a bug, "
        "0 when it runs clean, 3 when plugin code raised on it.",
    )
    p.add_argument("file", type=Path, metavar="CRASH_FILE")
    p.add_argument(
        "--target", required=True, metavar="NAME", help="the target's name (a '_fuzzer' suffix is fine)"
    )
    p.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="the export's fuzzkit-targets.json (or its folder); without it only a plain "
        "<arch>-<revision>-<N>cpu name is understood, with the loaded plugins",
    )
    p.add_argument("-o", "--output", type=Path, help="program file to write (default CRASH_FILE.json)")
    p.add_argument("--reports", type=Path, default=REPORTS, help=f"reports folder (default {REPORTS})")
    p.add_argument("--no-triage", action="store_true", help="write the program only; no dedup or report")

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
        "status",
        parents=[common],
        help="what each campaign worker is doing or did: running, executions, coverage, bugs",
        description="Read the stats series of every worker that ran in DIR (DIR/campaign/<target>/"
        "w<N>.jsonl), while the campaign runs or after it stopped: per target and worker, "
        "running or not, uptime, executions, executions/s, corpus, coverage, bugs of the current "
        "run (and how many were new), and how long ago coverage last grew and a new bug was "
        "found. Exit 0; 2 when no campaign ran in DIR.",
    )
    p.add_argument("dir", nargs="?", type=Path, default=REPORTS, help=f"reports folder (default {REPORTS})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--watch",
        action="store_true",
        help=f"redraw every {STATUS_SECONDS:.0f}s until no worker runs any more (or Ctrl-C)",
    )
    p.add_argument("--page", action="store_true", help="also rewrite DIR/campaign.html from the series")

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
    p.add_argument(
        "--bugs",
        action="store_true",
        help="time to bug instead: fuzz each seeded bug (fuzzkit_seeded.library) with five seeds "
        "per engine on a fixed execution budget, unfocused; found-rate and median executions to "
        "first hit per bug",
    )
    p.add_argument("--bug", action="append", default=[], metavar="NAME", help="with --bugs: only this bug")
    p.add_argument(
        "--engine",
        action="append",
        default=[],
        choices=["atheris", "hypothesis"],
        help="with --bugs: only this engine (default: both; atheris where it is installed)",
    )

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="a design variant against the baseline: same budget and seeds, one table of bugs",
        description="Fuzz with the variant (every -p NAME plugin that replaces a primitive) and "
        "without it, one worker per target and campaign, SEEDS campaigns each with the seeds "
        "SEED, SEED+1, ..., each into a scratch reports folder. Prints the bugs found only with "
        "the variant (a bug that needs it is titled ', needs VARIANT'), in both, and only in the "
        "baseline, with the executions to the first hit per seed. Exit 1 when the variant "
        "found a bug the baseline did not.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    _target_args(p)
    p.add_argument("--runs", type=int, default=None, help="executions or examples per campaign")
    p.add_argument("--seeds", type=int, default=3, help="campaigns per side (default 3)")
    p.add_argument("--seed", type=int, default=1, help="the first seed (default 1)")
    p.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help="keep the campaigns' folders in DIR"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = args.plugin_flags + getattr(args, "sub_plugin_flags", [])
    return flags


def _registry(args: argparse.Namespace) -> Registry:
    return registry_from_flags(_flags(args))


def cmd_plugins(args: argparse.Namespace) -> int:
    from fuzzkit.describe import describe, render

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
        doc: dict[str, Any] = {"plugins": out, "op_table": reg.fingerprint()}
        if args.verbose:
            doc["contract"] = describe(reg)
        print(json.dumps(doc, indent=2))
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
    if args.verbose:
        print("\n" + render(describe(reg)))
    return EXIT_CLEAN


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from fuzzkit.scaffold import new_plugin

    root = new_plugin(args.name, args.kind, args.dir)
    print(f"wrote {printable(str(root))}: pyproject.toml, {args.name}/, tests/")
    print(f"next: cd {printable(str(root))} && pip install -e . && python -m pytest")
    return EXIT_CLEAN


def cmd_replay(args: argparse.Namespace) -> int:
    session = Session(_registry(args))
    worst = EXIT_CLEAN
    docs: list[dict[str, Any]] = []
    for path in args.files:
        prog = load(path)
        result = session.run(prog, trace=True, source=str(path))
        worst = max(worst, EXIT_FOUND if result.finding else EXIT_CLEAN)
        if args.json:
            docs.append(
                {
                    "file": str(path),
                    "config": {"arch": prog.arch, "revision": prog.revision, "cpus": prog.cpus},
                    "steps": result.steps,
                    "results": {str(k): jsonable(v) for k, v in sorted(result.results.items())},
                    "finding": result.finding.to_json() if result.finding else None,
                    "trace": trace_json(result.trace or []),
                }
            )
            continue
        print(
            f"== {printable(str(path))} ({prog.arch}, {prog.revision}, "
            f"{prog.cpus} cpu{'s' if prog.cpus > 1 else ''})"
        )
        if prog.description:
            print(printable(prog.description))
        print()
        print(ops_table(prog, result))
        if not args.no_trace:
            print()
            print(trace_table(result.trace or [], prog.cpus))
        print()
        if result.finding:
            f = result.finding
            print(f"FINDING: {printable(f.title)}  (cpu{f.cpu}, step {f.step})")
        else:
            print(f"clean: no invariant violated in {result.steps} steps")
        print()
    if args.json:
        print(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
    return worst


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzzkit.campaign_page import CampaignPage
    from fuzzkit.engines.base import engine as pick_engine
    from fuzzkit.engines.campaign import Target
    from fuzzkit.engines.supervisor import fuzz
    from fuzzkit.progress import Progress

    jobs = default_jobs() if args.jobs is None else args.jobs
    for flag, value, low in (("--jobs", jobs, 1), ("--runs", args.runs, 1), ("--cpus", args.cpus, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if args.time is not None and not args.time > 0:
        raise ConfigError(f"--time must be a positive number of seconds, got {args.time}")
    eng = pick_engine(args.engine)
    session = Session(_registry(args))
    arches = sorted(session.registry.arches) if args.arch == "all" else [args.arch]
    targets = [Target(arch, args.revision, args.cpus, tuple(args.ops)) for arch in arches]
    workers = max(jobs, len(targets))
    print(
        f"fuzzing {', '.join(t.name for t in targets)} with {eng.name}: {workers} worker(s), "
        f"{min(jobs, workers)} at a time, on {default_jobs()} CPU(s)",
        flush=True,
    )
    print(f"   reports: {args.reports}; progress every {PROGRESS_SECONDS:.0f}s; Ctrl-C stops", flush=True)
    progress, page = Progress(), CampaignPage(args.reports)
    try:
        result = fuzz(
            eng,
            session,
            targets,
            reports=args.reports,
            corpora=args.corpus,
            jobs=jobs,
            seed=args.seed,
            runs=args.runs,
            seconds=args.time,
            plugin_flags=_flags(args),
            libfuzzer_args=args.libfuzzer,
            database=args.database,
            observers=[progress, page, *_hook_observers(session)],
        )
    finally:
        progress.close()
    print()
    print(f"campaign page: {page.close()}; 'fuzzkit status' tells what each worker did")
    for failure in result.plugin_failures:
        print(f"fuzzkit: plugin failure: {failure['message']}", file=sys.stderr)
        if failure.get("file"):
            print(f"   reproduce: fuzzkit replay {failure['file']}", file=sys.stderr)
    for message in result.engine_failures:
        print(f"fuzzkit: engine failure: {message}", file=sys.stderr)
    if result.interrupted:
        print("interrupted: everything found so far is recorded", flush=True)
    if not result.findings:
        if result.exit_code == EXIT_CLEAN:
            print(
                "no findings. Run longer (--runs, --time), on more targets (--arch all, --revision), or aim "
                "it (--ops)."
            )
        return result.exit_code
    from fuzzkit.triage.store import BugStore

    store = BugStore.load(args.reports)
    new = {f["slug"] for f in result.findings if f.get("new")}
    known = {f["slug"] for f in result.findings if f.get("known")}
    rows = []
    for slug_ in dict.fromkeys(f["slug"] for f in result.findings if f.get("slug")):
        bug = store.by_slug(slug_)
        if bug is not None:
            status = "new" if slug_ in new else "known.json" if slug_ in known else "seen before"
            rows.append([bug.title, status, bug.count, args.reports / slug_])
    print(tabulate(rows, headers=["bug", "", "seen", "report"], tablefmt="simple"))
    print(f"\nindex: {args.reports / 'index.md'}; regression tests: pytest {args.reports}/*/test_*.py")
    if result.triaged is None:
        print("bundles not written (stopped at once): 'fuzzkit report' writes them")
    return result.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from fuzzkit.progress import show_status

    show_status(args.dir, as_json=args.json, watch=args.watch, page=args.page, every=STATUS_SECONDS)
    return EXIT_CLEAN


def _hook_observers(session: Session) -> list[Any]:
    """Plugins' ``fuzzkit_campaign_event`` implementations, each failing in its own name."""

    def bind(plugin: str, fn: Any) -> Any:
        def observe(event: dict[str, Any]) -> None:
            try:
                fn(event=event)
            except Exception as exc:
                raise PluginError(
                    f"{session.registry.culprit(plugin)}: fuzzkit_campaign_event raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

        return observe

    return [bind(plugin, fn) for plugin, fn in session.registry.campaign_observers]


def cmd_export(args: argparse.Namespace) -> int:
    from fuzzkit.export.oss_fuzz import export
    from fuzzkit.export.target import FuzzTarget
    from fuzzkit.plugins import AUTOLOAD_ENV

    flags = tuple(_flags(args))
    autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    reg = _registry(args)
    arches = tuple(sorted(reg.arches)) if args.arch == "all" else (args.arch,)
    revisions = reg.revision_names() if args.revision == "all" else (args.revision,)
    targets = [
        FuzzTarget(arch, revision, cpus, flags, tuple(args.ops), autoload=autoload)
        for arch in arches
        for revision in revisions
        for cpus in args.cpus or [2]
    ]
    done = export(args.form, args.dir, targets, corpora=args.corpus, repo=args.repo, contact=args.contact)
    print(f"wrote {done.folder}: project.yaml, Dockerfile, build.sh, fuzzkit-targets.json and")
    rows = [
        [t.fuzzer, done.corpora[t.name] or "none yet (fuzz it first for a seed corpus)"] for t in done.targets
    ]
    print(tabulate(rows, headers=["target", "seed corpus from"], tablefmt="simple"))
    if args.form == "oss-fuzz":
        print(
            f"\nbuild and run with the OSS-Fuzz helper (in an OSS-Fuzz checkout, {done.folder.name} "
            f"under projects/):\n  python infra/helper.py build_fuzzers {done.folder.name}\n"
            f"  python infra/helper.py run_fuzzer {done.folder.name} {done.targets[0].fuzzer}"
        )
    else:
        print("\ncommit .clusterfuzzlite/ and add the ClusterFuzzLite workflow of your CI")
    manifest = done.folder / "fuzzkit-targets.json"
    print(f"a testcase back: fuzzkit import TESTCASE --target NAME --manifest {manifest}")
    return EXIT_CLEAN


def cmd_import(args: argparse.Namespace) -> int:
    from fuzzkit.export.target import find_target
    from fuzzkit.export.testcase import import_testcase
    from fuzzkit.program import save

    flags = _flags(args)
    target = find_target(args.target, args.manifest, flags)
    out = args.output or args.file.with_name(args.file.name + ".json")
    if out.exists():
        raise FuzzkitError(f"{out}: exists; pass -o to write the program elsewhere")
    imported = import_testcase(args.file, target)
    save(imported.program, out)
    replay = " ".join(["fuzzkit", *(f"-p {flag}" for flag in target.plugins), "replay", str(out)])
    print(f"written: {out} ({target.name}, {len(imported.program.ops)} ops)")
    if imported.crash is not None:
        print(f"PLUGIN FAILURE: {imported.crash}\nreplay it: {replay}")
        return EXIT_FAILURE
    if imported.finding is None:
        print(f"clean: the testcase runs without a finding here\nreplay it: {replay}")
        return EXIT_CLEAN
    print(f"FINDING: {imported.finding.title}")
    if not args.no_triage:
        from fuzzkit.triage import triage

        session, _, _ = target.load()
        for bug in triage(session, [(str(out), imported.program)], args.reports).bugs:
            print(f"{'new' if bug.new else 'known'} bug, report: {bug.bundle or args.reports / bug.bug.slug}")
    print(f"replay it: {replay}")
    return EXIT_FOUND


def cmd_corpus(args: argparse.Namespace) -> int:
    from fuzzkit.engines.campaign import Target
    from fuzzkit.engines.corpus import merge

    if args.action == "prune" and args.sources:
        raise ConfigError("corpus prune takes no folders; 'corpus merge DIR...' adds folders")
    if args.action == "merge" and not args.sources:
        raise ConfigError("corpus merge needs at least one folder of inputs to merge in")
    session = Session(_registry(args))
    arches = sorted(session.registry.arches) if args.arch == "all" else [args.arch]
    targets = [Target(arch, args.revision, args.cpus, tuple(args.ops)) for arch in arches]
    for target in targets:
        target.kernel(session)  # every target is checked before any corpus changes
    for target in targets:
        done = merge(
            session,
            target,
            corpora=args.corpus,
            reports=args.reports,
            sources=args.sources,
            plugin_flags=_flags(args),
        )
        print(f"{done.corpus}: {done.before:,} inputs before, {done.after:,} after (log: {done.log})")
    return EXIT_CLEAN


def cmd_minimize(args: argparse.Namespace) -> int:
    from fuzzkit.triage import DEFAULT_BUDGET, minimize_file

    if args.budget is not None and args.budget < 1:
        raise FuzzkitError(f"--budget: must be at least 1 replay, got {args.budget}")
    out = args.output or args.file.with_name(args.file.name.removesuffix(".json") + ".min.json")
    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    result = minimize_file(Session(_registry(args)), args.file, out, budget=budget)
    print(result.summary())
    print(f"written: {printable(str(out))}")
    return EXIT_CLEAN


def cmd_report(args: argparse.Namespace) -> int:
    from fuzzkit.triage import recheck, render_index
    from fuzzkit.triage.pipeline import absorb, bundle_pending

    session = Session(_registry(args))
    if args.dir.is_dir():  # findings a stopped campaign left unrecorded or unbundled
        for done in absorb(session, args.dir):
            print(f"recorded: {printable(done.bug.title)}", flush=True)
        for entry in bundle_pending(session, args.dir):
            print(f"bundled: {printable(entry.bug.title)}", flush=True)
    store = recheck(session, args.dir)
    print(printable(render_index(store, "simple"), newlines=True))
    print(f"\nwritten: {printable(str(args.dir / 'index.md'))}")
    return EXIT_FOUND if any(b.status == "still reproduces" for b in store.bugs) else EXIT_CLEAN


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
                printable(path.name),
                f"{prog.arch}/{prog.revision}",
                prog.cpus,
                result.steps,
                printable(result.finding.title) if result.finding else "clean",
            ]
        )
    print(tabulate(rows, headers=["program", "config", "cpus", "steps", "outcome"], tablefmt="simple"))
    print(
        f"\n{len(files)} programs replayed, {found} with findings. "
        f"Replay one with its trace: fuzzkit replay {printable(str(files[0]))}"
    )
    return EXIT_FOUND if found else EXIT_CLEAN


def cmd_bench_bugs(args: argparse.Namespace) -> int:
    import importlib.util

    from fuzzkit import bench_bugs

    bugs = bench_bugs.library()
    unknown = sorted(set(args.bug) - {b.name for b in bugs})
    if unknown:
        raise ConfigError(f"--bug '{unknown[0]}' is no seeded bug; bugs: {', '.join(b.name for b in bugs)}")
    bugs = [b for b in bugs if not args.bug or b.name in args.bug]
    engines = args.engine or ["atheris", "hypothesis"]
    if importlib.util.find_spec("atheris") is None and "atheris" in engines:
        if args.engine:
            raise ConfigError("--engine atheris: atheris is not installed here")
        engines.remove("atheris")
        print("atheris: skipped (not installed)", file=sys.stderr, flush=True)

    def progress(t: bench_bugs.Trial) -> None:
        if not args.json:
            hit = f"hit at {t.execs}" if t.execs is not None else "missed"
            print(f"{t.bug} {t.engine} seed {t.seed}: {hit}", flush=True)

    result = bench_bugs.summary(bench_bugs.run(bugs, engines, progress=progress))
    print(json.dumps(result, indent=2) if args.json else "\n" + bench_bugs.table(result))
    return EXIT_CLEAN


def cmd_bench(args: argparse.Namespace) -> int:
    from fuzzkit.bench import emulator_throughput, memory

    if args.bugs:
        return cmd_bench_bugs(args)

    reg = _registry(args)
    session = Session(reg)
    if not (args.arch or reg.arches):
        raise ConfigError("no arch plugin is loaded: nothing to measure")
    arch = args.arch or sorted(reg.arches)[0]
    revision = reg.default_revision()
    figures = []
    for cpus in (1, 2):
        fig = emulator_throughput(session, arch, revision, cpus, args.programs)
        figures.append(fig)
        if not args.json:
            print(
                f"{fig.name}, {cpus} cpu: {fig.steps_per_second:,.0f} steps/s (median of "
                f"{len(fig.rounds)} rounds, {fig.range[0]:,.0f}-{fig.range[1]:,.0f}; {fig.steps} steps, "
                f"{fig.programs} programs, {fig.findings} with findings)",
                flush=True,
            )
    engines: dict[str, float] = {}
    if not args.no_engines:
        from fuzzkit.bench import hypothesis_throughput
        from fuzzkit.engines import atheris_engine
        from fuzzkit.engines.campaign import Target

        flags = _flags(args)
        rounds: list[float] = []
        paired: list[float] = []
        target = Target(arch, revision, 2)
        try:
            rounds = atheris_engine.bench(target, 1000, flags)
            # Aggregate executions per second of a campaign with --jobs 2: two workers on the
            # same rounds at once, each round's figure their sum.
            paired = atheris_engine.bench(target, 1000, flags, workers=2)
        except FuzzkitError as exc:
            print(f"atheris: skipped ({exc})", flush=True)
        if rounds:
            engines["atheris_exec_per_second"] = statistics.median(rounds)
            engines["atheris_exec_per_second_lowest"] = min(rounds)
            engines["atheris_exec_per_second_highest"] = max(rounds)
        if paired:
            engines["atheris_jobs2_exec_per_second"] = statistics.median(paired)
            engines["jobs2_speedup"] = (
                engines["atheris_jobs2_exec_per_second"] / engines["atheris_exec_per_second"]
            )
            if not args.json:
                print(
                    f"atheris with --jobs 2: {engines['atheris_jobs2_exec_per_second']:,.0f} exec/s in all "
                    f"(median of {len(paired)} rounds, {min(paired):,.0f}-{max(paired):,.0f}), "
                    f"{engines['jobs2_speedup']:.2f}x --jobs 1",
                    flush=True,
                )
        engines["hypothesis_examples_per_second"] = hypothesis_throughput(
            session, arch, revision, 2, 200
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
                {
                    "figures": [f.to_json() for f in figures],
                    "engines": engines,
                    "memory": [f.to_json() for f in mem],
                },
                indent=2,
            )
        )
    return EXIT_CLEAN


def cmd_compare(args: argparse.Namespace) -> int:
    from fuzzkit.compare import ONLY_VARIANT, compare
    from fuzzkit.engines.base import engine as pick_engine
    from fuzzkit.engines.campaign import Target

    for flag, value in (("--runs", args.runs), ("--seeds", args.seeds), ("--cpus", args.cpus)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.keep is not None and args.keep.exists():
        raise ConfigError(f"{args.keep}: --keep names an existing path; give a new folder")
    eng = pick_engine(args.engine)
    flags = _flags(args)
    arches = sorted(registry_from_flags(flags).arches) if args.arch == "all" else [args.arch]
    targets = [Target(arch, args.revision, args.cpus, tuple(args.ops)) for arch in arches]
    result = compare(
        eng,
        flags,
        targets,
        runs=args.runs,
        seeds=args.seeds,
        first_seed=args.seed,
        scratch=args.keep,
        progress=lambda what: print(f"fuzzing: {what}", file=sys.stderr, flush=True),
    )
    for name, side in result.sides.items():
        for message in side.plugin_failures:
            print(f"fuzzkit: plugin failure ({name}): {message}", file=sys.stderr)
        for message in side.engine_failures:
            print(f"fuzzkit: engine failure ({name}): {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"variant: {', '.join(result.variant)}; {eng.name}, {', '.join(t.name for t in targets)}")
        print(printable(result.table(), newlines=True))
    if any(side.plugin_failures or side.engine_failures for side in result.sides.values()):
        return EXIT_FAILURE
    return EXIT_FOUND if any(where == ONLY_VARIANT for _, where in result.rows()) else EXIT_CLEAN


COMMANDS = {
    "plugins": cmd_plugins,
    "new-plugin": cmd_new_plugin,
    "replay": cmd_replay,
    "fuzz": cmd_fuzz,
    "compare": cmd_compare,
    "export": cmd_export,
    "import": cmd_import,
    "corpus": cmd_corpus,
    "minimize": cmd_minimize,
    "report": cmd_report,
    "status": cmd_status,
    "known": cmd_known,
    "run": cmd_run,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # A libFuzzer flag is one dash and a name (-max_len=64); anything else fuzzkit does not
    # know is a mistyped option of its own (--corpora), not a word for libFuzzer to take as a
    # corpus folder.
    passed = [*extra, *getattr(args, "libfuzzer", [])]
    stray = [a for a in passed if args.command != "fuzz" or not LIBFUZZER_FLAG.match(a)]
    if stray:
        hint = "; libFuzzer flags look like -name=value" if args.command == "fuzz" else ""
        parser.error(f"unrecognized arguments: {' '.join(stray)}{hint}")
    args.libfuzzer = passed
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except (PluginFailure, PluginError) as exc:
        print(f"fuzzkit: plugin failure: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except EngineFailure as exc:
        print(f"fuzzkit: engine failure: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except FuzzkitError as exc:
        print(f"fuzzkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fuzzkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: stop quietly, as cat does
        sys.stderr.close()
        return EXIT_CLEAN

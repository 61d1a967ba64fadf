"""``fuzzkit bench --bugs``: how soon each engine reaches each bug of the seeded library
(:mod:`fuzzkit_seeded.library`), the "is it good at its job" benchmark.

Each bug is fuzzed unfocused (no ``--ops``), one worker, triage off, into a temporary folder,
with five seeds per engine on a fixed execution budget: atheris 20,000 executions,
hypothesis 300 examples (its default campaign; an example is a whole program replayed
after each of its rules, then its depth-one injection and schedule searches: up to a few
hundred runs, against one run per libFuzzer execution). Executions are counted, never
timed, so the figures
are the same on a busy machine and an idle one, seed for seed. A campaign stops at the
first finding whose title is the bug's; executions to first hit are the engine's count at
that finding. A seed that misses counts as never (it sorts after every hit), so a median
over seeds that mostly missed is itself a miss.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzzkit.engines.campaign import Target
from fuzzkit.engines.supervisor import fuzz
from fuzzkit.errors import EngineFailure, PluginError
from fuzzkit.plugins import registry_from_flags
from fuzzkit.runner import Session

SEEDS = (1, 2, 3, 4, 5)
#: Executions (atheris) or examples (hypothesis) per campaign.
BUDGETS = {"atheris": 20_000, "hypothesis": 300}
LIBRARY = "fuzzkit_seeded.library"


@dataclass(frozen=True)
class Trial:
    bug: str
    engine: str
    seed: int
    budget: int
    #: Executions to the first finding that is the bug; None when the budget ran out first.
    execs: int | None


def library() -> Sequence[Any]:
    """The seeded bugs (:class:`fuzzkit_seeded.library.SeededBug`)."""
    bugs: Sequence[Any] = importlib.import_module(LIBRARY).BUGS
    return bugs


def engine_named(name: str) -> Any:
    if name == "atheris":
        from fuzzkit.engines.atheris_engine import AtherisEngine

        return AtherisEngine()
    from fuzzkit.engines.hypothesis_engine import HypothesisEngine

    return HypothesisEngine()


def trial(bug: Any, engine: str, seed: int, budget: int, folder: Path) -> Trial:
    """One campaign on ``bug``: executions to its first hit, or None."""
    flags = list(bug.plugins)
    hits: list[int] = []

    def is_bug(event: dict[str, Any]) -> bool:
        if bug.matches(str(event.get("title", ""))):
            hits.append(int(event.get("execs", 0)))
            return True
        return False

    result = fuzz(
        engine_named(engine),
        Session(registry_from_flags(flags)),
        [Target(bug.arch, bug.revision, bug.cpus)],
        reports=folder / "reports",
        corpora=folder / "corpus",
        seed=seed,
        runs=budget,
        plugin_flags=flags,
        triage=False,
        until=is_bug,
    )
    where = f"seeded bug '{bug.name}' with {engine}, seed {seed}"
    kept = f"(the campaign's folder is kept: {folder})"
    if result.plugin_failures:
        raise PluginError(f"{where}: {result.plugin_failures[0].get('message')} {kept}")
    if result.engine_failures:
        # The engine's own process died (a libFuzzer crash exit, a signal): no plugin to blame.
        raise EngineFailure(f"{where}: {'; '.join(result.engine_failures)} {kept}")
    if result.interrupted and not hits:
        # SIGINT or SIGTERM stopped the campaign, not its budget: no figure to report.
        raise KeyboardInterrupt
    return Trial(bug.name, engine, seed, budget, min(hits) if hits else None)


def run(
    bugs: Sequence[Any],
    engines: Sequence[str],
    *,
    seeds: Sequence[int] = SEEDS,
    budgets: dict[str, int] | None = None,
    progress: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    budgets = {**BUDGETS, **(budgets or {})}
    out = []
    for bug in bugs:
        for engine in engines:
            for seed in seeds:
                folder = Path(tempfile.mkdtemp(prefix="fuzzkit-bench-bugs-"))
                keep = False
                try:
                    t = trial(bug, engine, seed, budgets[engine], folder)
                except (PluginError, EngineFailure):
                    keep = True  # the failing program and the worker's log are in it
                    raise
                finally:
                    if not keep:
                        shutil.rmtree(folder, ignore_errors=True)
                out.append(t)
                if progress is not None:
                    progress(t)
    return out


def median_hit(execs: Sequence[int | None]) -> int | None:
    """The median with misses sorted after every hit (the lower middle of an even count);
    None when that median is a miss."""
    if not execs:
        return None
    ordered = sorted(execs, key=lambda e: (e is None, e or 0))
    return ordered[(len(ordered) - 1) // 2]


def summary(trials: Sequence[Trial]) -> dict[str, Any]:
    """Per bug and engine: found-rate and median executions to first hit; per engine the
    median over the whole library."""
    rows: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        rows.setdefault((t.bug, t.engine), []).append(t)
    per_bug = [
        {
            "bug": bug,
            "engine": engine,
            "budget": ts[0].budget,
            "found": sum(t.execs is not None for t in ts),
            "seeds": len(ts),
            "median_execs": median_hit([t.execs for t in ts]),
            "execs": [t.execs for t in ts],
        }
        for (bug, engine), ts in rows.items()
    ]
    engines = sorted({t.engine for t in trials})
    overall = {e: median_hit([t.execs for t in trials if t.engine == e]) for e in engines}
    return {"bugs": per_bug, "library_median_execs": overall}


def table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    def cell(v: int | None) -> str:
        return "miss" if v is None else str(v)

    rows = [
        [r["bug"], r["engine"], r["budget"], f"{r['found']}/{r['seeds']}", cell(r["median_execs"]),
         " ".join(cell(e) for e in r["execs"])]
        for r in result["bugs"]
    ]
    text = tabulate(rows, headers=["bug", "engine", "budget", "found", "median execs", "per seed"])
    medians = ", ".join(f"{e} {cell(v)}" for e, v in result["library_median_execs"].items())
    return f"{text}\n\nmedian executions to first hit over the library: {medians}"

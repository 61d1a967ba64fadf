"""``fuzzkit compare``: a design variant against the baseline, on the same budget and seeds.

For each of ``seeds`` seeds, one campaign of one worker per target runs with the variant
loaded and one without it, each into a scratch reports folder and corpus of its own (never
the user's ``reports/``), so every seed is an independent search and the two sides of a
seed differ only in the variant. Findings are recorded by the workers as in any campaign,
so each is known by its triaged bug title: a bug that needs the variant carries ``, needs
VARIANT`` (:mod:`fuzzkit.triage.attribution`) and can only be found on the variant's side,
while one that also shows without it has the baseline's title and, when the baseline
campaign finds it too, lands in "both".

The variant is every ``-p NAME`` plugin that replaces a primitive; the baseline is the same
flags without them (an installed variant is disabled with ``-p no:NAME``). The other flags
(``-p no:scx``, ...) apply to both sides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from fuzzkit.engines.base import Engine, Event
from fuzzkit.engines.campaign import Target
from fuzzkit.errors import ConfigError
from fuzzkit.plugins import installed, registry_from_flags
from fuzzkit.runner import Session

VARIANT, BASELINE = "variant", "baseline"
ONLY_VARIANT, BOTH, ONLY_BASELINE = "only with the variant", "in both", "only in the baseline"


@dataclass
class Side:
    """One side's campaigns: the executions to the first hit of each bug, per seed."""

    flags: list[str]
    #: Bug title -> seed -> executions to its first hit in that seed's campaign.
    hits: dict[str, dict[int, int]] = field(default_factory=dict)
    plugin_failures: list[str] = field(default_factory=list)
    engine_failures: list[str] = field(default_factory=list)

    def add(self, seed: int, event: Event) -> None:
        title = event.get("bug") or event["title"]
        per_seed = self.hits.setdefault(title, {})
        per_seed[seed] = min(per_seed.get(seed, event["execs"]), event["execs"])


@dataclass
class Comparison:
    variant: list[str]
    seeds: list[int]
    sides: dict[str, Side]

    def rows(self) -> list[tuple[str, str]]:
        """(bug, where) for every bug either side found: the variant's first, then both,
        then the baseline's, each in title order."""
        found = {name: set(side.hits) for name, side in self.sides.items()}
        order = (
            (ONLY_VARIANT, found[VARIANT] - found[BASELINE]),
            (BOTH, found[VARIANT] & found[BASELINE]),
            (ONLY_BASELINE, found[BASELINE] - found[VARIANT]),
        )
        return [(title, where) for where, titles in order for title in sorted(titles)]

    def first_hits(self, side: str, title: str) -> str:
        """Executions to the first hit per seed, ``-`` for a seed that did not find it."""
        per_seed = self.sides[side].hits.get(title, {})
        return " ".join(str(per_seed[s]) if s in per_seed else "-" for s in self.seeds)

    def table(self, tablefmt: str = "simple") -> str:
        rows = [
            [where, title, self.first_hits(VARIANT, title), self.first_hits(BASELINE, title)]
            for title, where in self.rows()
        ]
        seeds = ", ".join(map(str, self.seeds))
        headers = ["", "bug", f"variant: execs to first hit (seeds {seeds})", "baseline"]
        return tabulate(rows, headers=headers, tablefmt=tablefmt) if rows else "no bugs on either side"

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": list(self.variant),
            "seeds": list(self.seeds),
            "bugs": [
                {
                    "title": title,
                    "where": where,
                    **{
                        name: {str(s): n for s, n in side.hits.get(title, {}).items()}
                        for name, side in self.sides.items()
                    },
                }
                for title, where in self.rows()
            ],
        }


def split_flags(flags: Sequence[str]) -> tuple[list[str], list[str]]:
    """The variant (every ``-p NAME`` whose plugin replaces a primitive) and the baseline's
    flags. A bad flag fails here, naming the plugin, before any campaign starts."""
    registry = registry_from_flags(flags)
    replacing = {rep.plugin for rep in registry.replacements.values()}
    variant = [f for f in flags if not f.startswith("no:") and f in replacing]
    if not variant:
        named = [f for f in flags if not f.startswith("no:")]
        why = f"none of {', '.join(named)} replaces a primitive" if named else "no -p NAME given"
        raise ConfigError(f"-p: compare needs a design variant, a plugin replacing a primitive ({why})")
    names = {name for name, *_ in installed()}
    baseline = [f for f in flags if f not in variant] + [f"no:{v}" for v in variant if v in names]
    return variant, baseline


def compare(
    engine: Engine,
    flags: Sequence[str],
    targets: Sequence[Target],
    *,
    runs: int | None,
    seeds: int,
    first_seed: int = 1,
    scratch: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Comparison:
    """Run the variant of ``flags`` and the baseline ``seeds`` times each on ``targets``
    (``runs`` executions per worker) and compare what they found. Campaign folders go under
    ``scratch`` (kept, for a look at the findings) or a temporary folder (removed)."""
    from fuzzkit.engines.supervisor import fuzz

    variant, baseline = split_flags(flags)
    sides = {VARIANT: Side(list(flags)), BASELINE: Side(baseline)}
    seed_list = [first_seed + k for k in range(seeds)]
    with tempfile.TemporaryDirectory(prefix="fuzzkit-compare-") as tmp:
        root = scratch if scratch is not None else Path(tmp)
        for name, side in sides.items():
            session = Session(registry_from_flags(side.flags))
            for seed in seed_list:
                progress(f"{name}, seed {seed}")
                folder = root / name / f"seed{seed}"
                result = fuzz(
                    engine,
                    session,
                    targets,
                    reports=folder / "reports",
                    corpora=folder / "corpus",
                    jobs=1,
                    seed=seed,
                    runs=runs,
                    plugin_flags=side.flags,
                    triage=False,
                )
                for event in result.findings:
                    side.add(seed, event)
                side.plugin_failures += [str(f["message"]) for f in result.plugin_failures]
                side.engine_failures += result.engine_failures
    return Comparison(variant, seed_list, sides)

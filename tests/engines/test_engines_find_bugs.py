"""Both engines find the merged revision's unallocatable slot and the sched_ext single-retry
variant's race with a fixed seed and a bounded number of executions; what they leave behind
replays to the same finding, and (for the variant) is clean under the real code.

A seed names one search over one op table and one list of injection points: when either
changes, or (atheris) the instrumented branches do, the search does and the seed is picked
again; the budget stays."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from fuzzkit import load_registry
from fuzzkit.engines.atheris_engine import AtherisEngine
from fuzzkit.engines.campaign import Target
from fuzzkit.engines.hypothesis_engine import campaign
from fuzzkit.engines.supervisor import fuzz
from fuzzkit.plugins import registry_from_flags
from fuzzkit.program import Program, load
from fuzzkit.runner import Session
from fuzzkit.triage import minimize

UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"
#: An arena bug is searched for with the arena's plugin set, so the budget below does not
#: depend on how many ops other subsystems add to the op table.
ARENA_ONLY = ["struct_ops", "scx"]


@pytest.fixture(scope="module")
def arena_session() -> Session:
    return Session(load_registry(disable=ARENA_ONLY))


def atheris_campaign(
    target: Target,
    tmp_path: Path,
    *,
    seed: int,
    runs: int,
    plugin_flags: list[str] | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """The findings of one atheris worker's campaign (no triage), as its events report them;
    the campaign stops at the first finding titled ``until``, if given (the executions it took
    are the same either way)."""
    flags = plugin_flags or []
    result = fuzz(
        AtherisEngine(),
        Session(registry_from_flags(flags)),
        [target],
        reports=tmp_path / "reports",
        corpora=tmp_path / "corpus",
        seed=seed,
        runs=runs,
        plugin_flags=flags,
        triage=False,
        until=None if until is None else (lambda event: event.get("title") == until),
    )
    assert not result.plugin_failures and not result.engine_failures
    return result.findings


def test_hypothesis_finds_the_merged_unallocatable_slot(arena_session: Session) -> None:
    session = arena_session
    found = campaign(session, Target("x86", "merged", 1), examples=400, seed=1, max_findings=1)
    assert [f.finding.title for f in found] == [UNALLOCATABLE]
    prog = found[0].program
    assert session.run(prog).finding == found[0].finding
    # A campaign leaves shrinking to triage. The bug needs three ops: an arena, a kernel fault
    # scratching a free slot, a best-fit allocation that lands on it.
    small = minimize(session, prog).program
    assert [c.op for c in small.ops] == ["arena.create", "arena.kernel_access", "arena.alloc"]


def test_hypothesis_is_quiet_on_the_fixed_revision_for_the_same_budget(arena_session: Session) -> None:
    found = campaign(arena_session, Target("x86", "fixed", 1), examples=150, seed=2, max_findings=1)
    assert UNALLOCATABLE.replace("merged", "fixed") not in [f.finding.title for f in found]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here")
def test_atheris_finds_the_merged_unallocatable_slot(arena_session: Session, tmp_path: Path) -> None:
    session = arena_session
    found = atheris_campaign(
        Target("x86", "merged", 1),
        tmp_path,
        plugin_flags=[f"no:{name}" for name in ARENA_ONLY],
        seed=2,
        runs=20_000,
        until=UNALLOCATABLE,
    )
    titles = [f["title"] for f in found]
    assert UNALLOCATABLE in titles
    path = Path(next(f["file"] for f in found if f["title"] == UNALLOCATABLE))
    replayed = session.run(load(path))
    assert replayed.finding is not None and replayed.finding.title == UNALLOCATABLE


# -- the sched_ext single-retry variant (R25) --------------------------------------------------------

#: The variant as an uninstalled plugin module, loaded by name in this process and in the
#: atheris engine's child alike.
SINGLE_RETRY = "variants.scx_single_retry"
GAVE_UP = "I16 scx_arena_alloc failed although the arena had room in scx.alloc (x86, fixed)"
#: The race needs a registered scheduler, two allocations larger than the pool's free space on
#: two CPUs, and a preemption in a window of two steps: the campaign is aimed at scx.alloc
#: (and, through the handles it takes, at what creates an arena, a map and a scheduler).
FOCUS = Target("x86", "fixed", 2, ("scx.alloc",))


@pytest.fixture(scope="module")
def retry_session() -> Session:
    return Session(load_registry(enable=[SINGLE_RETRY]))


def assert_variant_race(retry_session: Session, session: Session, program: Program) -> None:
    replayed = retry_session.run(program)
    assert replayed.finding is not None and replayed.finding.title == GAVE_UP
    assert len({c.cpu for c in program.ops}) == 2 and program.switches, "a race: two CPUs, a preemption"
    assert session.run(program).finding is None, "the real loop retries until it gets the space"


def test_hypothesis_finds_the_scx_single_retry_race(retry_session: Session, session: Session) -> None:
    found = campaign(retry_session, FOCUS, examples=400, seed=2)
    [failure] = [f for f in found if f.finding.title == GAVE_UP]
    assert_variant_race(retry_session, session, failure.program)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here")
def test_atheris_finds_the_scx_single_retry_race(
    retry_session: Session, session: Session, tmp_path: Path
) -> None:
    runs = 20_000
    found = atheris_campaign(FOCUS, tmp_path, plugin_flags=[SINGLE_RETRY], seed=3, runs=runs, until=GAVE_UP)
    [hit] = [f for f in found if f["title"] == GAVE_UP]
    assert hit["execs"] <= runs
    assert_variant_race(retry_session, session, load(Path(hit["file"])))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here")
def test_atheris_search_is_the_same_in_every_process(tmp_path: Path) -> None:
    # Two campaigns of one seed keep the same corpus, input for input: counter numbering,
    # string hashes, cycle collection and corpus reloads depend on neither the process nor
    # the clock (each of those once made two such runs part ways).
    kept = []
    for name in ("a", "b"):
        atheris_campaign(FOCUS, tmp_path / name, seed=9, runs=8_000)
        kept.append(sorted(p.name for p in (tmp_path / name / "corpus" / FOCUS.name).iterdir()))
    assert len(kept[0]) > 20 and kept[0] == kept[1]


# -- the arena issue's clear-callback variants (R7, R9, R17) ---------------------------------------

NO_SCRATCH_SKIP = "variants.arena_clear:no_scratch_skip"
READ_THEN_STORE = "variants.arena_clear:read_then_store"
SCRATCH_FREED = "I1 scratch page freed before destroy in arena.free (x86, fixed)"


def clear_variant(ref: str) -> Session:
    return Session(load_registry(disable=ARENA_ONLY, enable=[ref]))


def atheris_on_clear_variant(
    ref: str, cpus: int, seed: int, tmp_path: Path, until: str | None = None
) -> list[dict[str, Any]]:
    """What an atheris campaign of 20,000 runs finds with the arena plugins and variant ``ref``."""
    return atheris_campaign(
        Target("x86", "fixed", cpus),
        tmp_path,
        plugin_flags=[*(f"no:{name}" for name in ARENA_ONLY), ref],
        seed=seed,
        runs=20_000,
        until=until,
    )


def test_hypothesis_finds_the_clear_callback_that_frees_the_scratch_page(arena_session: Session) -> None:
    variant = clear_variant(NO_SCRATCH_SKIP)
    found = campaign(variant, Target("x86", "fixed", 1), examples=300, seed=1)
    [failure] = [f for f in found if f.finding.title == SCRATCH_FREED]
    assert variant.run(failure.program).finding == failure.finding
    assert arena_session.run(failure.program).finding is None, "the real callback skips scratch"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here")
def test_atheris_finds_the_clear_callback_that_frees_the_scratch_page(
    arena_session: Session, tmp_path: Path
) -> None:
    found = atheris_on_clear_variant(NO_SCRATCH_SKIP, 1, 3, tmp_path, until=SCRATCH_FREED)
    [hit] = [f for f in found if f["title"] == SCRATCH_FREED]
    program = load(Path(hit["file"]))
    assert clear_variant(NO_SCRATCH_SKIP).run(program).finding is not None
    assert arena_session.run(program).finding is None, "the real callback skips scratch"


@pytest.mark.quality  # a minute of fuzzing to show an absence: make test-quality
def test_neither_engine_finds_a_leak_in_the_plain_read_then_store_clear(tmp_path: Path) -> None:
    # The issue asked for a two-CPU program where a plain read-then-store clear leaks or keeps
    # a page mapped after free (I8, I2). The model says there is none: the clear runs under
    # the arena lock over present PTEs, and the only lock-free writer, the scratch installer,
    # writes into raw-zero PTEs only (explore checks every schedule of the races within three
    # preemptions in tests/arena/test_variants.py). The engines, given the budgets that find
    # the bugs above, agree. A finding either reports here (x86's stale scratch translation,
    # I9) is the real code's as well.
    found = campaign(clear_variant(READ_THEN_STORE), Target("x86", "fixed", 2), examples=300, seed=1)
    titles = [f.finding.title for f in found]
    if importlib.util.find_spec("atheris") is not None:
        titles += [f["title"] for f in atheris_on_clear_variant(READ_THEN_STORE, 2, 1, tmp_path)]
    assert not [t for t in titles if t.split()[0] in ("I8", "I2")], titles

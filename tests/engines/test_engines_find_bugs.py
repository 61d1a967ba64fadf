"""Both engines find the merged revision's unallocatable slot with a fixed seed and a bounded
number of executions; what they leave behind replays to the same finding."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fuzzkit import load_registry
from fuzzkit.engines import atheris_engine
from fuzzkit.engines.campaign import Target
from fuzzkit.engines.hypothesis_engine import campaign
from fuzzkit.program import load
from fuzzkit.runner import Session

UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"
#: An arena bug is searched for with the arena's plugin set, so the budget below does not
#: depend on how many ops other subsystems add to the op table.
ARENA_ONLY = ["struct_ops", "scx"]


@pytest.fixture(scope="module")
def arena_session() -> Session:
    return Session(load_registry(disable=ARENA_ONLY))


def test_hypothesis_finds_the_merged_unallocatable_slot(arena_session: Session) -> None:
    session = arena_session
    # A seed names one search over one op table and one list of injection points: when
    # either changes, the search does, and the seed is picked again (the budget stays).
    found = campaign(session, Target("x86", "merged", 1), examples=400, seed=5, max_findings=1)
    assert [f.finding.title for f in found] == [UNALLOCATABLE]
    prog = found[0].program
    # The bug needs three ops: an arena, a kernel fault scratching a free slot, a best-fit
    # allocation that lands on it. Hypothesis shrinks to exactly that.
    assert [c.op for c in prog.ops] == ["arena.create", "arena.kernel_access", "arena.alloc"]
    assert session.run(prog).finding == found[0].finding


def test_hypothesis_is_quiet_on_the_fixed_revision_for_the_same_budget(arena_session: Session) -> None:
    found = campaign(arena_session, Target("x86", "fixed", 1), examples=150, seed=2, max_findings=1)
    assert UNALLOCATABLE.replace("merged", "fixed") not in [f.finding.title for f in found]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here")
def test_atheris_finds_the_merged_unallocatable_slot(arena_session: Session, tmp_path: Path) -> None:
    session = arena_session
    run = atheris_engine.run(
        Target("x86", "merged", 1),
        corpus=tmp_path / "corpus",
        findings=tmp_path / "findings",
        plugin_flags=[f"no:{name}" for name in ARENA_ONLY],
        seed=2,
        runs=20_000,
        quiet=True,
    )
    assert run.returncode == 0
    titles = [f["title"] for f in run.found]
    assert UNALLOCATABLE in titles
    path = Path(next(f["file"] for f in run.found if f["title"] == UNALLOCATABLE))
    replayed = session.run(load(path))
    assert replayed.finding is not None and replayed.finding.title == UNALLOCATABLE

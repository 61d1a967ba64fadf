"""Differential attribution: a bug found with replaced primitives is replayed without them;
bugs.json, index.md and report.md say whether it needs the variant; a variant's bug never
merges with a baseline bug, minimizes to a program still clean on the baseline, carries the
variant's -p flag in its reproduce line, and is not called fixed once the variant is gone.

Two variants of the allocation path's set callback: the merged revision's
``apply_range_set_cb`` is the baseline on the merged revision (its unallocatable slot, I16, is
a baseline bug there) and a variant on the fixed one, where the same program then shows the
same invariant only with the variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from arena import test_invariants as inv
from arena import test_variants as var
from fuzzkit_arena import kernel
from helpers import program
from triage_helpers import NEEDS, OTHER_SUBSYSTEMS, arena_session, variant

from fuzzkit import load_registry
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, minimize, recheck, render_index, signature, triage

NOW = "2026-06-03T00:00:00+00:00"
UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, {})"
#: An arena, a kernel fault scratching free slot 0, a best-fit allocation landing on it (R4).
SCRATCH_THEN_ALLOC = [inv.CREATE, inv.kaccess(0), inv.alloc()]
NO_SCRATCH_SKIP = "variants.arena_clear:no_scratch_skip"


@pytest.fixture(scope="module")
def real() -> Session:
    return arena_session()


@pytest.fixture(scope="module")
def merged_set_cb() -> Session:
    return variant("apply_range_set_cb", kernel.apply_range_set_cb_merged)


def test_a_bug_that_also_shows_without_the_variant_is_a_baseline_bug(
    real: Session, merged_set_cb: Session, tmp_path: Path
) -> None:
    prog = program(SCRATCH_THEN_ALLOC, revision="merged")
    sig = signature(merged_set_cb, prog)
    assert sig is not None and sig.title == UNALLOCATABLE.format("merged")
    assert sig.also_without == ("variant",) and sig.needs == ()
    triage(real, [prog], tmp_path, now=NOW)
    assert BugStore.load(tmp_path).bugs[0].also_without == []
    triage(merged_set_cb, [prog], tmp_path, now=NOW)
    [bug] = BugStore.load(tmp_path).bugs
    assert bug.count == 2, "the variant campaign's occurrence merges with the baseline's"
    assert bug.to_json()["also_without"] == ["variant"] and bug.to_json()["needs"] == []
    assert "also without variant" in render_index(BugStore.load(tmp_path))


def test_a_bug_that_needs_the_variant_never_merges_with_the_baseline_bug(
    real: Session, merged_set_cb: Session, tmp_path: Path
) -> None:
    # The fixed revision's set callback skips the scratch page (R4); with the merged one back
    # the same three ops break I16 on the fixed revision, and only with it.
    on_fixed = program(SCRATCH_THEN_ALLOC)
    assert real.run(on_fixed).finding is None
    sig = signature(merged_set_cb, on_fixed)
    assert sig is not None and sig.title == UNALLOCATABLE.format("fixed") + NEEDS
    assert sig.needs == ("variant",) and sig.baseline == "clean"
    assert all(t.endswith(NEEDS) for t in sig.alt_titles)
    # The baseline's own I16 on the merged revision, recorded by the same variant campaign.
    triage(merged_set_cb, [on_fixed, program(SCRATCH_THEN_ALLOC, revision="merged")], tmp_path, now=NOW)
    store = BugStore.load(tmp_path)
    assert sorted((b.title, b.needs, b.also_without) for b in store.bugs) == [
        (UNALLOCATABLE.format("fixed") + NEEDS, ["variant"], []),
        (UNALLOCATABLE.format("merged"), [], ["variant"]),
    ]
    assert len({b.slug for b in store.bugs}) == 2
    reports = {b.needs == []: (tmp_path / b.slug / "report.md").read_text() for b in store.bugs}
    assert "- **variant**: also without variant: the same program replayed without it" in reports[True]
    assert "- **variant**: needs variant: the same program replayed without it" in reports[False]


def test_report_does_not_call_a_variant_bug_fixed_once_the_variant_is_gone(
    real: Session, merged_set_cb: Session, tmp_path: Path
) -> None:
    triage(merged_set_cb, [program(SCRATCH_THEN_ALLOC)], tmp_path, now=NOW)
    [bug] = recheck(real, tmp_path, now=NOW).bugs
    assert (bug.status, bug.note) == ("cannot replay", "needs plugin variant")
    [bug] = recheck(merged_set_cb, tmp_path, now=NOW).bugs
    assert bug.status == "still reproduces"


def test_the_minimizer_keeps_a_variant_bug_clean_on_the_baseline(
    real: Session, merged_set_cb: Session
) -> None:
    noisy = program([inv.CREATE, inv.alloc(9), inv.kaccess(0), inv.free(9), inv.kaccess(5), inv.alloc()])
    assert real.run(noisy).finding is None
    m = minimize(merged_set_cb, noisy)
    assert m.signature.needs == ("variant",) and m.signature.title == UNALLOCATABLE.format("fixed") + NEEDS
    assert len(m.program.ops) < len(noisy.ops)
    assert real.run(m.program).finding is None, "still clean on the baseline"


def test_reproduce_line_loads_a_variant_given_by_module_name(real: Session, tmp_path: Path) -> None:
    by_name = Session(load_registry(disable=OTHER_SUBSYSTEMS, enable=[NO_SCRATCH_SKIP]))
    triage(by_name, [program(var.FREE_SCRATCHED)], tmp_path, now=NOW)
    [bug] = BugStore.load(tmp_path).bugs
    assert bug.needs == [NO_SCRATCH_SKIP] and bug.title.endswith(f", needs {NO_SCRATCH_SKIP}")
    text = (tmp_path / bug.slug / "report.md").read_text()
    flags = text.split("## Reproduce")[1]
    assert f"-p {NO_SCRATCH_SKIP}" in flags.replace("\n    ", " ")
    assert f"The bug needs {NO_SCRATCH_SKIP}" in flags.replace("\n", " ")

"""The dedup store (reports/bugs.json): one record per bug with counts and first/last seen;
races merge through alternative titles; a malformed or foreign file is an error naming the
file and field, and is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arena import test_invariants as inv
from helpers import program
from triage_helpers import (
    ALLOC_COMPLETES_LAST,
    FIRES_IN_ALLOC,
    FIRES_IN_FREE,
    RACE_OPS,
    arena_session,
    variant,
)

from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, TriageError, signature, triage

T1, T2 = "2026-06-01T10:00:00+00:00", "2026-06-02T10:00:00+00:00"


@pytest.fixture(scope="module")
def real() -> Session:
    return arena_session()


def merged_program(pgoff: int = 0):  # type: ignore[no-untyped-def]
    ops = [inv.CREATE, inv.kaccess(pgoff, insn="store"), inv.alloc()]
    return program(ops, revision="merged")


def test_same_title_is_one_bug_counted_with_first_and_last_seen(real: Session, tmp_path: Path) -> None:
    first = triage(real, [merged_program(), merged_program()], tmp_path, now=T1)
    assert [(t.new, t.occurrences) for t in first.bugs] == [(True, 2)]
    again = triage(real, [merged_program()], tmp_path, now=T2)
    assert [(t.new, t.occurrences, t.bundle) for t in again.bugs] == [(False, 1, None)]
    [bug] = BugStore.load(tmp_path).bugs
    assert (bug.count, bug.first_seen, bug.last_seen, bug.status) == (3, T1, T2, "new")
    assert bug.spec_id == "I16" and bug.op == "arena.alloc" and bug.primitive is None
    assert bug.minimized_size is not None and bug.minimized_size["ops"] == 3
    assert bug.original_size["ops"] == 3 and bug.minimize is not None and bug.minimize["complete"] is True


def test_I13_race_seen_from_both_sides_is_one_bug(tmp_path: Path) -> None:
    s = variant("apply_range_clear_cb", inv.clear_cb_drops_page)
    sides = [program(RACE_OPS, cpus=2, switches=sw) for sw in (FIRES_IN_FREE, FIRES_IN_ALLOC)]
    titles = {signature(s, p).title for p in sides}  # type: ignore[union-attr]
    assert len(titles) == 2
    result = triage(s, sides, tmp_path, now=T1)
    assert len(result.bugs) == 1 and result.bugs[0].occurrences == 2
    [bug] = BugStore.load(tmp_path).bugs
    assert titles <= bug.titles, "the bug keeps every title it was seen under"


def test_I13_seen_at_two_ops_completion_with_nothing_in_flight_is_one_bug(tmp_path: Path) -> None:
    # A free that forgets to uncharge its page: the check at op completion catches it in the
    # free, or, when cpu1's alloc held the arena lock as the free completed, in the alloc.
    s = variant("apply_range_clear_cb", inv.clear_cb_drops_page)
    in_free = program(RACE_OPS, cpus=2)
    in_alloc = program(RACE_OPS, cpus=2, switches=ALLOC_COMPLETES_LAST)
    sigs = [signature(s, p) for p in (in_free, in_alloc)]
    assert all(sig is not None and sig.in_flight == () for sig in sigs), "plain occurrences, no race"
    titles = {sig.title for sig in sigs}  # type: ignore[union-attr]
    assert len(titles) == 2
    result = triage(s, [in_free, in_alloc, in_alloc], tmp_path, now=T1)
    assert [(t.new, t.occurrences) for t in result.bugs] == [(True, 3)]
    again = triage(s, [in_free], tmp_path, now=T2)
    assert [(t.new, t.occurrences) for t in again.bugs] == [(False, 1)]
    [bug] = BugStore.load(tmp_path).bugs
    assert bug.count == 4 and titles <= bug.titles
    assert bug.title in titles and (bug.first_seen, bug.last_seen) == (T1, T2)


def test_store_round_trips_through_bugs_json(real: Session, tmp_path: Path) -> None:
    triage(real, [merged_program()], tmp_path, now=T1)
    doc = json.loads((tmp_path / "bugs.json").read_text())
    assert doc["fuzzkit"] == "bugs" and doc["schema"] == 1 and len(doc["bugs"]) == 1
    store = BugStore.load(tmp_path)
    store.save()
    assert json.loads((tmp_path / "bugs.json").read_text()) == doc
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"fuzzkit": "bugs", "schema": 1, "bugs": [', "not JSON (truncated?)"),
        ('{"fuzzkit": "program", "schema": 1}', "not a fuzzkit bug store"),
        ('{"fuzzkit": "bugs", "schema": 7, "bugs": []}', "schema: version 7 is not supported"),
        ('{"fuzzkit": "bugs", "schema": 1, "bugs": [{"title": 3}]}', "bugs[0].status: missing"),
    ],
    ids=["truncated", "not_a_store", "schema_version", "bad_field"],
)
def test_bad_bugs_json_is_an_error_naming_it_and_is_left_untouched(
    real: Session, tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "bugs.json"
    path.write_text(text)
    with pytest.raises(TriageError) as exc:
        triage(real, [merged_program()], tmp_path, now=T1)
    assert str(path) in str(exc.value) and says in str(exc.value)
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bugs.lock", "bugs.json"]


def test_a_run_without_a_finding_is_reported_as_unreproduced(real: Session, tmp_path: Path) -> None:
    clean = program(inv.UNALLOCATABLE, revision="fixed")
    result = triage(real, [("clean.json", clean)], tmp_path, now=T1)
    assert result.bugs == [] and result.unreproduced == ["clean.json"]
    assert BugStore.load(tmp_path).bugs == []

"""One root cause, one bug: a broken state found after the fact is titled after the write that
broke it (SPEC I9: the PTE write that left a cached scratch translation stale), whichever op
tripped over it; the minimizer keeps that cause; known bugs are counted but never new; a
race's report shows the other CPU's steps that set it up; reports honour the umask."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from arena import test_invariants as inv
from helpers import Op, program
from triage_helpers import variant

from fuzzkit.cli import main
from fuzzkit.plugins import load_registry
from fuzzkit.program import Program
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, minimize, signature, triage, write_bundle
from fuzzkit.triage.explain import TRACE_WINDOW
from fuzzkit.triage.known import load_known, mark_known
from fuzzkit.triage.pipeline import _new_bug

T1, T2 = "2026-06-01T10:00:00+00:00", "2026-06-02T10:00:00+00:00"
I9 = "I9 allocated slot reached the scratch page"
I9_TITLE = f"{I9} at apply_range_set_cb (x86, fixed)"
#: Three ops that read arena memory, each through its own path (a kernel load, a BPF program
#: store, a sched_ext cmask helper).
ACCESS_OPS = ["arena.kernel_access", "arena.prog_access", "scx.cmask_weight"]


@pytest.fixture(scope="module")
def full() -> Session:
    return Session(load_registry())


def stale_scratch(access: str, noise: list[Op] = ()) -> Program:  # type: ignore[assignment]
    """A kernel fault installs the scratch page in slot 0 and cpu0 caches its translation;
    the allocation replaces the PTE without a flush (x86, R17); ``access`` then reads the
    slot through the stale entry."""
    ops: list[Op] = [
        (0, "arena.create", {}),
        *noise,
        (0, "arena.kernel_access", {}),
        (0, "arena.alloc", {}),
        (0, access, {}),
    ]
    return program(ops, arch="x86", revision="fixed")


def test_stale_translation_reached_through_three_access_ops_is_one_bug(full: Session, tmp_path: Path) -> None:
    result = triage(full, [stale_scratch(op) for op in ACCESS_OPS], tmp_path, now=T1)
    [entry] = result.bugs
    bug = entry.bug
    assert entry.new and entry.occurrences == 3 and bug.count == 3
    assert bug.title == I9_TITLE, "titled after the primitive whose PTE write broke the state"
    assert (bug.op, bug.primitive) == ("arena.alloc", "apply_range_set_cb")
    assert sorted(bug.alt_titles) == [f"{I9} in {op} (x86, fixed)" for op in sorted(ACCESS_OPS)]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [bug.slug]


def test_the_cause_names_the_write_and_the_access_goes_into_the_detail(full: Session) -> None:
    sig = signature(full, stale_scratch("scx.cmask_weight"))
    assert sig is not None and sig.cause is not None
    assert (sig.cause.what, sig.cause.op, sig.cause.call, sig.cause_primitive) == (
        "pte",
        "arena.alloc",
        2,
        "apply_range_set_cb",
    )
    assert sig.finding.op == "scx.cmask_weight"
    assert "bpf read in scx.cmask_weight (cpu0)" in sig.finding.detail
    assert "cached at step 6 by arena.kernel_access" in sig.finding.detail
    assert sig.keys == {I9_TITLE}, "the op that tripped over the state never merges bugs"


def test_minimizer_keeps_the_cause(full: Session) -> None:
    noise: list[Op] = [
        (1, "arena.alloc", {"pgoff": 5}),
        (0, "arena.kernel_access", {"pgoff": 7}),
        (1, "arena.free", {"pgoff": 5}),
    ]
    big = stale_scratch("scx.cmask_weight", noise)
    big.cpus = 2
    result = minimize(full, big, budget=5_000)
    sig = result.signature
    assert sig.title == I9_TITLE and sig.cause is not None
    assert (sig.cause.what, sig.cause.op, sig.cause_primitive) == ("pte", "arena.alloc", "apply_range_set_cb")
    assert result.size.shape == (4, 1, 0, 0), result.program.dumps()


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_reports_get_the_users_umask(full: Session, tmp_path: Path, umask: None) -> None:
    triage(full, [stale_scratch("arena.kernel_access")], tmp_path / "r", now=T1)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    dirs = {name for name in modes if (tmp_path / name).is_dir()}
    assert {modes[d] for d in dirs} == {0o750}, modes
    assert {modes[f] for f in modes if f not in dirs} == {0o640}, modes


def test_a_known_bug_is_counted_but_not_reported_as_new(full: Session, tmp_path: Path) -> None:
    first = triage(full, [stale_scratch("arena.kernel_access")], tmp_path, now=T1)
    [bug] = [t.bug for t in first.new]
    assert main(["known", "add", bug.slug, "--reports", str(tmp_path), "--note", "no flush on x86"]) == 0
    assert [(k.title, k.note) for k in load_known(tmp_path)] == [(I9_TITLE, "no flush on x86")]

    again = triage(full, [stale_scratch(op) for op in ACCESS_OPS[1:]], tmp_path, now=T2)
    [entry] = again.bugs
    assert entry.known and not entry.new and again.new == [] and entry.occurrences == 2
    assert BugStore.load(tmp_path).bugs[0].count == 3, "known bugs are still counted"
    index = (tmp_path / "index.md").read_text()
    assert "## Bugs" not in index and "## Known bugs" in index.split(I9_TITLE)[0]
    assert "known (no flush on x86), new" in " ".join(index.split())


def test_a_known_bug_seen_first_in_a_fresh_folder_gets_no_bundle(full: Session, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    triage(full, [stale_scratch("arena.kernel_access")], seen, now=T1)
    mark_known(seen, I9_TITLE, "", T1)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "known.json").write_text((seen / "known.json").read_text())
    result = triage(full, [stale_scratch("arena.prog_access")], fresh, now=T2)
    [entry] = result.bugs
    assert entry.known and not entry.new and entry.bundle is None and entry.minimized is None
    assert BugStore.load(fresh).bugs[0].count == 1
    assert sorted(p.name for p in fresh.iterdir()) == [".bugs.lock", "bugs.json", "index.md", "known.json"]


def test_known_add_of_an_unrecorded_bug_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["known", "add", "no-such-bug", "--reports", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no recorded bug 'no-such-bug'" in err and "bugs.json" in err
    assert not (tmp_path / "known.json").exists()


#: RACE (triage_helpers.RACE_OPS) with a long allocation on cpu1: the free that drops its page
#: without uncharging (I13) is preempted at step 11, after its clear, and cpu1's allocation of
#: 16 pages runs to its end, where the check fires, while cpu0's free is still in flight.
LONG_RACE: list[Op] = [
    (0, "arena.create", {"max_entries": 64}),
    (0, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3, "page_cnt": 1}),
    (0, "arena.free", {"arena": 0, "pgoff": 3, "page_cnt": 1}),
    (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 8, "page_cnt": 16}),
]


def test_a_two_cpu_race_report_shows_the_other_cpus_setup_steps(tmp_path: Path) -> None:
    session = variant("apply_range_clear_cb", inv.clear_cb_drops_page, "page dropped")
    race = program(LONG_RACE, cpus=2)
    race.switches = [(11, 1)]
    sig = signature(session, race)
    assert sig is not None and (sig.finding.op, sig.finding.cpu, sig.in_flight) == (
        "arena.alloc",
        1,
        ("arena.free",),
    )
    violation = sig.finding.step
    bundle = write_bundle(session, tmp_path, _new_bug(session, sig, race), race, race)
    assert bundle is not None
    text = (bundle / "report.md").read_text()
    trace = text.split("## Trace around the violation")[1].split("## State")[0]
    # cpu0's free took the lock and cleared the PTE long before the violation on cpu1.
    setup = ["[2] arena.free: lock arena0.spinlock", "[2] arena.free: ptep_get_and_clear"]
    assert all(step in trace for step in setup), trace
    assert violation - 7 > TRACE_WINDOW, "a window counted back from the violation would miss them"
    assert trace.startswith(f" (steps 7-{violation})")
    assert max(len(line) for line in text.splitlines()) <= 100

"""R1-R5 and R20: arena_alloc_pages() and the memory it accounts.

Arenas are created with the fixed user_vm_start (FIXED_BASE for arena 0), so slot ``pgoff``
is user address ``FIXED_BASE + pgoff * PAGE_SIZE`` and allocations need no mmap first. The
scratch page is the first page frame allocated (pfn 0x1000, alloc_page arrival #1); the
pages of an allocation follow in slot order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fuzzkit_arena.arena import MMAP_BASE, Arena
from fuzzkit_arena.kernel import EBUSY
from fuzzkit_arena.ops import FIXED_BASE
from helpers import ARCHES, REVISIONS, arena, program, run, slot_state, vpage_of

from fuzzkit import PAGE_SIZE, RunResult
from fuzzkit.explore import explore
from fuzzkit.program import Program, load
from fuzzkit.runner import Session

SCRATCH_PFN = 0x1000
EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"
#: A 4 GiB arena: the largest allowed.
MAX_ENTRIES_4G = 1 << 20


def the_arena(result: RunResult, index: int = 0) -> Arena:
    found: Arena = result.machine.handles["arena"][index]
    return found


def uaddr(pgoff: int) -> int:
    return FIXED_BASE + pgoff * PAGE_SIZE


def alloc(pgoff: int | None = None, page_cnt: int = 1, **args: Any) -> tuple[str, dict[str, Any]]:
    """arena.alloc at an explicit slot, or best fit when ``pgoff`` is None."""
    where = {"addr": "any"} if pgoff is None else {"addr": "fixed", "pgoff": pgoff}
    return ("arena.alloc", {**where, "page_cnt": page_cnt, **args})


def reserve(pgoff: int, page_cnt: int) -> tuple[str, dict[str, Any]]:
    return ("arena.reserve", {"pgoff": pgoff, "page_cnt": page_cnt})


def scratch_slot(pgoff: int, insn: str = "load", value: int = 0xA5) -> tuple[str, dict[str, Any]]:
    """A kfunc access from the arena's main program to an EMPTY slot: installs the scratch page."""
    return ("arena.kernel_access", {"pgoff": pgoff, "insn": insn, "value": value})


def drive(steps: Any) -> Any:
    """Run one kernel path to completion outside the scheduler; return its result."""
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def interleavings(session: Session, prog: Program, horizon: int) -> Iterator[RunResult]:
    """Every run in which cpu0 is preempted once for cpu1 (before step a) and, optionally,
    gets the CPU back once (before step b): all schedules with at most two switches in which
    cpu1 starts after arena.create (steps 1-2) made the arena."""
    for a in range(3, horizon):
        yield session.run(replace(prog, switches=[(a, 1)]))
        for b in range(a + 1, horizon):
            yield session.run(replace(prog, switches=[(a, 1), (b, 0)]))


def assert_untouched(result: RunResult, max_entries: int = 16) -> None:
    """No state change: the range tree all FREE, no PTE, no page but the scratch page."""
    a = the_arena(result)
    m = result.machine
    assert result.finding is None
    assert a.rt.intervals() == [(0, max_entries)]
    assert a.ref.free == (1 << max_entries) - 1
    assert m.ptes == {}
    assert a.nr_pages == 0
    assert list(m.pages) == [SCRATCH_PFN]
    assert a.free_spans == []


# -- R1: rejected requests -------------------------------------------------------------------------

R1_REJECTS = {
    "bad_node": alloc(3, node=7),
    "zero_pages": alloc(3, page_cnt=0),
    "more_pages_than_the_arena": alloc(None, page_cnt=17),
    "misaligned_address": ("arena.alloc", {"addr": "misaligned", "pgoff": 3}),
    "range_past_the_end": alloc(15, page_cnt=2),
    "address_past_the_end": alloc(16),
    "flags": alloc(3, flags=1),
}


@pytest.mark.parametrize("request_", list(R1_REJECTS.values()), ids=list(R1_REJECTS))
def test_R1_rejects_without_state_change(session: Session, request_: tuple[str, dict[str, Any]]) -> None:
    r = run(session, [arena(), request_])
    assert r.results[1] == 0
    assert_untouched(r)


def test_R1_rejects_before_the_first_mmap_picks_user_vm_start(session: Session) -> None:
    # No fixed user_vm_start: until mmap picks one the VMA is empty and page_cnt_max is 0.
    r = run(session, [arena(user_vm_start="mmap"), alloc(None), ("arena.mmap", {}), alloc(None)])
    assert r.results[1] == 0
    # mmap picks MMAP_BASE (its 16 pages do not cross 4 GiB); best fit then takes slot 0.
    assert r.results[2] == MMAP_BASE
    assert r.results[3] == MMAP_BASE
    assert slot_state(r, 0, 0) == "REAL"
    assert the_arena(r).rt.intervals() == [(1, 16)]


def test_R1_whole_arena_is_not_too_many(session: Session) -> None:
    r = run(session, [arena(), alloc(None, page_cnt=16)])
    assert r.finding is None
    assert r.results[1] == uaddr(0)
    assert the_arena(r).rt.intervals() == []
    assert the_arena(r).nr_pages == 16


def test_R1_last_page_of_a_4g_arena(session: Session) -> None:
    last = MAX_ENTRIES_4G - 1
    ops = [arena(max_entries=MAX_ENTRIES_4G), alloc(last, page_cnt=2), alloc(last)]
    r = run(session, ops)
    a = the_arena(r)
    assert r.finding is None
    assert r.results[1] == 0  # range past the end
    assert r.results[2] == uaddr(last) == FIXED_BASE + 0xFFFFF000
    # The top page of the 4 GiB band, and the only PTE: page tables stay sparse.
    assert list(r.machine.ptes) == [(a.kbase + 0xFFFFF000) >> 12]
    assert a.rt.intervals() == [(0, last)]


def test_R1_address_past_a_4g_arena_wraps_to_slot_0(session: Session) -> None:
    # user_vm_start + 4 GiB has the low 32 bits of user_vm_start: compute_pgoff() gives 0,
    # which is in range, so the kernel allocates slot 0 (only the low 32 bits count).
    r = run(session, [arena(max_entries=MAX_ENTRIES_4G), alloc(MAX_ENTRIES_4G)])
    assert r.finding is None
    assert r.results[1] == uaddr(0)
    assert slot_state(r, 0, 0) == "REAL"


def test_R1_user_vm_start_just_below_a_4g_boundary(session: Session) -> None:
    # verifier_arena's map_extra: the arena's pages are the last below a 4 GiB boundary, so
    # its user range does not cross one and both pages allocate; one page more would.
    r = run(session, [arena(max_entries=2, user_vm_start="fixed_below_4g"), alloc(None, page_cnt=2)])
    a = the_arena(r)
    assert r.finding is None and r.results[0] == 0
    assert a.user_vm_start & 0xFFFFFFFF == 0x100000000 - 2 * PAGE_SIZE
    assert a.user_vm_end & 0xFFFFFFFF == 0 and r.results[1] == a.user_vm_start


def test_R1_example_last_page_of_a_4g_arena_replays_clean(session: Session) -> None:
    r = session.run(load(EXAMPLES / "arena_4g_last_page.json"))
    assert r.finding is None
    assert [r.results[i] for i in range(2, 8)] == [0, uaddr(MAX_ENTRIES_4G - 1), 66, 66, "freed", uaddr(0)]
    assert the_arena(r).rt.intervals() == [(1, MAX_ENTRIES_4G)]


# -- R2: all-or-nothing claims, best fit -----------------------------------------------------------


def test_R2_best_fit_takes_the_smallest_range_that_fits(session: Session) -> None:
    # FREE: [0,4) (4 pages) and [10,12) (2 pages): first fit would take 0, best fit takes 10.
    r = run(session, [arena(), reserve(4, 6), reserve(12, 4), alloc(None, page_cnt=2)])
    assert r.finding is None
    assert r.results[3] == uaddr(10)
    assert the_arena(r).rt.intervals() == [(0, 4)]
    assert [slot_state(r, 0, p) for p in (10, 11)] == ["REAL", "REAL"]


def test_R2_best_fit_ties_go_to_the_most_recently_inserted_range(session: Session) -> None:
    # FREE: [0,2), [5,7), [10,16). range_tree.c's size tree links an equal size to the
    # right and __find_range() ends on the rightmost fit: [5,7), split off by the second
    # reserve, was inserted after [0,2), so it goes first, not the lowest offset.
    ops = [arena(), reserve(2, 3), reserve(7, 3), *[alloc(None, page_cnt=2)] * 3]
    r = run(session, ops)
    assert r.finding is None
    assert [r.results[i] for i in (3, 4, 5)] == [uaddr(5), uaddr(0), uaddr(10)]
    assert the_arena(r).rt.intervals() == [(12, 16)]


def test_R2_the_newest_free_range_wins(session: Session) -> None:
    # All 7 slots taken, then slots 1, 5 and 3 freed in that order: three one-page ranges,
    # 3's inserted last, so best fit takes 3, where lowest offset would take 1.
    def free(pgoff: int) -> tuple[str, dict[str, Any]]:
        return ("arena.free", {"pgoff": pgoff, "page_cnt": 1})

    ops = [arena(max_entries=7), alloc(None, page_cnt=7), free(1), free(5), free(3), alloc(None)]
    r = run(session, ops)
    assert r.finding is None and r.results[5] == uaddr(3)
    assert the_arena(r).rt.intervals() == [(1, 2), (5, 6)]


def test_R2_a_second_free_of_a_free_range_makes_it_the_newest(session: Session) -> None:
    # As above, then slot 1 freed again: range_tree_set_unavail() takes its node out and
    # inserts an unavailable one, which range_tree_make_avail() flips in place (no free
    # neighbour), so slot 1's node is now the newest and best fit takes it (R2, R7).
    def free(pgoff: int) -> tuple[str, dict[str, Any]]:
        return ("arena.free", {"pgoff": pgoff, "page_cnt": 1})

    ops = [arena(max_entries=7), alloc(None, page_cnt=7), free(1), free(5), free(3), free(1), alloc(None)]
    r = run(session, ops)
    assert r.finding is None and r.results[5] == "freed" and r.results[6] == uaddr(1)
    assert the_arena(r).rt.intervals() == [(3, 4), (5, 6)]


def test_R2_explicit_address_needs_every_slot_free(session: Session) -> None:
    r = run(session, [arena(), reserve(5, 1), alloc(4, page_cnt=3)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == 0
    # Nothing of [4, 7) was claimed: slots 4 and 6 stay FREE.
    assert a.rt.intervals() == [(0, 5), (6, 16)]
    assert r.machine.ptes == {}
    assert list(r.machine.pages) == [SCRATCH_PFN]


def test_R2_best_fit_fails_without_state_change_when_nothing_fits(session: Session) -> None:
    # FREE: [0,2) and [4,6) only: no run of 3 pages.
    r = run(session, [arena(max_entries=6), reserve(2, 2), alloc(None, page_cnt=3)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == 0
    assert a.rt.intervals() == [(0, 2), (4, 6)]
    assert r.machine.ptes == {}


def test_R2_concurrent_best_fit_claims_are_disjoint(session: Session) -> None:
    prog = program([arena(max_entries=4), (0, *alloc(None, page_cnt=2)), (1, *alloc(None, page_cnt=2))])
    # The I12 oracle compares every claim with the reference model; I2 forbids shared pages.
    e = explore(session, prog, max_switches=3)
    assert e.exhaustive and e.found is None
    for r in interleavings(session, prog, 12):
        assert r.finding is None
        assert sorted([r.results[1], r.results[2]]) == [uaddr(0), uaddr(2)]
        assert the_arena(r).rt.intervals() == []


def test_R2_concurrent_explicit_claims_of_one_slot_have_one_winner(session: Session) -> None:
    prog = program([arena(), (0, *alloc(3)), (1, *alloc(3))])
    e = explore(session, prog, max_switches=3)
    assert e.exhaustive and e.found is None
    for r in interleavings(session, prog, 12):
        assert sorted([r.results[1], r.results[2]]) == [0, uaddr(3)]
        assert slot_state(r, 0, 3) == "REAL"
        assert the_arena(r).nr_pages == 1


# -- R3: failure after the claim rolls everything back ---------------------------------------------


@pytest.mark.parametrize("sleepable", [True, False], ids=["sleepable", "nonsleepable"])
def test_R3_page_allocation_failure_rolls_back(session: Session, sleepable: bool) -> None:
    # alloc_page arrivals: #1 scratch, #2 first page, #3 second page fails. Nothing was mapped,
    # so the whole claim goes back and the one page obtained returns to the allocator.
    r = run(session, [arena(), alloc(2, page_cnt=3, sleepable=sleepable)], inject=[("alloc_page", 3)])
    m = r.machine
    assert r.injected == [("alloc_page", 3)]
    assert r.results[1] == 0
    assert the_arena(r).rt.intervals() == [(0, 16)]
    assert m.ptes == {}
    assert the_arena(r).nr_pages == 0
    assert the_arena(r).free_spans == []
    assert [p.freed for p in m.pages.values()] == [False, True]


@pytest.mark.parametrize(
    "inject",
    [("kmalloc_nolock", 1), ("arena_spin_lock", 1), ("range_tree_node_alloc", 2)],
    ids=["pages_array", "spin_lock", "range_tree_split"],
)
def test_R3_failure_before_any_page_changes_nothing(session: Session, inject: tuple[str, int]) -> None:
    # range_tree_node_alloc #1 is the creation of the tree; claiming slot 3 splits [0,16): #2.
    r = run(session, [arena(), alloc(3)], inject=[inject])
    assert r.injected == [inject]
    assert r.results[1] == 0
    assert_untouched(r)


@pytest.mark.parametrize("arch", ARCHES)
def test_R3_install_failure_frees_the_mapped_prefix(session: Session, arch: str) -> None:
    # merged: slot 3 holds SCRATCH, so installing the second page fails (-EBUSY, R4). Slot 2
    # was mapped: it is freed again (sleepable: now); slots 3 and 4 go back to the tree.
    ops = [arena(), scratch_slot(3), alloc(2, page_cnt=3)]
    r = run(session, ops, arch=arch, revision="merged")
    a = the_arena(r)
    pages = r.machine.pages
    assert r.finding is None
    assert r.results[2] == 0
    assert [slot_state(r, 0, p) for p in (2, 3, 4)] == ["EMPTY", "SCRATCH", "EMPTY"]
    assert a.rt.intervals() == [(0, 16)]
    assert a.nr_pages == 0
    assert [pages[pfn].freed for pfn in (0x1001, 0x1002, 0x1003)] == [True, True, True]
    assert not a.scratch.freed


@pytest.mark.parametrize("revision", REVISIONS)
def test_R3_allocation_beyond_one_batch(session: Session, revision: str) -> None:
    # verifier_arena_large's big_alloc3: 2051 pages are three batches of at most 1024
    # (KMALLOC_MAX_CACHE_SIZE / sizeof(struct page *)), all mapped, within one op's budget.
    ops = [
        arena(max_entries=4096),
        alloc(None, page_cnt=2051),
        ("arena.free", {"pgoff": 0, "page_cnt": 1025}),
    ]
    r = run(session, ops, revision=revision)
    a = the_arena(r)
    assert r.finding is None and r.results[1] == uaddr(0)
    assert a.nr_pages == 2051 - 1025 and a.rt.intervals() == [(0, 1025), (2051, 4096)]


def test_R3_a_failed_second_batch_rolls_back_the_first(session: Session) -> None:
    # The first batch of 1024 is allocated and mapped before the second is allocated; its
    # failure (alloc_page #1026, after the scratch page and the first batch) frees the
    # mapped prefix and gives the whole range back.
    ops = [arena(max_entries=2048), alloc(None, page_cnt=1100)]
    r = run(session, ops, inject=[("alloc_page", 1026)])
    a = the_arena(r)
    assert r.finding is None and r.injected == [("alloc_page", 1026)]
    assert r.results[1] == 0 and a.nr_pages == 0 and a.rt.intervals() == [(0, 2048)]
    assert r.machine.ptes == {} and sum(not p.freed for p in r.machine.pages.values()) == 1


# -- R4: allocating over a SCRATCH slot, per revision ----------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R4_merged_alloc_over_scratch_fails_and_the_slot_stays_scratch(session: Session, arch: str) -> None:
    ops = [arena(), scratch_slot(3, insn="store"), alloc(3), alloc(3)]
    r = run(session, ops, arch=arch, revision="merged")
    a = the_arena(r)
    assert r.finding is None
    # Every allocation of the slot fails the same way, and rolls back completely.
    assert r.results[2] == 0 and r.results[3] == 0
    assert slot_state(r, 0, 3) == "SCRATCH"
    assert a.rt.intervals() == [(0, 16)]
    assert a.nr_pages == 0
    assert [p.freed for p in r.machine.pages.values()] == [False, True, True]
    # The scratch page kept what the kernel-side store wrote.
    assert a.scratch.data == {0: 0xA5} and not a.scratch.freed


@pytest.mark.parametrize("arch", ARCHES)
def test_R4_merged_best_fit_keeps_offering_the_scratched_slot(session: Session, arch: str) -> None:
    # Best fit offers slot 0 (lowest offset of the one free range), which can never be
    # allocated: the arena has room and nothing was injected, so I16 reports it.
    r = run(session, [arena(), scratch_slot(0), alloc(None)], arch=arch, revision="merged")
    assert r.results[2] == 0
    assert r.finding is not None
    assert (r.finding.spec_id, r.finding.op) == ("I16", "arena.alloc")
    assert slot_state(r, 0, 0) == "SCRATCH"


@pytest.mark.parametrize("arch", ARCHES)
def test_R4_fixed_alloc_over_scratch_succeeds_and_reads_zero(session: Session, arch: str) -> None:
    ops = [
        arena(),
        ("arena.mmap", {}),
        scratch_slot(3, insn="store"),
        scratch_slot(5),
        alloc(3),
        ("arena.user_access", {"pgoff": 3, "write": False}),
        # cpu1 has never translated slot 3: its walk reaches the new page.
        (1, "arena.prog_access", {"pgoff": 3, "write": False}),
        (1, "arena.prog_access", {"pgoff": 5, "write": False}),
    ]
    r = run(session, ops, arch=arch, revision="fixed")
    a = the_arena(r)
    assert r.finding is None
    assert r.results[4] == uaddr(3)
    assert slot_state(r, 0, 3) == "REAL"
    new = r.machine.page_of(r.machine.ptes[vpage_of(r, 0, 3)])
    assert new is not None and new is not a.scratch and new.data == {}
    assert r.results[5] == 0 and r.results[6] == 0
    # The scratch page survives, still backs slot 5 and still holds the kernel's store.
    assert slot_state(r, 0, 5) == "SCRATCH"
    assert r.results[7] == 0xA5
    assert not a.scratch.freed
    assert a.nr_pages == 1


def test_R4_fixed_arm64_break_before_make_drops_the_scratch_translation(session: Session) -> None:
    # cpu0 cached the scratch translation when its kernel access retried; the replacement
    # clears the PTE and invalidates the TLB before installing, so cpu0 reads the new page.
    ops = [
        arena(),
        scratch_slot(3, insn="store"),
        alloc(3),
        ("arena.prog_access", {"pgoff": 3, "write": False}),
    ]
    r = run(session, ops, arch="arm64", revision="fixed", trace=True)
    assert r.finding is None
    assert r.results[2] == uaddr(3)
    assert r.results[3] == 0
    assert r.trace is not None
    labels = [t.label for t in r.trace if t.call == 2]
    clear = labels.index("ptep_get_and_clear")
    assert labels[clear + 1 : clear + 3] == ["flush_tlb_kernel_range", "ptep_try_set"]


@pytest.mark.parametrize("arch", ARCHES)
def test_R4_fixed_best_fit_over_a_scratched_slot_succeeds(session: Session, arch: str) -> None:
    r = run(session, [arena(), scratch_slot(0), alloc(None)], arch=arch, revision="fixed")
    assert r.finding is None
    assert r.results[2] == uaddr(0)
    assert slot_state(r, 0, 0) == "REAL"
    assert the_arena(r).rt.intervals() == [(1, 16)]


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_R4_never_replaces_a_real_page(session: Session, arch: str, revision: str) -> None:
    # apply_range_set_cb on a slot holding a page that is not the scratch page: -EBUSY and
    # the PTE is left alone (merged: not pte_none; fixed: the WARN_ON_ONCE branch).
    r = run(session, [arena(), alloc(3)], arch=arch, revision=revision)
    m, a = r.machine, the_arena(r)
    vpage = vpage_of(r, 0, 3)
    before = m.ptes[vpage]
    page = m.alloc_page(a.name)
    assert page is not None
    assert drive(m.k.apply_range_set_cb(m, m.cpus[0], a, vpage, page)) == EBUSY
    assert m.ptes[vpage] == before


@pytest.mark.parametrize("arch", ARCHES)
def test_R4_alloc_racing_a_scratch_install(session: Session, arch: str) -> None:
    """cpu0 allocates slot 3 while cpu1's kfunc faults on it and installs the scratch page."""
    ops = [arena(), (0, *alloc(3)), (1, *scratch_slot(3))]
    fixed = program(ops, arch=arch, revision="fixed")
    e = explore(session, fixed, max_switches=3)
    assert e.exhaustive and e.found is None
    reported = set()
    for r in interleavings(session, fixed, 16):
        assert r.finding is None
        assert r.results[1] == uaddr(3)
        assert slot_state(r, 0, 3) == "REAL"
        assert the_arena(r).nr_pages == 1
        reported.add(bool(the_arena(r).prog.stream.lines))
    # Both orders happen: the fault found the slot EMPTY (scratch installed, then replaced)
    # or already REAL (no fault, no report).
    assert reported == {True, False}

    merged = program(ops, arch=arch, revision="merged")
    if arch == "arm64":
        # merged checks pte_none and then stores plainly: a scratch page installed in
        # between is overwritten valid -> valid without break-before-make.
        found = explore(session, merged, max_switches=3).found
        assert found is not None and found.finding is not None
        assert found.finding.spec_id == "I10"
        return
    outcomes = set()
    for r in interleavings(session, merged, 16):
        assert r.finding is None
        outcomes.add((r.results[1], slot_state(r, 0, 3)))
    # The install landing first makes the allocation fail (-EBUSY); afterwards it succeeds.
    assert outcomes == {(uaddr(3), "REAL"), (0, "SCRATCH")}


@pytest.mark.parametrize(
    ("name", "allocated"), [("alloc_over_scratch_merged", False), ("alloc_over_scratch_fixed", True)]
)
def test_R4_examples_replay_clean(session: Session, name: str, allocated: bool) -> None:
    r = session.run(load(EXAMPLES / f"{name}.json"))
    assert r.finding is None
    assert r.results[3] == (uaddr(3) if allocated else 0)
    assert r.results[4] == 0  # fixed: the user load reads 0; merged: the retry fails again
    assert slot_state(r, 0, 3) == ("REAL" if allocated else "SCRATCH")
    assert the_arena(r).scratch.data == {0: 0xA5}


# -- R5: the sleepable and non-sleepable variants --------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R5_nonsleepable_rollback_defers_the_prefix_free(session: Session, arch: str) -> None:
    # As in R3, but from a non-sleepable caller: the mapped prefix (slot 2) is not freed
    # inline (that would take the lock again) but queued for the deferred-free worker.
    ops = [arena(), scratch_slot(3), alloc(2, page_cnt=3, sleepable=False)]
    r = run(session, ops, arch=arch, revision="merged", trace=True)
    a = the_arena(r)
    pages = r.machine.pages
    assert r.finding is None
    assert r.results[2] == 0
    assert a.free_spans == [(uaddr(2) & 0xFFFFFFFF, 1, False)]
    assert slot_state(r, 0, 2) == "REAL" and a.rt.is_set(2, 1) != 0
    assert a.rt.intervals() == [(0, 2), (3, 16)]
    assert a.nr_pages == 1
    assert [pages[pfn].freed for pfn in (0x1001, 0x1002, 0x1003)] == [False, True, True]
    assert r.trace is not None
    after_rollback = [t.label for t in r.trace if t.call == 2 and t.op == "arena.alloc"]
    after_rollback = after_rollback[after_rollback.index("alloc rollback") :]
    assert after_rollback == ["alloc rollback", "queue free span", "done"]

    done = run(session, [*ops, ("arena.free_worker", {})], arch=arch, revision="merged")
    a = the_arena(done)
    assert done.finding is None
    assert done.results[3] == 1
    assert slot_state(done, 0, 2) == "EMPTY"
    assert a.rt.intervals() == [(0, 16)] and a.free_spans == [] and a.nr_pages == 0
    assert done.machine.pages[0x1001].freed


@pytest.mark.parametrize("sleepable", [True, False], ids=["sleepable", "nonsleepable"])
def test_R5_both_variants_allocate(session: Session, sleepable: bool) -> None:
    r = run(session, [arena(), alloc(None, page_cnt=2, sleepable=sleepable)])
    assert r.finding is None
    assert r.results[1] == uaddr(0)
    assert the_arena(r).nr_pages == 2


# -- R20: nr_pages counts REAL pages only ----------------------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_R20_nr_pages_counts_real_pages_only(session: Session, arch: str, revision: str) -> None:
    ops = [
        arena(),
        ("arena.mmap", {}),
        scratch_slot(0),  # SCRATCH: not counted
        alloc(2, page_cnt=3),  # +3
        ("arena.user_access", {"pgoff": 8, "write": True}),  # lazily allocated: +1
        ("arena.free", {"pgoff": 0, "page_cnt": 3}),  # scratch skipped, slot 1 empty, slot 2: -1
        ("arena.munmap", {}),
        ("arena.destroy", {}),  # the rest is freed with the arena
    ]
    expected = [0, 0, 0, 3, 4, 3, 3, 0]
    for n, want in enumerate(expected, start=1):
        r = run(session, ops[:n], arch=arch, revision=revision)
        a = the_arena(r)
        assert r.finding is None
        assert a.nr_pages == want, ops[n - 1]
        real = sum(
            1 for raw in r.machine.ptes.values() if (p := r.machine.page_of(raw)) is not None and not p.shared
        )
        assert real == want


@pytest.mark.parametrize("arch", ARCHES)
def test_R20_mem_usage_reads_the_real_pages(session: Session, arch: str) -> None:
    ops = [
        arena(),
        ("arena.mem_usage", {}),
        scratch_slot(0),
        ("arena.mem_usage", {}),
        alloc(2, page_cnt=3),
        ("arena.mem_usage", {}),
        ("arena.free", {"pgoff": 3}),
        ("arena.mem_usage", {}),
    ]
    r = run(session, ops, arch=arch)
    assert r.finding is None
    assert [r.results[i] for i in (1, 3, 5, 7)] == [0, 0, 3 * PAGE_SIZE, 2 * PAGE_SIZE]


@pytest.mark.parametrize("arch", ARCHES)
def test_R20_fixed_alloc_over_scratch_counts_the_new_page_only(session: Session, arch: str) -> None:
    r = run(session, [arena(), scratch_slot(3), scratch_slot(4), alloc(3, page_cnt=2)], arch=arch)
    assert r.finding is None
    assert the_arena(r).nr_pages == 2
    assert not the_arena(r).scratch.freed

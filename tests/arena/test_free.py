"""R6-R10: arena_free_pages(), the deferred-free worker, and arena_reserve_pages().

Arena 0 has 16 pages at the fixed user_vm_start FIXED_BASE (low 32 bits zero), so slot
``pgoff`` has the 32-bit user offset ``pgoff * PAGE_SIZE``; the scratch page is pfn 0x1000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fuzzkit_arena.arena import MAX_PAGES, MMAP_BASE, Arena
from fuzzkit_arena.kernel import EBUSY, EINVAL
from fuzzkit_arena.ops import FIXED_BASE
from helpers import ARCHES, arena, program, run, slot_state, vpage_of

from fuzzkit import PAGE_SIZE, RunResult
from fuzzkit.explore import explore
from fuzzkit.program import load
from fuzzkit.runner import Session

SCRATCH_PFN = 0x1000
EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"

Op = tuple[str, dict[str, Any]]


def the_arena(result: RunResult, index: int = 0) -> Arena:
    found: Arena = result.machine.handles["arena"][index]
    return found


def alloc(pgoff: int, page_cnt: int = 1) -> Op:
    return ("arena.alloc", {"addr": "fixed", "pgoff": pgoff, "page_cnt": page_cnt})


def free(pgoff: int, page_cnt: int = 1, sleepable: bool = True) -> Op:
    return ("arena.free", {"pgoff": pgoff, "page_cnt": page_cnt, "sleepable": sleepable})


def reserve(pgoff: int, page_cnt: int) -> Op:
    return ("arena.reserve", {"pgoff": pgoff, "page_cnt": page_cnt})


def scratch_slot(pgoff: int, insn: str = "load") -> Op:
    """A kfunc access from the arena's main program to an EMPTY slot: installs the scratch page."""
    return ("arena.kernel_access", {"pgoff": pgoff, "insn": insn})


WORKER: Op = ("arena.free_worker", {})


def drive(steps: Any) -> Any:
    """Run one kernel path to completion outside the scheduler; return its result."""
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def labels(result: RunResult, call: int) -> list[str]:
    assert result.trace is not None
    return [t.label for t in result.trace if t.call == call]


# -- R6: address and range -------------------------------------------------------------------------


@pytest.mark.parametrize("sleepable", [True, False], ids=["sleepable", "nonsleepable"])
def test_R6_range_is_clamped_to_the_user_vma(session: Session, sleepable: bool) -> None:
    r = run(session, [arena(), alloc(14, 2), free(14, 8, sleepable), WORKER])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == ("freed" if sleepable else "deferred")
    assert r.results[3] == (0 if sleepable else 1)
    # The tree never learns of slots 16..21: only [14, 16) went back.
    assert a.rt.intervals() == [(0, 16)]
    assert [slot_state(r, 0, p) for p in (14, 15)] == ["EMPTY", "EMPTY"]
    assert r.machine.pages[0x1001].freed and r.machine.pages[0x1002].freed


def test_R6_nonsleepable_span_is_clamped_too(session: Session) -> None:
    r = run(session, [arena(), alloc(14, 2), free(14, 8, sleepable=False)])
    assert the_arena(r).free_spans == [(14 * PAGE_SIZE, 2, False)]


@pytest.mark.parametrize("sleepable", [True, False], ids=["sleepable", "nonsleepable"])
def test_R6_free_beyond_the_user_vma_is_a_noop(session: Session, sleepable: bool) -> None:
    r = run(session, [arena(), alloc(15), free(16, 4, sleepable)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "noop"
    assert slot_state(r, 0, 15) == "REAL"
    assert a.rt.intervals() == [(0, 15)]
    assert a.free_spans == [] and a.nr_pages == 1


def test_R6_no_ownership_check(session: Session) -> None:
    # A reserved range and a never-allocated range are simply marked FREE.
    r = run(session, [arena(), reserve(2, 2), alloc(8), free(2, 2), free(5, 3), free(7, 3)])
    a = the_arena(r)
    assert r.finding is None
    assert [r.results[i] for i in (3, 4, 5)] == ["freed"] * 3
    assert a.rt.intervals() == [(0, 16)]
    # Only the one real page (slot 8) was freed; the scratch page was not touched.
    assert [p.freed for p in r.machine.pages.values()] == [False, True]
    assert r.machine.ptes == {}


def test_R6_address_is_truncated_to_32_bits_and_page_aligned(session: Session) -> None:
    r = run(session, [arena(), alloc(5), alloc(6)])
    m, a = r.machine, the_arena(r)
    # Upper bits and an offset inside the page are ignored: this frees exactly slot 5.
    garbage = (0xDEAD << 32) | (5 * PAGE_SIZE + 0x123)
    assert drive(m.k.arena_free_pages(m, m.cpus[0], a, garbage, 1, True)) == "freed"
    assert slot_state(r, 0, 5) == "EMPTY" and slot_state(r, 0, 6) == "REAL"
    assert a.rt.intervals() == [(0, 6), (7, 16)]
    assert m.pages[0x1001].freed and not m.pages[0x1002].freed


def test_R6_arena_placed_off_a_4g_boundary(session: Session) -> None:
    # mmap places the arena at MMAP_BASE, whose low 32 bits are not zero: the free path's
    # (u32) offset arithmetic must land on the same slot the allocation used.
    ops = [arena(user_vm_start="mmap"), ("arena.mmap", {}), alloc(5), free(5)]
    r = run(session, ops)
    assert r.finding is None
    assert r.results[2] == MMAP_BASE + 5 * PAGE_SIZE
    assert r.results[3] == "freed"
    assert slot_state(r, 0, 5) == "EMPTY"
    assert the_arena(r).rt.intervals() == [(0, 16)]
    assert r.machine.pages[0x1001].freed


# -- R7: the sleepable path ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_sleepable_free_clears_flushes_zaps_then_frees(session: Session, arch: str) -> None:
    ops = [
        arena(),
        ("arena.mmap", {}),
        alloc(2, 3),
        ("arena.user_access", {"pgoff": 3, "write": True}),  # user-mapped
        ("arena.prog_access", {"pgoff": 2, "write": False}),  # cached in cpu0's TLB
        free(2, 3),
    ]
    r = run(session, ops, arch=arch, trace=True)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[5] == "freed"
    assert labels(r, 5) == [
        "lock arena0.spinlock",
        "range_tree_set_unavail",
        *["ptep_get_and_clear"] * 3,
        "spin_unlock",
        "flush_tlb_kernel_range",
        "lock arena0.lock",
        "zap_pages",
        "__free_page",
        "lock arena0.spinlock",
        "range_tree_make_avail",
        "done",
    ]
    pages = [m.pages[pfn] for pfn in (0x1001, 0x1002, 0x1003)]
    assert all(p.freed and p.kmaps == p.umaps == p.tlb_refs == 0 for p in pages)
    assert m.ptes == {} and m.user_ptes == {} and m.cpus[0].tlb == {}
    assert a.rt.intervals() == [(0, 16)]
    assert a.nr_pages == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_lock_covers_the_clear_and_is_dropped_before_the_flush(session: Session, arch: str) -> None:
    ops = [arena(), (0, *alloc(2)), (0, *free(2)), (1, *alloc(8))]
    base = run(session, ops, arch=arch, trace=True)
    assert base.trace is not None
    unlock = next(t.step for t in base.trace if t.call == 2 and t.label == "spin_unlock")

    # cpu1 asks for the lock right after cpu0 cleared the PTE: cpu0 still holds it.
    held = run(session, ops, arch=arch, switches=[(unlock, 1)], trace=True)
    assert held.finding is None
    assert labels(held, 3)[0] == "wait arena0.spinlock"

    # Once cpu0 dropped it, before its flush: cpu1 allocates at once and finishes while
    # cpu0 has still to flush, zap and free.
    dropped = run(session, ops, arch=arch, switches=[(unlock + 1, 1)], trace=True)
    assert dropped.finding is None and dropped.trace is not None
    assert labels(dropped, 3)[0] == "lock arena0.spinlock"
    order = [(t.call, t.label) for t in dropped.trace if t.step > unlock]
    assert order.index((3, "done")) < order.index((2, "flush_tlb_kernel_range"))
    assert dropped.results[3] == FIXED_BASE + 8 * PAGE_SIZE
    assert slot_state(dropped, 0, 2) == "EMPTY" and slot_state(dropped, 0, 8) == "REAL"


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_free_racing_accesses_never_reaches_a_freed_page(session: Session, arch: str) -> None:
    prog = program(
        [
            arena(),
            alloc(3),
            (0, *free(3)),
            (1, "arena.prog_access", {"pgoff": 3, "write": False}),
            (1, "arena.prog_access", {"pgoff": 3, "write": True}),
            (1, *scratch_slot(3)),
        ],
        arch=arch,
    )
    # I2 (use after free, free while mapped or cached), I11 and I15 watch every schedule.
    e = explore(session, prog, max_switches=3)
    assert e.exhaustive and e.found is None


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_slot_stays_unavailable_between_unlock_and_flush(session: Session, arch: str) -> None:
    """The free drops the lock before flushing, but the range stays unavailable until after
    the flush: cpu1, which still caches the old page, faults the slot from user space in
    that window and is retried (R11) until the free is done, then maps a new page."""
    ops = [
        arena(),
        ("arena.mmap", {}),
        alloc(3),
        (0, *free(3)),
        (1, "arena.prog_access", {"pgoff": 3, "write": True, "value": 0x77}),  # caches the page
        (1, "arena.user_access", {"pgoff": 3, "write": False}),
        (1, "arena.prog_access", {"pgoff": 3, "write": False}),
    ]
    # cpu1's store runs once the allocation is done (steps 5-8), then cpu0 frees up to and
    # including its unlock, then cpu1 runs until it must wait for cpu0.
    first = run(session, ops, arch=arch, switches=[(9, 1), (11, 0)], trace=True)
    assert first.trace is not None
    unlock = next(t.step for t in first.trace if t.call == 3 and t.label == "spin_unlock")
    r = run(session, ops, arch=arch, switches=[(9, 1), (11, 0), (unlock + 1, 1)], trace=True)
    old = r.machine.pages[0x1001]
    # Not even arm64's break-before-make is at risk: no valid PTE is written in the window.
    assert r.finding is None and r.trace is not None
    waited = [t.label for t in r.trace if t.call == 5]
    assert "wait arena0.unavail[3+1]" in waited
    order = [(t.call, t.label) for t in r.trace]
    assert order.index((3, "flush_tlb_kernel_range")) < order.index((5, "vmf_insert_page"))
    # The user fault mapped a new zeroed page, and cpu1's BPF load, its stale translation
    # flushed, reads that page.
    assert r.results[3] == "freed" and r.results[5] == 0 and r.results[6] == 0
    assert slot_state(r, 0, 3) == "REAL" and r.machine.page_of(r.machine.ptes[vpage_of(r, 0, 3)]) is not old
    assert old.freed and list(r.machine.cpus[1].tlb.values()) != [old]


def test_R7_example_install_racing_a_free_replays_clean(session: Session) -> None:
    r = session.run(load(EXAMPLES / "install_races_free.json"), trace=True)
    m, a = r.machine, the_arena(r)
    assert r.finding is None and r.trace is not None
    # The recorded schedule really interleaves the two CPUs inside the free.
    free_steps = [t.step for t in r.trace if t.call == 2]
    access_steps = [t.step for t in r.trace if t.call == 3]
    assert free_steps[0] < access_steps[0] < access_steps[-1] < free_steps[-1]
    assert r.results[2] == "freed" and r.results[3] == 0
    assert slot_state(r, 0, 3) == "SCRATCH" and a.rt.intervals() == [(0, 16)]
    assert m.pages[0x1001].freed and not a.scratch.freed
    # cpu1's retried load cached the scratch translation; nothing caches the freed page.
    assert [list(c.tlb.values()) for c in m.cpus] == [[], [a.scratch]]
    assert len(a.prog.stream.lines) == 1


# -- R8: the non-sleepable path and the worker -----------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R8_nonsleepable_free_is_performed_by_the_worker(session: Session, arch: str) -> None:
    ops = [arena(), alloc(3, 2), free(3, 2, sleepable=False)]
    queued = run(session, ops, arch=arch)
    a = the_arena(queued)
    assert queued.finding is None
    assert queued.results[2] == "deferred"
    # Nothing happened yet: the pages are mapped, TAKEN, counted and alive.
    assert [slot_state(queued, 0, p) for p in (3, 4)] == ["REAL", "REAL"]
    assert a.rt.intervals() == [(0, 3), (5, 16)]
    assert a.free_spans == [(3 * PAGE_SIZE, 2, False)]
    assert a.nr_pages == 2
    assert not any(p.freed for p in queued.machine.pages.values())

    done = run(session, [*ops, WORKER], arch=arch, trace=True)
    a = the_arena(done)
    assert done.finding is None
    assert done.results[3] == 1
    assert labels(done, 3) == [
        "lock arena0.spinlock",
        "range_tree_set_unavail",
        *["ptep_get_and_clear"] * 2,
        "spin_unlock",
        "flush_tlb_kernel_range",
        "lock arena0.lock",
        "zap_pages",
        "__free_page",
        "lock arena0.spinlock",
        "range_tree_make_avail",
        "done",
    ]
    assert [slot_state(done, 0, p) for p in (3, 4)] == ["EMPTY", "EMPTY"]
    assert a.rt.intervals() == [(0, 16)] and a.free_spans == [] and a.nr_pages == 0
    assert done.machine.pages[0x1001].freed and done.machine.pages[0x1002].freed


def test_R8_lock_failure_defers_a_sleepable_free(session: Session) -> None:
    # arena_spin_lock arrivals: #1 the allocation, #2 the free, #3 the worker.
    r = run(session, [arena(), alloc(3), free(3), WORKER], inject=[("arena_spin_lock", 2)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "deferred"
    assert r.results[3] == 1
    assert slot_state(r, 0, 3) == "EMPTY" and a.rt.intervals() == [(0, 16)]
    assert r.machine.pages[0x1001].freed


def test_R8_worker_keeps_the_spans_when_its_lock_fails(session: Session) -> None:
    ops = [arena(), alloc(3), free(3, sleepable=False), WORKER, WORKER]
    r = run(session, ops, inject=[("arena_spin_lock", 2)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[3] == 0  # rescheduled, the span stays queued
    assert r.results[4] == 1
    assert a.free_spans == [] and slot_state(r, 0, 3) == "EMPTY"
    assert r.machine.pages[0x1001].freed


def test_R8_worker_with_nothing_queued_does_nothing(session: Session) -> None:
    r = run(session, [arena(), alloc(3), WORKER])
    assert r.results[2] == 0
    assert slot_state(r, 0, 3) == "REAL"


def test_R8_span_allocation_failure_leaks_the_pages_until_destroy(session: Session) -> None:
    ops = [arena(), alloc(3, 2), free(3, 2, sleepable=False), WORKER]
    r = run(session, ops, inject=[("free_span_alloc", 1)])
    a = the_arena(r)
    # Documented kernel behaviour, not a finding: the pages stay mapped and TAKEN.
    assert r.finding is None
    assert r.results[2] == "leaked" and r.results[3] == 0
    assert a.leaked_spans == 2 and a.free_spans == []
    assert [slot_state(r, 0, p) for p in (3, 4)] == ["REAL", "REAL"]
    assert a.rt.intervals() == [(0, 3), (5, 16)]
    assert not any(p.freed for p in r.machine.pages.values())

    gone = run(session, [*ops, ("arena.destroy", {})], inject=[("free_span_alloc", 1)])
    assert gone.finding is None
    assert all(p.freed for p in gone.machine.pages.values())


@pytest.mark.parametrize("arch", ARCHES)
def test_R8_deferred_free_racing_a_scratch_install(session: Session, arch: str) -> None:
    prog = program(
        [arena(), alloc(3), (0, *free(3, sleepable=False)), (0, *WORKER), (1, *scratch_slot(3))], arch=arch
    )
    e = explore(session, prog, max_switches=3)
    assert e.exhaustive and e.found is None


# -- R9: freeing a SCRATCH slot ------------------------------------------------------------------


@pytest.mark.parametrize("sleepable", [True, False], ids=["sleepable", "nonsleepable"])
@pytest.mark.parametrize("arch", ARCHES)
def test_R9_free_of_a_scratched_slot_empties_it_and_the_scratch_survives(
    session: Session, arch: str, sleepable: bool
) -> None:
    ops = [arena(), scratch_slot(3, insn="store"), free(3, sleepable=sleepable), WORKER]
    r = run(session, ops, arch=arch)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[2] == ("freed" if sleepable else "deferred")
    assert slot_state(r, 0, 3) == "EMPTY" and m.ptes == {}
    assert a.rt.intervals() == [(0, 16)]
    # Skipped: not freed, not counted, no other page involved.
    assert not a.scratch.freed and a.scratch.kmaps == 0
    assert a.nr_pages == 0
    assert list(m.pages) == [SCRATCH_PFN]

    # A later kernel fault on the slot installs the same scratch page again, with its data.
    again = run(session, [*ops, scratch_slot(3)], arch=arch)
    a = the_arena(again)
    assert again.finding is None
    assert again.machine.page_of(again.machine.ptes[vpage_of(again, 0, 3)]) is a.scratch
    assert again.results[4] == 0xA5
    assert len(a.prog.stream.lines) == 2


@pytest.mark.parametrize("arch", ARCHES)
def test_R9_free_over_real_scratch_and_empty_slots(session: Session, arch: str) -> None:
    r = run(session, [arena(), alloc(2), scratch_slot(3), free(2, 3)], arch=arch)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert [slot_state(r, 0, p) for p in (2, 3, 4)] == ["EMPTY"] * 3
    assert m.pages[0x1001].freed and not a.scratch.freed
    assert a.nr_pages == 0 and a.rt.intervals() == [(0, 16)]


def test_R9_example_free_of_a_scratched_slot_replays_clean(session: Session) -> None:
    r = session.run(load(EXAMPLES / "free_scratched_slot.json"))
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "freed" and r.results[3] == 0xA5
    assert slot_state(r, 0, 3) == "SCRATCH" and not a.scratch.freed
    assert list(r.machine.pages) == [SCRATCH_PFN]


# -- R10: reserve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R10_reserve_takes_free_slots_and_leaves_ptes_alone(session: Session, arch: str) -> None:
    before = run(session, [arena(), scratch_slot(3)], arch=arch)
    r = run(session, [arena(), scratch_slot(3), reserve(3, 2)], arch=arch)
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == 0
    assert a.rt.intervals() == [(0, 3), (5, 16)]
    assert r.machine.ptes == before.machine.ptes
    assert slot_state(r, 0, 3) == "SCRATCH" and slot_state(r, 0, 4) == "EMPTY"
    assert a.nr_pages == 0 and list(r.machine.pages) == [SCRATCH_PFN]


def test_R10_reserve_over_a_taken_slot_is_ebusy(session: Session) -> None:
    r = run(session, [arena(), alloc(4), reserve(3, 3), reserve(8, 1), reserve(8, 1)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == EBUSY
    assert r.results[3] == 0 and r.results[4] == EBUSY
    # All or nothing: slots 3 and 5 stay FREE.
    assert a.rt.intervals() == [(0, 4), (5, 8), (9, 16)]


@pytest.mark.parametrize(("pgoff", "page_cnt"), [(15, 2), (16, 1)], ids=["crossing_the_end", "past_the_end"])
def test_R10_reserve_past_the_vma_is_einval(session: Session, pgoff: int, page_cnt: int) -> None:
    r = run(session, [arena(), reserve(pgoff, page_cnt)])
    assert r.results[1] == EINVAL
    assert the_arena(r).rt.intervals() == [(0, 16)]


def test_R10_reserve_of_zero_pages_is_zero(session: Session) -> None:
    r = run(session, [arena(), alloc(3), reserve(3, 0)])
    assert r.results[2] == 0
    assert the_arena(r).rt.intervals() == [(0, 3), (4, 16)]


def test_R10_reserved_slots_are_not_allocated(session: Session) -> None:
    ops = [arena(), reserve(0, 2), alloc(1), ("arena.alloc", {"addr": "any"})]
    r = run(session, ops)
    assert r.finding is None
    assert r.results[2] == 0
    assert r.results[3] == FIXED_BASE + 2 * PAGE_SIZE
    assert [slot_state(r, 0, p) for p in (0, 1, 2)] == ["EMPTY", "EMPTY", "REAL"]


def test_R10_misaligned_reserve_returns_0_and_reserves_nothing(session: Session) -> None:
    # arena.c arena_reserve_pages(): a misaligned address returns 0 before any check.
    r = run(session, [arena(), ("arena.reserve", {"pgoff": 3, "page_cnt": 4, "addr": "misaligned"})])
    a = r.machine.handles["arena"][0]
    assert r.finding is None and r.results[1] == 0 and a.rt.intervals() == [(0, 16)]


def test_R10_reserve_of_a_large_range(session: Session) -> None:
    ops = [arena(max_entries=8192), ("arena.reserve", {"pgoff": 4096, "page_cnt": 4096})]
    overlapping = ("arena.reserve", {"pgoff": 4095, "page_cnt": 4096})
    past_the_end = ("arena.reserve", {"pgoff": 4097, "page_cnt": 4096})
    r = run(session, [*ops, overlapping, past_the_end])
    a = r.machine.handles["arena"][0]
    assert r.finding is None and r.results[1] == 0
    assert r.results[2] == EBUSY and r.results[3] == EINVAL
    assert a.rt.intervals() == [(0, 4096)]


def test_R10_reserve_lock_failure_is_ebusy(session: Session) -> None:
    r = run(session, [arena(), reserve(3, 1)], inject=[("arena_spin_lock", 1)])
    assert r.results[1] == EBUSY
    assert the_arena(r).rt.intervals() == [(0, 16)]


def test_R6_free_starting_below_user_vm_start_is_a_noop(session: Session) -> None:
    # kernel/bpf/arena.c (kernel-patches/bpf 0b79959d) arena_free_pages() returns at once when
    # the range starts below user_vm_start: a 2-page free one page below it (pgoff 2^20 - 1
    # wraps the low 32 bits there) frees neither slot 0's page nor any range-tree offset.
    below = MAX_PAGES - 1
    ops = [
        ("arena.create", {"max_entries": 2, "user_vm_start": "fixed_below_4g"}),
        ("arena.alloc", {"addr": "fixed", "pgoff": 0}),
        ("arena.free", {"pgoff": below, "page_cnt": 2}),
        ("arena.alloc", {"addr": "fixed", "pgoff": 0}),
        ("arena.alloc", {"addr": "any"}),
        ("arena.alloc", {"addr": "any"}),
    ]
    r = run(session, ops)
    a = r.machine.handles["arena"][0]
    assert r.finding is None
    assert a.user_vm_start & 0xFFFFFFFF == 0xFFFFE000
    assert r.results[1] == a.user_vm_start and r.results[2] == "noop"
    assert slot_state(r, 0, 0) == "REAL" and not r.machine.pages[0x1001].freed
    assert r.results[3] == 0, "slot 0 is still TAKEN: an explicit allocation of it fails"
    # Best fit: slot 1, then nothing: no offset past the arena was made FREE.
    assert r.results[4] == a.uaddr(1) and r.results[5] == 0
    assert a.rt.intervals() == [] and a.rt.unavailable() == []

"""R7, R8, R10, R11: the range tree's unavailable state (kernel/bpf/arena.c and range_tree.c,
kernel-patches/bpf 0b79959d). A range is unavailable from a free's range-tree update until
after its TLB flush, and while a user fault maps a slot's page without the lock; nothing can
claim it meanwhile.

Arena 0 has 16 pages at the fixed user_vm_start, so slot ``pgoff`` has the 32-bit user offset
``pgoff * PAGE_SIZE``."""

from __future__ import annotations

from typing import Any

import pytest
from fuzzkit_arena.arena import Arena
from fuzzkit_arena.range_tree import EAGAIN
from helpers import ARCHES, arena, preempted, run, slot_state, step_of

from fuzzkit import PAGE_SIZE, RunResult
from fuzzkit.runner import Session

Op = tuple[str, dict[str, Any]]
MMAP: Op = ("arena.mmap", {})
WORKER: Op = ("arena.free_worker", {})


def the_arena(result: RunResult) -> Arena:
    found: Arena = result.machine.handles["arena"][0]
    return found


def alloc(pgoff: int) -> Op:
    return ("arena.alloc", {"addr": "fixed", "pgoff": pgoff, "page_cnt": 1})


def free(pgoff: int) -> Op:
    return ("arena.free", {"pgoff": pgoff, "page_cnt": 1})


def user(pgoff: int, write: bool = False, value: int = 0) -> Op:
    return ("arena.user_access", {"pgoff": pgoff, "write": write, "value": value})


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_a_free_of_a_slot_a_user_fault_holds_is_dropped(session: Session, arch: str) -> None:
    # cpu1's user fault found slot 3's page and holds the slot while it maps it without the
    # lock; cpu0's free meets the hold (range_tree_set_unavail: -EAGAIN) and returns having
    # done nothing. The page stays allocated and mapped, and the store lands in it.
    ops = [arena(), (0, *MMAP), (0, *alloc(3)), (1, *user(3, write=True, value=0x5A)), (0, *free(3))]
    plain = run(session, ops, arch=arch, trace=True)
    alloc_done = step_of(plain, 0, "done", nth=3)
    to_fault = run(session, ops, arch=arch, trace=True, switches=[(alloc_done + 1, 1)])
    held = step_of(to_fault, 1, "arena_vm_fault")
    r = run(session, ops, arch=arch, trace=True, switches=[(alloc_done + 1, 1), (held + 1, 0)])
    m, a = r.machine, the_arena(r)
    assert r.finding is None and r.trace is not None
    order = [(t.call, t.label) for t in r.trace]
    assert order.index((4, "done")) < order.index((3, "vmf_insert_page"))
    assert r.results[4] == "busy" and r.results[3] == 0x5A
    page = m.page_of(m.ptes[a.vpage(3)])
    assert page is not None and not page.freed and page.umaps == 1
    assert a.rt.intervals() == [(0, 3), (4, 16)] and a.rt.unavailable() == [] and a.holds == {}


@pytest.mark.parametrize("arch", ARCHES)
def test_R10_reserve_of_a_slot_being_freed_is_eagain(session: Session, arch: str) -> None:
    # Between the free's unlock and its flush the slot is unavailable: is_range_tree_set()
    # finds it covered, and range_tree_clear() refuses it with -EAGAIN, which reserve returns.
    ops = [arena(), (0, *alloc(3)), (0, *free(3)), (1, "arena.reserve", {"pgoff": 3, "page_cnt": 1})]
    r = preempted(session, ops, cpu=0, after="spin_unlock", to=1, arch=arch)
    a = the_arena(r)
    assert r.finding is None
    assert r.results[3] == EAGAIN and r.results[2] == "freed"
    assert a.rt.intervals() == [(0, 16)] and a.rt.unavailable() == []


def test_R8_lock_failure_after_the_flush_leaves_the_release_to_the_worker(session: Session) -> None:
    # arena_spin_lock arrivals: #1 the allocation, #2 the free, #3 the free again after its
    # flush, which fails: the pages are gone, but the slot stays unavailable in a release-only
    # span until the worker makes it FREE. Until then it cannot be allocated.
    ops = [arena(), alloc(3), free(3), alloc(3), WORKER, alloc(3)]
    r = run(session, ops, inject=[("arena_spin_lock", 3)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "freed" and r.machine.pages[0x1001].freed
    assert r.results[3] == 0 and r.results[4] == 1
    assert r.results[5] == r.results[1] and slot_state(r, 0, 3) == "REAL"
    assert a.free_spans == [] and a.rt.unavailable() == [] and a.holds == {}

    before = run(session, ops[:3], inject=[("arena_spin_lock", 3)])
    a = the_arena(before)
    assert a.free_spans == [(3 * PAGE_SIZE, 1, True)] and a.rt.unavailable() == [(3, 4)]


def test_R11_a_user_fault_on_a_range_left_to_the_worker_waits_for_it(session: Session) -> None:
    # The retried fault finds the slot unavailable with nobody on a CPU to end that: the
    # work item runs meanwhile (modelled on the faulting CPU), then the fault maps a new page.
    ops = [arena(), MMAP, alloc(3), free(3), user(3)]
    r = run(session, ops, inject=[("arena_spin_lock", 3)], trace=True)
    a = the_arena(r)
    assert r.finding is None and r.trace is not None
    labels = [t.label for t in r.trace if t.call == 4]
    assert labels.index("range_tree_make_avail") < labels.index("vmf_insert_page")
    assert r.results[4] == 0 and slot_state(r, 0, 3) == "REAL"
    assert a.free_spans == [] and a.rt.unavailable() == [] and a.rt.intervals() == [(0, 3), (4, 16)]


@pytest.mark.parametrize("arch", ARCHES)
def test_R11_two_user_faults_on_one_slot_map_one_page(session: Session, arch: str) -> None:
    # cpu0 holds slot 3 while it maps its lazily allocated page; cpu1's fault of the same slot
    # finds the page, cannot hold the slot (-EAGAIN), waits for cpu0 and then maps that page.
    ops = [arena(), (0, *MMAP), (0, *user(3, write=True, value=7)), (1, *user(3))]
    r = preempted(session, ops, cpu=0, after="arena_vm_fault", to=1, arch=arch)
    a = the_arena(r)
    assert r.finding is None and r.trace is not None
    assert "wait arena0.unavail[3+1]" in [t.label for t in r.trace if t.call == 3]
    assert r.results[3] == 7 and len(r.machine.user_ptes) == 1 and a.nr_pages == 1
    assert a.holds == {} and a.rt.unavailable() == []


@pytest.mark.parametrize("arch", ARCHES)
def test_R7_a_second_free_during_the_first_ones_flush_is_dropped(session: Session, arch: str) -> None:
    # cpu1 frees slot 3 again while cpu0's free of it is between its unlock and its flush:
    # range_tree_set_unavail() meets cpu0's unavailable node (-EAGAIN), so cpu1's free does
    # nothing; cpu0's completes and the page is freed once.
    ops = [arena(), (0, *alloc(3)), (0, *free(3)), (1, *free(3))]
    r = preempted(session, ops, cpu=0, after="spin_unlock", to=1, arch=arch)
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "freed" and r.results[3] == "busy"
    assert r.machine.pages[0x1001].freed and slot_state(r, 0, 3) == "EMPTY"
    assert a.rt.intervals() == [(0, 16)] and a.holds == {}

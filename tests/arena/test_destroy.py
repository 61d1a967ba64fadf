"""R19: arena_map_free(), run when the last reference to the arena goes.

``arena.destroy`` drops the program's reference; map_free runs in whichever operation holds
the arena last. The I1 (scratch freed once, at destroy) and I2 (no double free, no free while
mapped or cached) oracles watch every run here, so a clean run is itself part of the check.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzzkit_arena.arena import Arena
from helpers import ARCHES, REVISIONS, arena, drive, program, run, slot_state

from fuzzkit import RunResult
from fuzzkit.explore import explore
from fuzzkit.runner import Session

SCRATCH_PFN = 0x1000
DESTROY: tuple[str, dict[str, Any]] = ("arena.destroy", {})

Op = tuple[str, dict[str, Any]]


def the_arena(result: RunResult, index: int = 0) -> Arena:
    found: Arena = result.machine.handles["arena"][index]
    return found


def alloc(pgoff: int, page_cnt: int = 1) -> Op:
    return ("arena.alloc", {"addr": "fixed", "pgoff": pgoff, "page_cnt": page_cnt})


def scratch_slot(pgoff: int, where: str = "slot", arena_index: int = 0) -> Op:
    """A kfunc access from the arena's main program: installs the scratch page."""
    return ("arena.kernel_access", {"arena": arena_index, "pgoff": pgoff, "where": where})


#: Closing the map fd while user space still maps the arena.
CLOSED_WHILE_MAPPED: list[Op] = [
    arena(),
    ("arena.mmap", {}),
    alloc(3),
    ("arena.user_access", {"pgoff": 3, "write": True, "value": 0x42}),
    scratch_slot(5),
    DESTROY,
]


@pytest.mark.parametrize("arch", ARCHES)
def test_R19_mapping_holds_a_reference(session: Session, arch: str) -> None:
    # mmap()'s vm_file holds the map (kernel/bpf/syscall.c bpf_map_mmap()), so closing the
    # fd frees nothing while the arena is mapped; user space keeps its memory.
    ops = [*CLOSED_WHILE_MAPPED, ("arena.user_access", {"pgoff": 3, "write": False}), alloc(4)]
    r = run(session, ops, arch=arch)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[5] == "put"
    assert a.dying and not a.destroyed and not a.leaked
    assert not any(p.freed for p in m.pages.values())
    assert slot_state(r, 0, 3) == "REAL" and slot_state(r, 0, 5) == "SCRATCH"
    assert r.results[6] == 0x42, "the mapping still reaches the page"
    assert r.results[7] == "no-arena", "no program can reach the closed map"


@pytest.mark.parametrize("arch", ARCHES)
def test_R19_the_last_munmap_destroys_the_closed_arena(session: Session, arch: str) -> None:
    r = run(
        session, [*CLOSED_WHILE_MAPPED, ("arena.munmap", {}), ("arena.user_access", {"pgoff": 3})], arch=arch
    )
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[6] == 0 and a.destroyed and not a.leaked
    # The real page and the scratch page, each freed once (I1, I2 watch the run).
    assert sorted(m.pages) == [SCRATCH_PFN, 0x1001] and all(p.freed for p in m.pages.values())
    assert m.ptes == {} and m.user_ptes == {}
    assert r.results[7] == "no-arena"


def test_R19_map_free_refuses_while_mapped(session: Session) -> None:
    # The WARN-and-leak branch of arena_map_free(): unreachable through the ops (R19), so
    # called directly on an arena whose fd is closed but which is still mapped.
    r = run(session, CLOSED_WHILE_MAPPED)
    m, a = r.machine, the_arena(r)
    assert drive(m.k.arena_map_free(m, m.cpus[0], a)) == "refused"
    assert a.leaked and not any(p.freed for p in m.pages.values())


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_R19_frees_every_page_once_and_the_scratch_page_last(
    session: Session, arch: str, revision: str
) -> None:
    ops = [
        arena(),
        ("arena.mmap", {}),
        alloc(2, 3),
        ("arena.user_access", {"pgoff": 9, "write": True}),  # lazily allocated and user-mapped
        ("arena.prog_access", {"pgoff": 2}),  # cached in cpu0's TLB
        scratch_slot(7),
        scratch_slot(3, where="upper_guard"),  # SCRATCH in the upper half-guard
        ("arena.free", {"pgoff": 4, "sleepable": False}),  # deferred: drained by map_free
        ("arena.munmap", {}),
        DESTROY,
    ]
    r = run(session, ops, arch=arch, revision=revision, trace=True)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[9] == "put"
    assert a.destroyed and not a.leaked
    assert a.free_spans == [] and a.nr_pages == 0
    # Four real pages (slots 2-4 and 9) and the scratch page, each freed exactly once (I2
    # raises on a second free), the scratch page after every other page.
    assert sorted(m.pages) == [SCRATCH_PFN, 0x1001, 0x1002, 0x1003, 0x1004]
    assert all(p.freed for p in m.pages.values())
    assert r.trace is not None
    frees = [n for t in r.trace if t.call == 9 for n in t.notes if n.startswith("free pfn")]
    assert sorted(frees) == sorted(f"free pfn {pfn:#x}" for pfn in m.pages)
    assert frees[-1] == f"free pfn {SCRATCH_PFN:#x}"
    # The band holds no PTE and no CPU caches a translation into it.
    assert m.ptes == {}
    assert all(c.tlb == {} for c in m.cpus)


def test_R19_drains_the_deferred_frees_first(session: Session) -> None:
    ops = [arena(), alloc(3, 2), ("arena.free", {"pgoff": 3, "page_cnt": 2, "sleepable": False}), DESTROY]
    r = run(session, ops, trace=True)
    assert r.finding is None
    assert the_arena(r).free_spans == []
    destroy_labels = [t.label for t in r.trace or [] if t.call == 3]
    # The worker's clear, flush and free come before map_free tears the band down.
    assert destroy_labels.index("flush_tlb_kernel_range") < destroy_labels.index("free_vm_area")
    assert all(p.freed for p in r.machine.pages.values())


def test_R19_waits_for_operations_in_flight(session: Session) -> None:
    # cpu1's kfunc access holds the arena while cpu0 drops the last program reference: the
    # teardown runs on cpu1 when its access is done.
    ops = [arena(), (0, *alloc(3)), (1, *scratch_slot(5)), (0, *DESTROY), (0, *alloc(4))]
    base = run(session, ops, trace=True)
    assert base.trace is not None
    allocated = next(t.step for t in base.trace if t.call == 1 and t.label == "done")
    # After the allocation cpu1 faults, then cpu0 destroys and tries to allocate, then cpu1
    # finishes its access.
    r = run(session, ops, switches=[(allocated + 1, 1), (allocated + 2, 0)], trace=True)
    a = the_arena(r)
    assert r.finding is None and r.trace is not None
    assert r.results[3] == "put" and r.results[4] == "no-arena"
    teardown = next(t for t in r.trace if t.label == "free_vm_area")
    assert teardown.cpu == 1 and teardown.op == "arena.kernel_access"
    assert a.destroyed
    assert all(p.freed for p in r.machine.pages.values())


@pytest.mark.parametrize("arch", ARCHES)
def test_R19_destroy_racing_a_free_and_a_kernel_access(session: Session, arch: str) -> None:
    prog = program(
        [
            arena(),
            alloc(3),
            (1, "arena.free", {"pgoff": 3, "sleepable": False}),
            (1, *scratch_slot(5)),
            (0, *DESTROY),
        ],
        arch=arch,
    )
    e = explore(session, prog, max_switches=3)
    assert e.exhaustive and e.found is None


def test_R19_scratch_pages_are_per_arena(session: Session) -> None:
    ops = [arena(), arena(), scratch_slot(3), scratch_slot(3, arena_index=1), ("arena.destroy", {"arena": 0})]
    r = run(session, ops)
    first, second = the_arena(r, 0), the_arena(r, 1)
    assert r.finding is None
    assert first.scratch is not second.scratch
    assert first.scratch.freed and not second.scratch.freed
    assert slot_state(r, 1, 3) == "SCRATCH"

"""Conformance: the per-slot state table of docs/model.md, every cell, on both arches and
both revisions. A slot (slot 3 of a 16-page arena, user-mapped) is put in each state, then
one access or call acts on it; the cell gives the call's result, the slot's PTE and
range-tree bit afterwards, and whether the stream got a report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fuzzkit_arena.arena import Arena
from helpers import ARCHES, REVISIONS, Op, run, slot_state
from selftest_programs import MMAP, alloc, create, free, kfunc_load, kfunc_store, load, reserve, store

from fuzzkit.runner import Session

SLOT = 3
REAL_VALUE, SCRATCH_VALUE = 0x42, 0x17

#: arena.c's states for a slot: (PTE, range-tree bit) and the ops that get it there.
STATES: dict[str, list[Op]] = {
    "EMPTY/FREE": [],
    "EMPTY/TAKEN": [reserve(SLOT, 1)],
    "REAL/TAKEN": [alloc(at=SLOT), store(SLOT, REAL_VALUE)],
    "SCRATCH/FREE": [kfunc_store(SLOT, SCRATCH_VALUE)],
    "SCRATCH/TAKEN": [reserve(SLOT, 1), kfunc_store(SLOT, SCRATCH_VALUE)],
}

USER_LOAD: Op = ("arena.user_access", {"arena": 0, "pgoff": SLOT, "write": False})

ACTIONS: dict[str, Op] = {
    "prog_load": load(SLOT),
    "kfunc_load": kfunc_load(SLOT),
    "user_load": USER_LOAD,
    "alloc": alloc(at=SLOT),
    "free": free(SLOT),
}


@dataclass(frozen=True)
class Cell:
    result: int | str | Callable[[Arena], int]
    pte: str
    free: bool
    reported: bool = False


def at_slot(a: Arena) -> int:
    return a.uaddr(SLOT)


def cell(state: str, action: str, revision: str) -> Cell:
    """The kernel's outcome, reasoned from arena.c (R2, R4, R7, R9, R11-R13, R15)."""
    pte, bit = state.split("/")
    free_now = bit == "FREE"
    if action == "free":  # R7, R9: no ownership check; scratch skipped, left EMPTY
        return Cell("freed", "EMPTY", True)
    if pte == "EMPTY":
        return {
            "prog_load": Cell("fixup", "EMPTY", free_now, reported=True),  # R12
            "kfunc_load": Cell(0, "SCRATCH", free_now, reported=True),  # R15
            "user_load": Cell(0, "REAL", False),  # R11: reserved slots too
            "alloc": Cell(at_slot, "REAL", False) if free_now else Cell(0, "EMPTY", False),  # R2
        }[action]
    if pte == "REAL":
        value = Cell(REAL_VALUE, "REAL", False)
        return {"prog_load": value, "kfunc_load": value, "user_load": value, "alloc": Cell(0, "REAL", False)}[
            action
        ]
    scratch = Cell(SCRATCH_VALUE, "SCRATCH", free_now)  # R13: no fault, no report
    if action == "user_load":
        return Cell("SIGSEGV", "SCRATCH", free_now)  # R11
    if action == "alloc":
        if not free_now:
            return Cell(0, "SCRATCH", False)
        # R4: merged refuses the SCRATCH PTE and rolls back; fixed replaces it.
        return Cell(at_slot, "REAL", False) if revision == "fixed" else Cell(0, "SCRATCH", True)
    return scratch


CASES = [(s, a, arch, rev) for s in STATES for a in ACTIONS for arch in ARCHES for rev in REVISIONS]


@pytest.mark.parametrize(("state", "action", "arch", "revision"), CASES, ids=["-".join(c) for c in CASES])
def test_slot_state_table(session: Session, state: str, action: str, arch: str, revision: str) -> None:
    setup = [create(16), MMAP, *STATES[state]]
    r = run(session, [*setup, ACTIONS[action]], arch=arch, revision=revision)
    assert r.finding is None
    a: Arena = r.machine.handles["arena"][0]
    before = run(session, setup, arch=arch, revision=revision)
    assert before.finding is None and slot_state(before, 0, SLOT) == state.split("/")[0]
    want = cell(state, action, revision)
    result = want.result(a) if callable(want.result) else want.result
    assert r.results[len(setup)] == result
    assert slot_state(r, 0, SLOT) == want.pte
    assert (a.rt.is_set(SLOT, 1) == 0) == want.free
    reports = len(a.prog.stream.attempts) - len(before.machine.handles["arena"][0].prog.stream.attempts)
    assert reports == int(want.reported)


def test_fixed_allocation_over_scratch_reads_zero_on_arm64(session: Session) -> None:
    # The table's fixed-revision cell, one step further (I9): the new page, not scratch data.
    ops = [create(16), MMAP, *STATES["SCRATCH/FREE"], alloc(at=SLOT), load(SLOT)]
    r = run(session, ops, arch="arm64", revision="fixed")
    assert r.finding is None and r.results[3] == r.machine.handles["arena"][0].uaddr(SLOT)
    assert r.results[4] == 0


def test_fixed_allocation_over_scratch_leaves_x86_a_stale_translation(session: Session) -> None:
    # On x86 flush_tlb_before_set() is a no-op (R17): the CPU whose kfunc store cached the
    # scratch translation still reads scratch data after the allocation replaced the PTE.
    # The real code's behaviour, reported as I9.
    ops = [create(16), MMAP, *STATES["SCRATCH/FREE"], alloc(at=SLOT), load(SLOT)]
    r = run(session, ops, arch="x86", revision="fixed")
    assert r.finding is not None and r.finding.spec_id == "I9" and r.finding.call == 4

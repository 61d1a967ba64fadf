"""R11-R13: user faults on the arena mapping and JITed BPF program accesses.

Arena 0 has 16 pages at the fixed user_vm_start FIXED_BASE and is mmapped by every test
that touches it from user space; the scratch page is pfn 0x1000. ``kernel_access`` from the
arena's main program is how a slot becomes SCRATCH (R15).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fuzzkit_arena.arena import NOT_LOADABLE, Arena
from fuzzkit_arena.ops import FIXED_BASE
from helpers import ARCHES, REVISIONS, arena, program, run, slot_state, vpage_of

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, RunResult
from fuzzkit.explore import explore
from fuzzkit.program import load
from fuzzkit.runner import Session

SCRATCH_PFN = 0x1000
EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"
MMAP: tuple[str, dict[str, Any]] = ("arena.mmap", {})

Op = tuple[str, dict[str, Any]]


def the_arena(result: RunResult, index: int = 0) -> Arena:
    found: Arena = result.machine.handles["arena"][index]
    return found


def uaddr(pgoff: int) -> int:
    return FIXED_BASE + pgoff * PAGE_SIZE


def alloc(pgoff: int) -> Op:
    return ("arena.alloc", {"addr": "fixed", "pgoff": pgoff})


def user(pgoff: int, write: bool = False, word: int = 0, value: int = 0xA5) -> Op:
    return ("arena.user_access", {"pgoff": pgoff, "write": write, "word": word, "value": value})


def prog(pgoff: int, write: bool = False, word: int = 0, value: int = 0xA5) -> Op:
    return ("arena.prog_access", {"pgoff": pgoff, "write": write, "off": word * 8, "value": value})


def scratch_slot(pgoff: int, insn: str = "load", value: int = 0xA5) -> Op:
    """A kfunc access from the arena's main program to an EMPTY slot: installs the scratch page."""
    return ("arena.kernel_access", {"pgoff": pgoff, "insn": insn, "value": value})


def labels(result: RunResult, call: int) -> list[str]:
    assert result.trace is not None
    return [t.label for t in result.trace if t.call == call]


# -- R11: user faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R11_real_slot_is_mapped_with_a_page_reference(session: Session, arch: str) -> None:
    ops = [arena(), MMAP, alloc(3), prog(3, write=True, word=1, value=0x5A), user(3, word=1)]
    r = run(session, ops, arch=arch)
    m = r.machine
    assert r.finding is None
    assert r.results[4] == 0x5A  # what the BPF program stored
    page = m.page_of(m.ptes[vpage_of(r, 0, 3)])
    assert page is not None and m.user_ptes == {uaddr(3) >> PAGE_SHIFT: page}
    assert page.umaps == 1
    # Nothing new was allocated or counted by the fault.
    assert list(m.pages) == [SCRATCH_PFN, page.pfn] and the_arena(r).nr_pages == 1


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_R11_user_fault_on_a_scratched_slot_is_sigsegv(session: Session, arch: str, revision: str) -> None:
    ops = [arena(), MMAP, scratch_slot(3, insn="store"), user(3), user(3, write=True, value=1)]
    r = run(session, ops, arch=arch, revision=revision)
    a = the_arena(r)
    assert r.finding is None  # I3 would fire if the scratch page reached user space
    assert r.results[3] == "SIGSEGV" and r.results[4] == "SIGSEGV"
    assert r.machine.user_ptes == {} and a.scratch.umaps == 0
    # No lazy allocation over the scratch page: the slot stays SCRATCH, FREE and uncounted.
    assert slot_state(r, 0, 3) == "SCRATCH"
    assert a.rt.intervals() == [(0, 16)]
    assert a.nr_pages == 0 and list(r.machine.pages) == [SCRATCH_PFN]
    assert a.scratch.data == {0: 0xA5}


def test_R11_empty_slot_with_segv_on_fault_is_sigsegv(session: Session) -> None:
    r = run(session, [arena(flags="mmapable|segv_on_fault"), MMAP, user(3, write=True), alloc(4), user(4)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[2] == "SIGSEGV"
    assert slot_state(r, 0, 3) == "EMPTY" and a.rt.is_set(3, 1) == 0
    # Allocated slots still fault in normally.
    assert r.results[4] == 0
    assert a.nr_pages == 1


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_R11_empty_slot_is_allocated_lazily(session: Session, arch: str, revision: str) -> None:
    ops = [arena(), MMAP, user(3, write=True, word=2, value=0x42), user(3, word=2), prog(3, word=2)]
    r = run(session, ops, arch=arch, revision=revision)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[2] == 0x42 and r.results[3] == 0x42
    assert r.results[4] == 0x42  # the kernel mapping reaches the same page
    assert slot_state(r, 0, 3) == "REAL"
    assert a.rt.intervals() == [(0, 3), (4, 16)]
    assert a.nr_pages == 1
    page = m.page_of(m.ptes[vpage_of(r, 0, 3)])
    assert page is not None and page.umaps == 1


def test_R11_reserved_slot_is_allocated_lazily(session: Session) -> None:
    r = run(session, [arena(), MMAP, ("arena.reserve", {"pgoff": 3, "page_cnt": 1}), user(3, write=True)])
    a = the_arena(r)
    assert r.finding is None
    assert r.results[3] == 0xA5
    assert slot_state(r, 0, 3) == "REAL"
    assert a.rt.intervals() == [(0, 3), (4, 16)]
    assert a.nr_pages == 1


@pytest.mark.parametrize(
    "inject",
    [("alloc_page", 2), ("range_tree_node_alloc", 2)],
    ids=["page_allocation", "range_tree_split"],
)
def test_R11_lazy_allocation_failure_is_sigsegv_with_the_tree_rolled_back(
    session: Session, inject: tuple[str, int]
) -> None:
    # alloc_page #1 and range_tree_node_alloc #1 are the arena's creation.
    r = run(session, [arena(), MMAP, user(3, write=True)], inject=[inject])
    a = the_arena(r)
    assert r.injected == [inject]
    assert r.finding is None
    assert r.results[2] == "SIGSEGV"
    assert a.rt.intervals() == [(0, 16)] and a.ref.free == (1 << 16) - 1
    assert r.machine.ptes == {} and r.machine.user_ptes == {}
    assert a.nr_pages == 0
    assert all(p.freed for p in r.machine.pages.values() if p is not a.scratch)


@pytest.mark.parametrize("arch", ARCHES)
def test_R11_install_failure_is_sigsegv_in_merged_and_replaces_scratch_in_fixed(
    session: Session, arch: str
) -> None:
    """cpu1's kfunc scratches the slot between the fault's PTE read and its install."""
    ops = [arena(), MMAP, (0, *user(3)), (1, *scratch_slot(3))]
    base = run(session, ops, arch=arch, trace=True)
    assert base.trace is not None
    read = next(t.step for t in base.trace if t.call == 2 and t.label == "ptep_get")
    for revision in REVISIONS:
        r = run(session, ops, arch=arch, revision=revision, switches=[(read + 1, 1)], trace=True)
        a = the_arena(r)
        assert r.finding is None
        assert len(a.prog.stream.lines) == 1  # cpu1 installed the scratch page and reported
        if revision == "merged":
            # -EBUSY: the page goes back, the tree is rolled back, the slot stays SCRATCH.
            assert r.results[2] == "SIGSEGV"
            assert slot_state(r, 0, 3) == "SCRATCH"
            assert a.rt.intervals() == [(0, 16)] and a.nr_pages == 0
            assert r.machine.pages[0x1001].freed
        else:
            assert r.results[2] == 0
            assert slot_state(r, 0, 3) == "REAL"
            assert a.rt.intervals() == [(0, 3), (4, 16)] and a.nr_pages == 1
            assert "ptep_get_and_clear" in labels(r, 2)


def test_R11_lock_failure_retries_the_fault(session: Session) -> None:
    # arena_spin_lock #1 fails: VM_FAULT_RETRY, the access faults again and succeeds.
    r = run(session, [arena(), MMAP, user(3, write=True)], inject=[("arena_spin_lock", 1)], trace=True)
    assert r.finding is None
    assert r.results[2] == 0xA5
    assert slot_state(r, 0, 3) == "REAL"
    assert labels(r, 2)[:2] == ["spin_lock failed", "lock arena0.spinlock"]


def test_R11_fault_after_munmap_is_sigsegv(session: Session) -> None:
    r = run(session, [arena(), MMAP, alloc(3), ("arena.munmap", {}), user(3)])
    assert r.results[4] == "SIGSEGV"
    assert r.machine.user_ptes == {}


@pytest.mark.parametrize("arch", ARCHES)
def test_R11_user_faults_racing_a_free_never_map_a_freed_page(session: Session, arch: str) -> None:
    # The fault takes its page reference (here: the user mapping) before dropping the arena
    # lock, so the free's zap removes it before the page goes; two CPUs faulting the same page
    # map it once. I2 checks every free against the page's mappings.
    ops = [arena(), MMAP, alloc(3), (0, *user(3)), (1, *user(3)), (0, "arena.free", {"pgoff": 3})]
    e = explore(session, program(ops, arch=arch), max_switches=3)
    assert e.exhaustive and e.found is None


@pytest.mark.parametrize("arch", ARCHES)
def test_R11_user_fault_racing_munmap_and_destroy(session: Session, arch: str) -> None:
    # A fault that waited for the arena lock while munmap removed the VMA maps nothing, so
    # the teardown that follows never frees a user-mapped page.
    ops = [arena(), MMAP, alloc(3), (0, "arena.munmap", {}), (0, "arena.destroy", {}), (1, *user(3))]
    e = explore(session, program(ops, arch=arch), max_switches=3)
    assert e.exhaustive and e.found is None


def test_R11_example_user_fault_on_scratch_replays_clean(session: Session) -> None:
    r = session.run(load(EXAMPLES / "user_fault_on_scratch.json"))
    assert r.finding is None
    assert r.results[3] == "SIGSEGV" and r.results[4] == 0xA5
    assert r.machine.user_ptes == {} and slot_state(r, 0, 3) == "SCRATCH"


# -- R12: BPF program access to an EMPTY slot ------------------------------------------------------


@pytest.mark.parametrize("write", [False, True], ids=["load", "store"])
@pytest.mark.parametrize("arch", ARCHES)
def test_R12_empty_slot_is_fixed_up_reported_and_skipped(session: Session, arch: str, write: bool) -> None:
    r = run(session, [arena(), prog(3, write=write, value=0x99)], arch=arch, trace=True)
    m, a = r.machine, the_arena(r)
    assert r.finding is None  # I5: the PTE did not change
    assert r.results[1] == "fixup"
    # Handled by the exception table alone: one fault, no scratch install, no retry.
    assert labels(r, 1) == ["fault", "extable fixup", "done"]
    assert m.ptes == {} and slot_state(r, 0, 3) == "EMPTY"
    assert not a.scratch.data and a.scratch.kmaps == 0
    [line] = a.prog.stream.lines
    kind = "WRITE" if write else "READ"
    assert line.startswith(f"ERROR: Arena {kind} access at unmapped address {uaddr(3):#x} ")
    assert a.nr_pages == 0 and a.rt.intervals() == [(0, 16)]


def test_R12_reserved_slot_is_still_empty(session: Session) -> None:
    r = run(session, [arena(), ("arena.reserve", {"pgoff": 3, "page_cnt": 1}), prog(3)])
    assert r.finding is None
    assert r.results[2] == "fixup"
    assert slot_state(r, 0, 3) == "EMPTY"
    assert len(the_arena(r).prog.stream.lines) == 1


def test_R12_freed_slot_is_empty_again(session: Session) -> None:
    ops = [arena(), alloc(3), prog(3, write=True, value=7), ("arena.free", {"pgoff": 3}), prog(3)]
    r = run(session, ops)
    assert r.finding is None
    assert r.results[2] == 7 and r.results[4] == "fixup"
    assert len(the_arena(r).prog.stream.lines) == 1


@pytest.mark.parametrize("arch", ARCHES)
def test_R12_program_fault_reports_the_exact_byte_address(session: Session, arch: str) -> None:
    # ex_handler_bpf() reports reg + off, byte for byte: selftest arena_stream's store to
    # user_vm_start + 0x7fff (page 7, byte 0xfff) of a one-page arena placed by mmap.
    ops = [
        ("arena.create", {"max_entries": 1, "user_vm_start": "mmap"}),
        MMAP,
        ("arena.prog_access", {"pgoff": 7, "off": 0xFFF, "write": True, "value": 1}),
    ]
    r = run(session, ops, arch=arch)
    a = the_arena(r)
    assert r.finding is None and r.results[2] == "fixup"
    assert a.user_vm_start & 0xFFFFFFFF, "mmap placed it off a 4 GiB boundary"
    [line] = a.prog.stream.lines
    assert line.startswith(f"ERROR: Arena WRITE access at unmapped address {a.user_vm_start + 0x7FFF:#x} ")


def test_R12_offset_past_the_band_top_is_not_wrapped(session: Session) -> None:
    # The JIT adds off to (u32)reg without wrapping: from the last page of a 4 GiB arena, an
    # offset into the next page reaches the upper guard, and the report shows 4 GiB + off.
    ops = [("arena.create", {"max_entries": 1 << 20}), prog(1048575, word=0)]
    ops[1][1]["off"] = PAGE_SIZE - 1
    r = run(session, ops)
    assert r.finding is None and r.results[1] == "fixup"
    [line] = the_arena(r).prog.stream.lines
    assert f"{uaddr(1048575) + PAGE_SIZE - 1:#x} " in line


@pytest.mark.parametrize("ctx", ["subprog", "timer_cb"])
def test_R12_callback_fault_reports_to_the_main_programs_stream(session: Session, ctx: str) -> None:
    # A subprogram, and a bpf_timer callback with no frame of its main program below, report
    # through aux->main_prog_aux to the main program's stream (selftest arena_stream).
    op = ("arena.prog_access", {"pgoff": 5, "off": 0xEEF, "write": True, "value": 1, "ctx": ctx})
    r = run(session, [arena(), op], trace=True)
    a = the_arena(r)
    assert r.finding is None and r.results[1] == "fixup" and slot_state(r, 0, 5) == "EMPTY"
    [line] = a.prog.stream.lines
    assert f"{uaddr(5) + 0xEEF:#x} [arena0.prog.{ctx.replace('subprog', 'sub')} <- " in line


# -- R13: BPF program access to a SCRATCH slot -----------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R13_scratch_slot_reads_and_writes_the_shared_scratch_page(session: Session, arch: str) -> None:
    ops = [
        arena(),
        scratch_slot(3, insn="store", value=0x11),  # report 1
        scratch_slot(5),  # report 2
        prog(5),  # same scratch page: sees the kfunc's store to slot 3
        prog(3, write=True, word=2, value=0x22),
        prog(5, word=2),
    ]
    r = run(session, ops, arch=arch, trace=True)
    m, a = r.machine, the_arena(r)
    assert r.finding is None
    assert r.results[3] == 0x11 and r.results[4] == 0x22 and r.results[5] == 0x22
    assert a.scratch.data == {0: 0x11, 2: 0x22}
    # No fault and no report for the BPF accesses; the PTEs are untouched.
    for call in (3, 4, 5):
        assert "fault" not in labels(r, call)
    assert len(a.prog.stream.lines) == 2
    assert slot_state(r, 0, 3) == slot_state(r, 0, 5) == "SCRATCH"
    assert a.scratch.kmaps == 2 and a.nr_pages == 0
    assert list(m.pages) == [SCRATCH_PFN]


# -- no program of an arena runs before its user address is set (the verifier) -------------------

FIRST_MMAP = arena(user_vm_start="mmap")


@pytest.mark.parametrize("arch", ARCHES)
def test_no_program_of_an_arena_runs_before_its_first_mmap(session: Session, arch: str) -> None:
    # The verifier refuses a program using an arena with no user address; the first mmap sets
    # it, and then the same accesses run, fault and report as ever.
    r = run(session, [FIRST_MMAP, prog(3), scratch_slot(3), MMAP, prog(3), scratch_slot(3)], arch=arch)
    assert r.finding is None
    assert r.results[1] == r.results[2] == NOT_LOADABLE
    assert r.results[4] == "fixup" and slot_state(r, 0, 3) == "SCRATCH"
    assert len(the_arena(r).prog.stream.attempts) == 2


def test_struct_ops_programs_using_an_arena_load_only_after_its_first_mmap(session: Session) -> None:
    load = ("struct_ops.load", {"arena": 0})
    r = run(session, [FIRST_MMAP, load, MMAP, load])
    assert r.finding is None
    assert r.results[1] == NOT_LOADABLE and r.results[3] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_a_program_never_sees_its_arena_user_address_change(session: Session, arch: str) -> None:
    # A kernel access racing the first mmap once reported an address rebased with the new
    # user_vm_start after installing scratch under the old one (I7): no schedule runs it now.
    ops = [(0, *FIRST_MMAP), (0, *scratch_slot(3)), (1, *MMAP)]
    result = explore(session, program(ops, arch=arch, cpus=2), max_switches=2)
    assert result.exhaustive and result.found is None

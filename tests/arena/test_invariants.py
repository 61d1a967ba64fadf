"""The arena's oracles (plugins/fuzzkit_arena/invariants.py): each one fires on a state that
breaks its invariant and stays quiet on the real code.

States are broken the way a user asks fuzzkit a design question: an in-process variant plugin
replaces one named kernel primitive (or, for the fault-path order, registers a variant arch).
Where no primitive can produce the state, the check is called directly on a crafted machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzzkit_arena import invariants, kernel
from fuzzkit_arena.arena import KERN_VM_SZ, Arena, BpfProg
from fuzzkit_arena.ops import FIXED_BASE
from fuzzkit_arena.range_tree import ENOMEM
from fuzzkit_x86 import X86
from helpers import ARCHES, Op, drive, preempted, program, run, slot_state

from fuzzkit import (
    PAGE_SHIFT,
    PAGE_SIZE,
    Call,
    Cpu,
    Machine,
    RunResult,
    Steps,
    Violation,
    hookimpl,
    load_registry,
    replacing,
)
from fuzzkit.cli import main as fuzzkit_main
from fuzzkit.explore import explore
from fuzzkit.program import load
from fuzzkit.runner import Session

EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"

CREATE: Op = ("arena.create", {"max_entries": 16})


def alloc(pgoff: int | None = None, page_cnt: int = 1, *, cpu: int = 0, **args: Any) -> Op:
    where = {"addr": "any"} if pgoff is None else {"addr": "fixed", "pgoff": pgoff}
    return (cpu, "arena.alloc", {"arena": 0, **where, "page_cnt": page_cnt, **args})


def free(pgoff: int, page_cnt: int = 1, *, cpu: int = 0, **args: Any) -> Op:
    return (cpu, "arena.free", {"arena": 0, "pgoff": pgoff, "page_cnt": page_cnt, **args})


def kaccess(pgoff: int, *, cpu: int = 0, **args: Any) -> Op:
    """A kfunc touching arena memory from a BPF main program (installs scratch on EMPTY)."""
    return (cpu, "arena.kernel_access", {"arena": 0, "pgoff": pgoff, "stack": "main", **args})


def the_arena(result: RunResult, index: int = 0) -> Arena:
    arena: Arena = result.machine.handles["arena"][index]
    return arena


def assert_finding(
    r: RunResult, spec_id: str, op: str, arch: str, revision: str, says: str, detail: str = ""
) -> None:
    """The finding's SPEC id, its title naming the op and the configuration, the kind of
    breakage in the title and, when given, the specifics kept out of it."""
    f = r.finding
    assert f is not None, f"expected {spec_id}, the run was clean"
    assert f.spec_id == spec_id, f.title
    assert f.op == op and f.title.startswith(f"{spec_id} ")
    assert f.title.endswith(f" in {op} ({arch}, {revision})"), f.title
    assert says in f.message, f.title
    assert detail in f.detail, f.detail


# -- variant plugins ------------------------------------------------------------------------------


def variant(primitive: str, fn: Callable[..., Any], reason: str) -> Session:
    return Session(load_registry(extra=[replacing(reason=reason, **{primitive: fn})]))


class ExtraArch:
    """An in-process plugin registering a variant arch (a different fault-path order)."""

    def __init__(self, cls: type[X86]) -> None:
        self.__name__ = f"arch.{cls.name}"
        self.cls = cls

    @hookimpl
    def fuzzkit_register_arches(self, register: Any) -> None:
        register(self.cls)


def with_arch(cls: type[X86]) -> Session:
    return Session(load_registry(extra=[("variant_arch", ExtraArch(cls))]))


_NOT_PRESENT = frozenset({"not_present"})


def map_free_without(*, real_pages: bool, scratch: bool) -> Callable[..., Steps]:
    """arena_map_free() that forgets to free the real pages and/or the scratch page."""

    def arena_map_free(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
        lo = arena.kbase >> PAGE_SHIFT
        vpages = kernel.apply_to_existing_page_range(m, lo, lo + (KERN_VM_SZ >> PAGE_SHIFT))
        pages = [
            p for p in (m.page_of(m.ptes[v]) for v in vpages) if p is not None and p is not arena.scratch
        ]
        for v in vpages:
            m.set_pte(cpu, v, 0)
        arena.nr_pages -= len(pages)
        m.tlb_flush(cpu, lo, lo + (KERN_VM_SZ >> PAGE_SHIFT))
        yield "free_vm_area"
        for page in pages if real_pages else ():
            m.free_page(cpu, page)
        if scratch:
            m.free_page(cpu, arena.scratch)
        arena.destroyed = True
        yield "free scratch"
        return "destroyed"

    return arena_map_free


# -- I1: the scratch page is freed once, at destroy ----------------------------------------------

DESTROY: list[Op] = [CREATE, alloc(3), kaccess(5), ("arena.destroy", {"arena": 0})]


@pytest.mark.parametrize("arch", ARCHES)
def test_I1_fires_when_destroy_keeps_the_scratch_page(arch: str) -> None:
    s = variant("arena_map_free", map_free_without(real_pages=True, scratch=False), "scratch never freed")
    r = run(s, DESTROY, arch=arch)
    assert_finding(r, "I1", "arena.destroy", arch, "fixed", "not freed at destroy")
    assert r.finding is not None and r.finding.replaced == (("arena_map_free", "variant"),)


@pytest.mark.parametrize("arch", ARCHES)
def test_I1_quiet_on_the_real_destroy(session: Session, arch: str) -> None:
    r = run(session, DESTROY, arch=arch)
    assert r.finding is None and r.results[3] == "put"
    assert the_arena(r).scratch.freed and the_arena(r).destroyed


# -- I3: the scratch page is never user-mapped ------------------------------------------------------


def vm_fault_maps_scratch(m: Machine, cpu: Cpu, arena: Arena, uaddr: int) -> Steps:
    """arena_vm_fault() without the SCRATCH check: maps whatever the kernel PTE holds."""
    vpage = arena.kaddr(uaddr) >> PAGE_SHIFT
    page = m.page_of((yield from m.k.ptep_get(m, cpu, vpage)))
    if page is arena.scratch:
        m.user_map(uaddr >> PAGE_SHIFT, page)
        return page
    return (yield from kernel.arena_vm_fault(m, cpu, arena, uaddr))


USER_ON_SCRATCH: list[Op] = [
    CREATE,
    ("arena.mmap", {"arena": 0}),
    kaccess(3, insn="store"),
    ("arena.user_access", {"arena": 0, "pgoff": 3}),
]


@pytest.mark.parametrize("arch", ARCHES)
def test_I3_fires_when_a_user_fault_maps_the_scratch_page(arch: str) -> None:
    r = run(variant("arena_vm_fault", vm_fault_maps_scratch, "no SCRATCH check"), USER_ON_SCRATCH, arch=arch)
    assert_finding(r, "I3", "arena.user_access", arch, "fixed", "scratch page mapped into user space")


@pytest.mark.parametrize("arch", ARCHES)
def test_I3_quiet_user_fault_on_scratch_is_sigsegv(session: Session, arch: str) -> None:
    r = run(session, USER_ON_SCRATCH, arch=arch)
    assert r.finding is None and r.results[3] == "SIGSEGV"
    assert the_arena(r).scratch.umaps == 0


# -- I4: scratch PTEs only where a kernel fault of this arena touched ---------------------------------


def install_next_door(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    yield from kernel.apply_range_set_scratch_cb(m, cpu, arena, vpage + 1)


def install_other_arenas_scratch(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    other: Arena = m.handles["arena"][(arena.index + 1) % len(m.handles["arena"])]
    if m.arch.pte_none((yield from m.k.ptep_get(m, cpu, vpage))):
        yield from m.k.ptep_try_set(m, cpu, vpage, other.scratch_pte)


@pytest.mark.parametrize("arch", ARCHES)
def test_I4_fires_when_scratch_lands_where_no_fault_touched(arch: str) -> None:
    s = variant("apply_range_set_scratch_cb", install_next_door, "installs at the next slot")
    r = run(s, [CREATE, kaccess(3)], arch=arch)
    assert_finding(r, "I4", "arena.kernel_access", arch, "fixed", "where no kernel fault touched")


@pytest.mark.parametrize("arch", ARCHES)
def test_I4_fires_when_another_arenas_scratch_page_is_installed(arch: str) -> None:
    s = variant("apply_range_set_scratch_cb", install_other_arenas_scratch, "wrong arena's scratch")
    r = run(s, [CREATE, CREATE, kaccess(3)], arch=arch)
    assert_finding(r, "I4", "arena.kernel_access", arch, "fixed", "installed outside its band", "arena1")


@pytest.mark.parametrize("arch", ARCHES)
def test_I4_quiet_on_the_real_installer(session: Session, arch: str) -> None:
    r = run(session, [CREATE, CREATE, kaccess(3), kaccess(4, insn="store")], arch=arch)
    assert r.finding is None
    assert [slot_state(r, 0, p) for p in (2, 3, 4, 5)] == ["EMPTY", "SCRATCH", "SCRATCH", "EMPTY"]


# -- I5: a BPF program access to EMPTY never changes the PTE ------------------------------------------


class X86HookBeforeFixup(X86):
    """x86 with the arena hook ahead of the exception-table fixup (R14 order broken)."""

    name = "x86_hook_first"
    fault_path = (
        ("bpf_arena_handle_page_fault", _NOT_PRESENT),
        ("exception_table_fixup", None),
        ("prefetch_check", None),
        ("kfence", _NOT_PRESENT),
    )


PROG_ON_EMPTY: list[Op] = [CREATE, ("arena.prog_access", {"arena": 0, "pgoff": 3, "write": True})]


def test_I5_fires_when_the_hook_runs_before_the_exception_table() -> None:
    r = run(with_arch(X86HookBeforeFixup), PROG_ON_EMPTY, arch="x86_hook_first")
    assert_finding(r, "I5", "arena.prog_access", "x86_hook_first", "fixed", "changed its PTE")


@pytest.mark.parametrize("arch", ARCHES)
def test_I5_quiet_bpf_access_to_empty_is_fixed_up(session: Session, arch: str) -> None:
    r = run(session, PROG_ON_EMPTY, arch=arch)
    assert r.finding is None and r.results[1] == "fixup" and r.machine.ptes == {}


# -- I6: a kernel fault is recovered iff the model's conditions hold -------------------------------


def walk_finds_nothing(m: Machine, cpu: Cpu) -> BpfProg | None:
    return None


class X86PrefetchCheckLast(X86):
    """x86 with is_prefetch() after the arena hook (R14 order broken)."""

    name = "x86_prefetch_last"
    fault_path = (
        ("exception_table_fixup", None),
        ("kfence", _NOT_PRESENT),
        ("bpf_arena_handle_page_fault", _NOT_PRESENT),
        ("prefetch_check", None),
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_I6_fires_when_a_recoverable_fault_oopses(arch: str) -> None:
    s = variant("bpf_prog_find_from_stack", walk_finds_nothing, "stack walk never finds a program")
    r = run(s, [CREATE, kaccess(3)], arch=arch)
    assert_finding(r, "I6", "arena.kernel_access", arch, "fixed", "recoverable arena fault ended in oops")


def test_I6_fires_when_a_prefetch_fault_is_recovered_on_x86() -> None:
    # The prefetch reaches the hook, which installs the scratch page: in band, at the faulting
    # address, for the program's own arena (I4 holds), yet x86 must ignore prefetch faults.
    r = run(with_arch(X86PrefetchCheckLast), [CREATE, kaccess(3, insn="prefetch")], arch="x86_prefetch_last")
    assert_finding(
        r, "I6", "arena.kernel_access", "x86_prefetch_last", "fixed", "outside the recovery conditions"
    )


@pytest.mark.parametrize(("arch", "outcome"), [("x86", "ignored"), ("arm64", 0)])
def test_I6_quiet_prefetch_per_arch(session: Session, arch: str, outcome: Any) -> None:
    # x86 ignores the prefetch fault; arm64's path has no prefetch stage and recovers it.
    r = run(session, [CREATE, kaccess(3, insn="prefetch")], arch=arch)
    assert r.finding is None and r.results[1] == outcome


@pytest.mark.parametrize("stack", ["none", "main_no_arena"])
def test_I6_quiet_on_arm64_spurious_retry_whose_pte_is_cleared_again(session: Session, stack: str) -> None:
    # cpu0's kfunc (no main program on the stack) faults; cpu1 allocates the slot, so arm64's
    # spurious check sees it translate and returns RETRY; cpu1 frees it again before cpu0's
    # fault path returns. The retry is legitimate (the next fault oopses): no I6. Every
    # schedule within three preemptions covers that window.
    ops = [
        CREATE,
        alloc(3, cpu=1),
        kaccess(3, stack=stack),
        free(3, cpu=1),
    ]
    e = explore(session, program(ops, arch="arm64", cpus=2), max_switches=3)
    assert e.exhaustive and e.found is None and e.runs > 100


# -- I7: every scratch install is reported --------------------------------------------------------


def walk_to_a_copy(m: Machine, cpu: Cpu) -> BpfProg | None:
    """Resolves the main program to a copy with its own stream: reports go nowhere visible."""
    prog = kernel.bpf_prog_find_from_stack(m, cpu)
    return None if prog is None else BpfProg(prog.name, prog.arena)


@pytest.mark.parametrize("arch", ARCHES)
def test_I7_fires_when_the_report_misses_the_programs_stream(arch: str) -> None:
    r = run(
        variant("bpf_prog_find_from_stack", walk_to_a_copy, "wrong stream"), [CREATE, kaccess(3)], arch=arch
    )
    assert_finding(
        r,
        "I7",
        "arena.kernel_access",
        arch,
        "fixed",
        "without a report",
        f"at {hex(FIXED_BASE + 3 * PAGE_SIZE)}",
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_I7_quiet_when_the_stream_drops_the_report(session: Session, arch: str) -> None:
    # Capacity permitting: a push attempted and dropped is not a missing report.
    r = run(session, [CREATE, kaccess(3)], arch=arch, inject=[("stream_capacity", 1)])
    assert r.finding is None and r.injected == [("stream_capacity", 1)]
    assert the_arena(r).prog.stream.dropped == 1 and slot_state(r, 0, 3) == "SCRATCH"


# -- I8: the installer never overwrites a non-zero PTE; install vs clear never leaks -------------------


def install_with_plain_store(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """The scratch install as a pte_none() check then a plain store, instead of ptep_try_set."""
    if m.arch.pte_none((yield from m.k.ptep_get(m, cpu, vpage))):
        yield from m.k.set_pte_at(m, cpu, vpage, arena.scratch_pte)


INSTALL_VS_ALLOC: list[Op] = [CREATE, kaccess(3), alloc(3, cpu=1)]


@pytest.mark.parametrize(("arch", "spec_id"), [("x86", "I8"), ("arm64", "I10")])
def test_I8_fires_when_installer_overwrites_real_pte(arch: str, spec_id: str) -> None:
    # cpu0's hook reads the PTE (none) and is preempted; cpu1 allocates the slot; the plain
    # store then replaces the REAL page by the scratch page. On arm64 that store is also a
    # valid -> different valid change, which break-before-make (I10) catches first.
    s = variant("apply_range_set_scratch_cb", install_with_plain_store, "plain store")
    r = preempted(s, INSTALL_VS_ALLOC, cpu=0, after="ptep_get", to=1, arch=arch)
    says = "installer overwrote REAL pte" if spec_id == "I8" else "break-before-make"
    assert_finding(r, spec_id, "arena.kernel_access", arch, "fixed", says)


@pytest.mark.parametrize("arch", ARCHES)
def test_I8_quiet_real_installer_loses_the_same_race(session: Session, arch: str) -> None:
    r = preempted(session, INSTALL_VS_ALLOC, cpu=0, after="ptep_get", to=1, arch=arch)
    assert r.finding is None and slot_state(r, 0, 3) == "REAL"


def test_I8_fires_when_installer_overwrites_stray_ad_bits_x86() -> None:
    # The free leaves Accessed|Dirty in the cleared PTE (R16): pte_none() but not zero.
    ops = [CREATE, alloc(3), free(3), kaccess(3)]
    s = variant("apply_range_set_scratch_cb", install_with_plain_store, "plain store")
    r = run(s, ops, inject=[("pte_erratum_bits", 1)])
    assert_finding(r, "I8", "arena.kernel_access", "x86", "fixed", "installer overwrote non-zero pte")


@pytest.mark.parametrize("arch", ARCHES)
def test_I8_fires_when_a_real_page_is_unmapped_and_never_freed(arch: str) -> None:
    s = variant("arena_map_free", map_free_without(real_pages=False, scratch=True), "real pages dropped")
    r = run(s, DESTROY, arch=arch)
    assert_finding(
        r, "I8", "arena.destroy", arch, "fixed", "page leaked: unmapped but never freed", "arena0 pfn"
    )


# -- I9: an allocated slot never reaches scratch data -------------------------------------------------

#: cpu0's kfunc stores into an EMPTY slot (scratch installed, its translation cached in cpu0's
#: TLB), the slot is allocated over the scratch page (fixed), and cpu0 reads it again.
SCRATCH_THEN_ALLOC: list[Op] = [CREATE, kaccess(3, insn="store"), alloc(3), kaccess(3)]


def no_flush(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    yield "no flush"


def test_I9_fires_when_a_cached_scratch_translation_survives_the_alloc() -> None:
    # Without a TLB invalidation between clearing the scratch PTE and installing the page,
    # cpu0 keeps using its cached scratch translation and reads scratch data. (On arm64 the
    # same omission breaks break-before-make and I10 catches it at the install.)
    s = variant("flush_tlb_before_set", no_flush, "no TLB invalidation before the install")
    r = run(s, SCRATCH_THEN_ALLOC, arch="x86")
    f = r.finding
    assert f is not None and f.spec_id == "I9" and f.op == "arena.kernel_access", f
    assert f.message == "allocated slot reached the scratch page"
    assert "read in arena.kernel_access (cpu0)" in f.detail, f.detail
    # Found after the fact: the title names the allocation whose PTE write left the cached
    # scratch translation stale, not the access that tripped over it.
    assert f.cause is not None and (f.cause.what, f.cause.op, f.cause.call) == ("pte", "arena.alloc", 2)
    assert f.title == "I9 allocated slot reached the scratch page in arena.alloc (x86, fixed)"
    assert f.seen_title == "I9 allocated slot reached the scratch page in arena.kernel_access (x86, fixed)"


def test_I9_quiet_arm64_new_page_reads_zero(session: Session) -> None:
    r = run(session, SCRATCH_THEN_ALLOC, arch="arm64")
    assert r.finding is None and slot_state(r, 0, 3) == "REAL"
    assert r.results[3] == 0, "the allocated page reads zero, not the 0xa5 stored in scratch"


def test_I9_quiet_x86_cpu_without_a_cached_translation_reads_zero(session: Session) -> None:
    ops = [*SCRATCH_THEN_ALLOC[:3], kaccess(3, cpu=1)]
    r = run(session, ops, arch="x86")
    assert r.finding is None and r.results[3] == 0


# -- I11: after a completed free, no slot of it is REAL and FREE -----------------------------------


def clear_cb_only_reads(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    yield from m.k.ptep_get(m, cpu, vpage)
    return None


@pytest.mark.parametrize("arch", ARCHES)
def test_I11_fires_when_free_leaves_the_pte_mapped(arch: str) -> None:
    s = variant("apply_range_clear_cb", clear_cb_only_reads, "never clears")
    r = run(s, [CREATE, alloc(3, page_cnt=2), free(3, page_cnt=2)], arch=arch)
    assert_finding(r, "I11", "arena.free", arch, "fixed", "REAL but FREE after a completed free", "slot 3")


@pytest.mark.parametrize("arch", ARCHES)
def test_I11_quiet_free_leaves_empty_free_slots(session: Session, arch: str) -> None:
    r = run(session, [CREATE, alloc(3, page_cnt=2), free(3, page_cnt=2)], arch=arch)
    assert r.finding is None and r.results[2] == "freed"
    assert slot_state(r, 0, 3) == slot_state(r, 0, 4) == "EMPTY"
    assert the_arena(r).rt.is_set(3, 2) == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_I11_quiet_when_another_free_of_the_slot_is_half_done(session: Session, arch: str) -> None:
    # cpu1's free of slot 3 can return while cpu0's free of the same (now REAL) slot holds the
    # lock between its range_tree_set and its clear walk: REAL and FREE is cpu0's half-done
    # bookkeeping, not a result of cpu1's free. Every schedule within three preemptions.
    ops = [CREATE, alloc(3), free(3), free(3, cpu=1)]
    e = explore(session, program(ops, arch=arch, cpus=2), max_switches=3)
    assert e.exhaustive and e.found is None and e.runs > 50


# -- I12: the range tree matches the reference (best fit, all-or-nothing) --------------------------


def first_fit(m: Machine, arena: Arena, n: int) -> int:
    for start, end in arena.rt.intervals():
        if end - start >= n:
            return start
    return ENOMEM


#: Slots 4 and 6 taken: free runs [0,4), [5,6), [7,16). Best fit for one page is slot 5.
HOLES: list[Op] = [CREATE, alloc(4), alloc(6), alloc()]


@pytest.mark.parametrize("arch", ARCHES)
def test_I12_fires_on_first_fit_instead_of_best_fit(arch: str) -> None:
    r = run(variant("range_tree_find", first_fit, "first fit"), HOLES, arch=arch)
    assert_finding(r, "I12", "arena.alloc", arch, "fixed", "best fit disagrees", "1 pages at 0, reference 5")


@pytest.mark.parametrize("arch", ARCHES)
def test_I12_quiet_best_fit_takes_the_smallest_hole(session: Session, arch: str) -> None:
    r = run(session, HOLES, arch=arch)
    assert r.finding is None and r.results[3] == the_arena(r).uaddr(5)


# -- I13: nr_pages equals the number of REAL PTEs ------------------------------------------------


def clear_cb_drops_page(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """Clears the PTE but hands no page back: nothing uncharges (or frees) it."""
    yield from m.k.ptep_get_and_clear(m, cpu, vpage)
    return None


@pytest.mark.parametrize("arch", ARCHES)
def test_I13_fires_when_free_clears_without_uncharging(arch: str) -> None:
    # The page also leaks (I8); I13 is checked first when the free returns.
    r = run(
        variant("apply_range_clear_cb", clear_cb_drops_page, "page dropped"),
        [CREATE, alloc(3), free(3)],
        arch=arch,
    )
    assert_finding(
        r, "I13", "arena.free", arch, "fixed", "nr_pages differs", "arena0: nr_pages 1, 0 REAL ptes"
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_I13_quiet_nr_pages_follows_alloc_and_free(session: Session, arch: str) -> None:
    r = run(session, [CREATE, alloc(3, page_cnt=3), kaccess(9), free(4)], arch=arch)
    assert r.finding is None
    assert the_arena(r).nr_pages == the_arena(r).real_ptes == 2, "scratch never counts (R20)"


# -- I15: after a sleepable free returns, no TLB maps the freed page --------------------------------
#
# Every path that frees a page still cached in a TLB trips I2's check at the free itself
# (page.tlb_refs), before the op returns; I15's after-return check is exercised directly.

FREE_CACHED: list[Op] = [CREATE, alloc(3), kaccess(3, cpu=1), free(3)]


def free_call(session: Session, index: int) -> Call:
    spec = session.kernel("x86", "fixed", 2).ops["arena.free"]
    return Call(index, 0, spec, {"arena": 0, "pgoff": 3, "page_cnt": 1, "sleepable": True})


def test_I15_fires_on_a_freed_page_left_in_a_tlb(session: Session) -> None:
    r = run(session, FREE_CACHED[:3], cpus=2)
    m, arena = r.machine, the_arena(r)
    page = m.page_of(m.ptes[arena.vpage(3)])
    assert page is not None and m.cpus[1].tlb[arena.vpage(3)] is page
    page.freed = True  # freed while cpu1's TLB entry stayed
    with pytest.raises(Violation) as exc:
        invariants.i15_no_tlb_after_free(m, m.cpus[0], free_call(session, 3), "freed")
    assert exc.value.spec_id == "I15" and "TLB still maps a freed page" in exc.value.message
    assert exc.value.detail == "cpu1"


def test_I15_quiet_the_free_flushes_every_cpu(session: Session) -> None:
    # cpu1's access runs between cpu0's alloc and free (after cpu0's second op is done), so
    # cpu1's TLB holds the page when the free starts.
    r = preempted(session, FREE_CACHED, cpu=0, after="done", nth=2, to=1)
    assert [t.op for t in r.trace or [] if t.label == "done"][1:3] == ["arena.alloc", "arena.kernel_access"]
    assert r.finding is None and r.results[3] == "freed"
    assert all(not c.tlb for c in r.machine.cpus)
    invariants.i15_no_tlb_after_free(r.machine, r.machine.cpus[0], free_call(session, 3), "freed")


# -- I16: a slot that can never be allocated while free space exists (merged) ----------------------

#: A kfunc faults on free slot 0 (scratch installed); best fit for one page is slot 0.
UNALLOCATABLE: list[Op] = [CREATE, kaccess(0, insn="store"), alloc()]


@pytest.mark.parametrize("arch", ARCHES)
def test_I16_merged_scratched_slot_can_never_be_allocated(session: Session, arch: str) -> None:
    # merged: apply_range_set_cb finds the slot not none, -EBUSY, the whole alloc rolls back;
    # the slot stays SCRATCH and FREE, so best fit offers it again and again (R4).
    r = run(session, UNALLOCATABLE, arch=arch, revision="merged")
    assert_finding(r, "I16", "arena.alloc", arch, "merged", "failed while free space exists", "slot 0 free")
    assert r.results[2] == 0 and r.injected == []
    m, arena = r.machine, the_arena(r)
    for _ in range(3):
        assert drive(m.k.arena_alloc_pages(m, m.cpus[0], arena, 0, 1, -1, True)) == 0
    assert slot_state(r, 0, 0) == "SCRATCH" and arena.rt.intervals() == [(0, 16)]


@pytest.mark.parametrize("arch", ARCHES)
def test_I16_quiet_fixed_allocates_over_the_scratched_slot(session: Session, arch: str) -> None:
    r = run(session, UNALLOCATABLE, arch=arch, revision="fixed")
    assert r.finding is None
    assert r.results[2] == the_arena(r).uaddr(0) and slot_state(r, 0, 0) == "REAL"


def test_I16_quiet_when_an_injected_failure_explains_the_failed_alloc(session: Session) -> None:
    r = run(session, [CREATE, alloc()], inject=[("alloc_page", 2)])
    assert r.finding is None and r.results[1] == 0 and r.injected == [("alloc_page", 2)]


@pytest.mark.parametrize("arch", ARCHES)
def test_I16_merged_example_program_replays_the_finding(session: Session, arch: str, capsys: Any) -> None:
    path = EXAMPLES / "merged_unallocatable_slot.json"
    prog = load(path)
    assert prog.revision == "merged" and prog.description
    prog.arch = arch
    r = session.run(prog)
    assert_finding(r, "I16", "arena.alloc", arch, "merged", "failed while free space exists", "slot 0 free")
    prog.revision = "fixed"
    assert session.run(prog).finding is None
    assert fuzzkit_main(["replay", str(path), "--no-trace"]) == 1
    assert "FINDING: I16 " in capsys.readouterr().out

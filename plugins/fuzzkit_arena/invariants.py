"""The arena's oracles, one function per check, named after the invariant (docs/model.md).

Each is registered against the machine events it needs and looks only at what changed
(DESIGN principle 6). Checks that need a settled state run when the op that finishes leaves
no other CPU mid-operation ("quiescent"), or when the arena's lock is free: in between, a
lock holder's bookkeeping is legitimately half-done.
"""

from __future__ import annotations

import bisect
from typing import Any

from fuzzkit import PAGE_SHIFT, RETRY, Call, Cause, Cpu, Fault, Machine, Page, Violation
from fuzzkit_arena.arena import Arena
from fuzzkit_arena.range_tree import RangeTree

#: Per-machine oracle state lives in ``m.state`` under these keys.
ORPHANS = "arena.orphans"
REPORT_DUE = "arena.report_due"
SCRATCH_BY_FAULT = "arena.scratch_by_fault"
BEST_FIT_CLAIM = "arena.best_fit_claim"
FIRST_TOUCH_REPORTED = "arena.first_touch_reported"
FIRST_TOUCH_PENDING = "arena.first_touch_pending"


# The checks read the arenas as ``m.handles.get("arena", ())`` in place: they run on every PTE
# write, access and finished op, where a helper's call would show.


def scratch_owner(m: Machine, page: Page) -> Arena | None:
    if page.shared:
        for arena in m.handles.get("arena", ()):
            if arena.scratch is page:
                return arena
    return None


def page_arena(m: Machine, page: Page) -> Arena | None:
    owner = page.owner
    for arena in m.handles.get("arena", ()):
        if arena.name == owner:
            return arena
    return None


def quiescent(m: Machine, cpu: Cpu) -> bool:
    return all(c.gen is None for c in m.cpus if c is not cpu)


def _main_prog(cpu: Cpu) -> Any:
    """The main program R15's stack walk attributes a kernel fault to."""
    for frame in reversed(cpu.stack):
        if frame.prog is not None:
            return frame.prog.main_prog()
    return None


# -- I1, I3: the scratch page's life ---------------------------------------------------------------


def i1_scratch_freed_early(m: Machine, cpu: Cpu, page: Page) -> None:
    arena = scratch_owner(m, page)
    if arena is not None and not (arena.dying and arena.users == 0):
        raise Violation("I1", "scratch page freed before destroy", arena.name)


def i1_scratch_freed_at_destroy(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    for arena in m.handles.get("arena", ()):
        if arena.destroyed and not arena.leaked and not arena.scratch.freed:
            raise Violation("I1", "scratch page not freed at destroy", arena.name)


def i3_scratch_user_access(m: Machine, cpu: Cpu, vpage: int, page: Page, write: bool, how: str) -> None:
    if how == "user" and page.shared and scratch_owner(m, page) is not None:
        raise Violation("I3", "scratch page mapped into user space")


# -- I4, I5, I8: who writes PTEs ---------------------------------------------------------------------


def i4_scratch_placement(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    page = m.page_of(new) if new else None  # a clear installs nothing
    if page is None or not page.shared:
        return
    owner = scratch_owner(m, page)
    if owner is None:
        return
    if not owner.in_recovery_band(vpage << PAGE_SHIFT):
        raise Violation("I4", "scratch page installed outside its band", owner.name)
    fault = cpu.fault
    if fault is None or fault.addr >> PAGE_SHIFT != vpage:
        raise Violation("I4", "scratch page installed where no kernel fault touched", owner.name)
    prog = _main_prog(cpu)
    if prog is None or prog.arena is not owner:
        raise Violation("I4", "scratch page installed for an arena the faulting program does not use")


def i5_prog_access_keeps_pte(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    if cpu.fault is not None and cpu.fault.extable:
        raise Violation("I5", "BPF program access to an empty slot changed its PTE")


def i8_installer_overwrite(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    if cpu.fault is not None and old != 0:
        what = "REAL" if m.page_of(old) is not None and not m.page_of(old).shared else "non-zero"  # type: ignore[union-attr]
        raise Violation("I8", f"installer overwrote {what} pte")


def i8_track_orphans(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    """Pages whose last kernel mapping went away, with the write that took it (the cause a
    leak is titled after, kept as the machine's record and made a :class:`Cause` only for
    a leak: every free of a mapped page comes through here); freeing them takes them off
    the list. A PTE write installs (``old`` is 0) or clears (``new`` is 0) nearly always:
    the zero side costs no lookup."""
    gone = m.page_of(old) if old else None
    if gone is not None and not gone.shared and gone.kmaps == 0:
        orphans = m.state.get(ORPHANS)
        if orphans is None:
            orphans = m.state[ORPHANS] = {}
        orphans[gone] = (vpage, m.pte_written[vpage])
    came = m.page_of(new) if new else None
    if came is not None and (orphans := m.state.get(ORPHANS)) is not None:
        orphans.pop(came, None)


def i8_forget_freed(m: Machine, cpu: Cpu, page: Page) -> None:
    orphans = m.state.get(ORPHANS)
    if orphans is not None:
        orphans.pop(page, None)


def i8_no_leak(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    orphans = m.state.get(ORPHANS)
    if orphans and quiescent(m, cpu):
        leaked = min(orphans, key=lambda p: p.pfn)
        if not leaked.freed and not leaked.umaps:
            # Found after the fact, at some op's completion: the write that unmapped the
            # page without freeing it is the cause.
            vpage, written = orphans[leaked]
            raise Violation(
                "I8",
                "page leaked: unmapped but never freed",
                f"{leaked.owner} pfn {leaked.pfn:#x}",
                Cause.of("pte", written, vpage),
            )


# -- I6, I7: the fault path's decision and its report ------------------------------------------------


def i6_note_install(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    """Remember which fault installed a scratch page: that is what "recovered" means to I6."""
    if cpu.fault is None:
        return
    page = m.page_of(new)
    if page is not None and page.shared and scratch_owner(m, page) is not None:
        m.state.setdefault(SCRATCH_BY_FAULT, {})[cpu.id] = cpu.fault


def _prefetch_ignored(m: Machine) -> bool:
    """R14: x86 ignores prefetch faults before the arena hook; arm64's path has no such stage."""
    return any(stage == "prefetch_check" for stage, _ in m.arch.fault_path)


def _in_kfence_pool(m: Machine, addr: int) -> bool:
    lo, size = m.arch.kfence_pool
    return lo <= addr < lo + size


def _main_arena(cpu: Cpu) -> Arena | None:
    prog = _main_prog(cpu)
    arena: Arena | None = prog.arena if prog is not None else None
    return arena


def i6_recovery_decision(m: Machine, cpu: Cpu, fault: Fault, outcome: str) -> None:
    # The cheap conditions first: most faults are JITed accesses (extable), decided at once.
    expected = (
        fault.kind == m.arch.missing_fault
        and not fault.extable
        and not (fault.prefetch and _prefetch_ignored(m))
        and not _in_kfence_pool(m, fault.addr)
        and (arena := _main_arena(cpu)) is not None
        and arena.in_recovery_band(fault.addr)
    )
    if expected and outcome != RETRY:
        raise Violation("I6", f"recoverable arena fault ended in {outcome}")
    # A RETRY alone does not mean the arena hook recovered the fault: arm64's spurious
    # translation check retries without a report when the address translated at its walk,
    # and a free on another CPU may clear that PTE again before the fault path returns. What
    # must not happen outside the conditions is the hook's recovery, the scratch install.
    installs = m.state.get(SCRATCH_BY_FAULT)
    if installs and installs.get(cpu.id) is fault:
        del installs[cpu.id]
        if not expected:
            raise Violation("I6", "fault outside the recovery conditions was recovered with the scratch page")


def i7_note_install(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    if cpu.fault is None:
        return
    page = m.page_of(new)
    if page is None or not page.shared:
        return
    prog = _main_prog(cpu)
    if prog is not None and prog.arena is not None:
        arena = prog.arena
        addr = arena.rebased(vpage << PAGE_SHIFT)
        m.state.setdefault(REPORT_DUE, {})[cpu.id] = (prog.stream, len(prog.stream.attempts), addr)


def i7_report_made(m: Machine, cpu: Cpu, fault: Fault, outcome: str) -> None:
    due = m.state.get(REPORT_DUE)
    if not due or cpu.id not in due:
        return
    stream, seen, addr = due.pop(cpu.id)
    if not any(c == cpu.id and f"{addr:#x} " in text for c, text in stream.attempts[seen:]):
        raise Violation("I7", "scratch install without a report", f"at {addr:#x}")


# -- I19: the first kernel-side touch of an unallocated address is reported -----------------------
#
# The series' promise: a kernel-mode access to an arena address that holds no real page
# either oopses (I6) or is reported through the stream of the program the stack walk finds.
# Once the scratch page sits at an address, later accesses succeed without a fault, so the
# promise is about the touch that met it first: whatever put the scratch page there, a report
# for that page must have been attempted (capacity permitting: a dropped push counts). A
# fault that lost the install race reports too (R15), so any fault's report counts. The
# report may trail the access that first met the scratch page (the installer can be
# preempted between its install and its push), so the check settles once no other CPU is
# mid-operation.


def i19_note_report(m: Machine, cpu: Cpu, fault: Fault, outcome: str) -> None:
    if outcome != RETRY or fault.extable:
        return
    prog = _main_prog(cpu)
    arena = prog.arena if prog is not None else None
    if arena is None or not arena.in_recovery_band(fault.addr):
        return
    page_addr = fault.addr & ~((1 << PAGE_SHIFT) - 1)
    wanted = f"{arena.rebased(page_addr):#x} "
    for c, text in reversed(prog.stream.attempts):
        if c == cpu.id:
            if wanted in text:
                m.state.setdefault(FIRST_TOUCH_REPORTED, set()).add(page_addr >> PAGE_SHIFT)
                if (pending := m.state.get(FIRST_TOUCH_PENDING)) is not None:
                    pending.pop(page_addr >> PAGE_SHIFT, None)
            return


def i19_first_touch(m: Machine, cpu: Cpu, vpage: int, page: Page, write: bool, how: str) -> None:
    if how == "user" or not page.shared:
        return
    reported = m.state.get(FIRST_TOUCH_REPORTED)
    if (
        (reported is None or vpage not in reported)
        # Through a stale TLB entry after the PTE was cleared: that scratch page's first
        # touch was settled when it was installed.
        and m.page_of(m.ptes.get(vpage, 0)) is page
        and scratch_owner(m, page) is not None
    ):
        m.state.setdefault(FIRST_TOUCH_PENDING, {}).setdefault(vpage, (cpu.id, how, write))


def i19_scratch_gone(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    """A scratch PTE replaced (allocation over it, free): the next scratch page there is a
    new first touch, owing its own report."""
    if not old or (reported := m.state.get(FIRST_TOUCH_REPORTED)) is None:
        return
    gone = m.page_of(old)
    if gone is not None and gone.shared:
        reported.discard(vpage)


def i19_settled(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    pending = m.state.get(FIRST_TOUCH_PENDING)
    if not pending or not quiescent(m, cpu):
        return
    reported = m.state.get(FIRST_TOUCH_REPORTED, set())
    m.state[FIRST_TOUCH_PENDING] = {}
    for vpage, (c, how, write) in sorted(pending.items()):
        if vpage not in reported:
            raise Violation(
                "I19",
                "first kernel touch of an unallocated address was not reported",
                f"cpu{c} {how} {'write' if write else 'read'} at page {vpage << PAGE_SHIFT:#x}",
            )


# -- I9: nothing reads scratch data once the slot is allocated ---------------------------------------


def i9_no_scratch_after_alloc(m: Machine, cpu: Cpu, vpage: int, page: Page, write: bool, how: str) -> None:
    if how == "user" or not page.shared:
        return
    current = m.page_of(m.ptes.get(vpage, 0))
    if (
        current is not None
        and current is not page
        and not current.shared
        and scratch_owner(m, page) is not None
    ):
        # Found after the fact: the translation this CPU cached is stale. The PTE write that
        # replaced the page it caches made it so, and is the cause the title keys on; the op
        # that tripped over it only goes into the detail (and an alternative title).
        cached = m.tlb_cause(cpu, vpage)
        filled = f", cached at step {cached.step} by {cached.op}" if cached is not None else ""
        op = cpu.call.spec.id if cpu.call is not None else "-"
        raise Violation(
            "I9",
            "allocated slot reached the scratch page",
            f"{how} {'write' if write else 'read'} in {op} (cpu{cpu.id}) through a stale translation{filled}",
            m.pte_cause(vpage),
        )


# -- I11, I12, I13, I15, I16: bookkeeping after an operation ------------------------------------------


def _arena_of(m: Machine, call: Call) -> Arena | None:
    index = call.args.get("arena")
    return m.handle("arena", index) if index is not None else None


def i11_freed_range(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    if call.spec.id != "arena.free" or result != "freed":
        return
    arena = _arena_of(m, call)
    assert arena is not None
    if arena.spinlock.owner is not None:
        # Another CPU's free of the same range may be between its range_tree_set and its
        # clear walk: REAL and FREE is its half-done bookkeeping, not this free's result.
        return
    for pgoff in range(
        call.args["pgoff"], min(call.args["pgoff"] + call.args["page_cnt"], arena.max_entries)
    ):
        page = m.page_of(m.ptes.get(arena.vpage(pgoff), 0))
        if page is not None and not page.shared and range_tree_free_mask(arena.rt, pgoff, pgoff + 1):
            raise Violation("I11", "slot REAL but FREE after a completed free", f"slot {pgoff}")


def _best_fit_claim(m: Machine, cpu: Cpu, call: Call, arena: Arena) -> tuple[int, int, int] | None:
    """The best-fit claim ``call`` made, as (page_cnt, offset found, the reference's answer),
    or None when it made none. Taken off the arena once per call and shared by the checks of
    that call (I12, I16), so none of them depends on the order the others run in."""
    kept = m.state.get(BEST_FIT_CLAIM)
    if kept is None or kept[0] is not call:
        claim = arena.last_fit.pop(cpu.id, None)
        # A claim made by another call (a kernel-side allocation inside some other op) is
        # not this call's to judge.
        kept = m.state[BEST_FIT_CLAIM] = (call, claim[1] if claim is not None and claim[0] is call else None)
    fit: tuple[int, int, int] | None = kept[1]
    return fit


def range_tree_free_mask(rt: RangeTree, lo: int, hi: int, *, avail: bool = True) -> int:
    """FREE (``avail``) or unavailable offsets of ``[lo, hi)`` in the range tree as bits
    (bit 0 is ``lo``), in the reference's form. The oracle's query, kept here: it is no
    kernel path, and in the range tree's module atheris would count its loop as coverage."""
    starts, ends, avails = rt.starts, rt.ends, rt.avail
    mask = 0
    i = bisect.bisect_right(ends, lo)
    while i < len(starts) and starts[i] < hi:
        if avails[i] is avail:
            s, e = max(starts[i], lo), min(ends[i], hi)
            mask |= ((1 << (e - s)) - 1) << (s - lo)
        i += 1
    return mask


def i12_range_tree(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    if not call.spec.id.startswith("arena.") or "page_cnt" not in call.args:
        return
    arena = _arena_of(m, call)
    if arena is None:
        return
    fit = _best_fit_claim(m, cpu, call, arena)
    if arena.destroyed:
        return
    if fit is not None and fit[1] != fit[2] and not (fit[1] < 0 and fit[2] < 0):
        raise Violation(
            "I12", "best fit disagrees with the reference", f"{fit[0]} pages at {fit[1]}, reference {fit[2]}"
        )
    # A best-fit allocation claimed where it found room, not at the (unused) pgoff argument.
    lo = fit[1] if fit is not None and fit[1] >= 0 else call.args["pgoff"]
    hi = min(lo + call.args["page_cnt"], arena.max_entries)
    if hi > lo and range_tree_free_mask(arena.rt, lo, hi) != arena.ref.free_mask(lo, hi):
        differ = range_tree_free_mask(arena.rt, lo, hi) ^ arena.ref.free_mask(lo, hi)
        pgoff = lo + (differ & -differ).bit_length() - 1
        raise Violation("I12", "range tree and reference disagree", f"slot {pgoff}")
    if hi > lo and range_tree_free_mask(arena.rt, lo, hi, avail=False) != arena.ref.withheld_mask(lo, hi):
        differ = range_tree_free_mask(arena.rt, lo, hi, avail=False) ^ arena.ref.withheld_mask(lo, hi)
        pgoff = lo + (differ & -differ).bit_length() - 1
        raise Violation("I12", "range tree and reference disagree on an unavailable slot", f"slot {pgoff}")


def i13_count_real(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    gone = m.page_of(old) if old else None  # see i8_track_orphans
    came = m.page_of(new) if new else None
    if gone is not None and not gone.shared and (arena := page_arena(m, gone)) is not None:
        arena.real_ptes -= 1
    if came is not None and not came.shared and (arena := page_arena(m, came)) is not None:
        arena.real_ptes += 1


def i13_nr_pages(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    for arena in m.handles.get("arena", ()):
        # The rare condition first: the others only excuse a mismatch.
        if arena.nr_pages != arena.real_ptes and not arena.destroyed and arena.spinlock.owner is None:
            raise Violation(
                "I13",
                "nr_pages differs from the number of REAL ptes",
                f"{arena.name}: nr_pages {arena.nr_pages}, {arena.real_ptes} REAL ptes",
            )


def i15_no_tlb_after_free(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    if call.spec.id != "arena.free" or result != "freed":
        return
    arena = _arena_of(m, call)
    assert arena is not None
    lo = arena.vpage(call.args["pgoff"])
    for c in m.cpus:
        for vpage, page in c.tlb.items():
            if lo <= vpage < lo + call.args["page_cnt"] and page.freed:
                raise Violation("I15", "a TLB still maps a freed page after free returned", f"cpu{c.id}")


def i16_room_but_no_page(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """An allocation that fails although the arena had room, with no injected failure to
    blame: the slot best fit offers can never be allocated (``merged`` after a scratch)."""
    if call.spec.id != "arena.alloc":
        return
    arena = _arena_of(m, call)
    if arena is None:
        return
    fit = _best_fit_claim(m, cpu, call, arena)
    if result != 0 or fit is None or fit[2] < 0 or len(m.injected) != cpu.injected_at_start:
        return
    raise Violation(
        "I16", "best-fit allocation failed while free space exists", f"{fit[0]} pages, slot {fit[2]} free"
    )


#: (SPEC id, name, summary, event -> check, op ids the op_done check inspects or None for all)
INVARIANTS: list[tuple[str, str, str, dict[str, Any], tuple[str, ...] | None]] = [
    (
        "I1",
        "scratch_lifetime",
        "the scratch page is freed once, at destroy",
        {"page_free": i1_scratch_freed_early, "op_done": i1_scratch_freed_at_destroy},
        None,
    ),
    (
        "I3",
        "scratch_not_user",
        "the scratch page is never user-mapped",
        {"access": i3_scratch_user_access},
        None,
    ),
    (
        "I4",
        "scratch_placement",
        "scratch PTEs only where a kernel fault of this arena touched",
        {"pte_set": i4_scratch_placement},
        None,
    ),
    (
        "I5",
        "prog_access_keeps_pte",
        "BPF access to EMPTY never changes the PTE",
        {"pte_set": i5_prog_access_keeps_pte},
        None,
    ),
    (
        "I6",
        "recovery_decision",
        "a kernel fault is recovered iff the model's conditions hold",
        {"pte_set": i6_note_install, "fault_done": i6_recovery_decision},
        None,
    ),
    (
        "I7",
        "report_after_install",
        "every scratch install is reported",
        {"pte_set": i7_note_install, "fault_done": i7_report_made},
        None,
    ),
    (
        "I8",
        "installer_overwrite",
        "the installer never overwrites a non-zero PTE",
        {"pte_set": i8_installer_overwrite},
        None,
    ),
    (
        "I8",
        "no_leak",
        "no real page is lost between install and clear",
        {"pte_set": i8_track_orphans, "page_free": i8_forget_freed, "op_done": i8_no_leak},
        None,
    ),
    (
        "I9",
        "no_scratch_after_alloc",
        "an allocated slot never reaches scratch data",
        {"access": i9_no_scratch_after_alloc},
        None,
    ),
    (
        "I19",
        "first_touch_reported",
        "the first kernel touch of an unallocated address is reported",
        {
            "fault_done": i19_note_report,
            "access": i19_first_touch,
            "pte_set": i19_scratch_gone,
            "op_done": i19_settled,
        },
        None,
    ),
    (
        "I11",
        "freed_range",
        "after a completed free no slot of it is REAL and FREE",
        {"op_done": i11_freed_range},
        ("arena.free",),
    ),
    (
        "I12",
        "range_tree",
        "range tree matches the reference (best fit, all-or-nothing)",
        {"op_done": i12_range_tree},
        ("arena.alloc", "arena.free", "arena.reserve"),
    ),
    (
        "I13",
        "nr_pages",
        "nr_pages equals the number of REAL PTEs",
        {"pte_set": i13_count_real, "op_done": i13_nr_pages},
        None,
    ),
    (
        "I15",
        "no_tlb_after_free",
        "no TLB maps a freed page after free returns",
        {"op_done": i15_no_tlb_after_free},
        ("arena.free",),
    ),
    (
        "I16",
        "room_but_no_page",
        "an allocation with room and no injected failure succeeds",
        {"op_done": i16_room_but_no_page},
        ("arena.alloc",),
    ),
]

"""The core's own registrations: generic kernel primitives, generic fault-path stages,
injection points of the page allocator and locks, and the memory-safety oracles every
subsystem gets for free.

They are registered through the same hooks as any plugin (under the name ``core``), so they
show in ``fuzzkit plugins`` and a variant plugin can replace any of them.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit.machine.arch import FIXUP, KFENCE, Fault
from fuzzkit.machine.core import Cpu, Machine, Page, Steps, Violation

hookimpl = pluggy.HookimplMarker("fuzzkit")


# -- PTE atomics (R16, R17) -----------------------------------------------------------------


def ptep_get(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    """READ_ONCE of a PTE."""
    pte = m.ptes.get(vpage, 0)
    yield "ptep_get"
    return pte


def ptep_try_set(m: Machine, cpu: Cpu, vpage: int, new: int) -> Steps:
    """R16: a strict-zero compare-and-swap. Succeeds only when the raw PTE is exactly 0, which
    is narrower than ``pte_none()`` on arches with erratum bits."""
    ok = m.ptes.get(vpage, 0) == 0
    if ok:
        m.set_pte(cpu, vpage, new)
    yield "ptep_try_set"
    return ok


def ptep_get_and_clear(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    """R16: atomic exchange with 0, returning the old value. On arches with an erratum
    (x86 Knights Landing), hardware may set the erratum bits in the entry just cleared: an
    injection choice decides whether it does."""
    old = m.set_pte(cpu, vpage, 0)
    if old and m.arch.erratum_bits and m.inject("pte_erratum_bits"):
        m.set_pte(cpu, vpage, m.arch.erratum_bits)
    yield "ptep_get_and_clear"
    return old


def set_pte_at(m: Machine, cpu: Cpu, vpage: int, new: int) -> Steps:
    """A plain store of a PTE (no compare)."""
    m.set_pte(cpu, vpage, new)
    yield "set_pte_at"


def flush_tlb_kernel_range(m: Machine, cpu: Cpu, lo_vpage: int, hi_vpage: int) -> Steps:
    """Invalidate a kernel range in every CPU's TLB (R7, R17)."""
    m.tlb_flush(cpu, lo_vpage, hi_vpage)
    yield "flush_tlb_kernel_range"


@hookimpl
def fuzzkit_register_primitives(register: Any) -> None:
    register("ptep_get", ptep_get, summary="READ_ONCE of a PTE")
    register("ptep_try_set", ptep_try_set, summary="strict-zero PTE cmpxchg (R16)")
    register("ptep_get_and_clear", ptep_get_and_clear, summary="atomic PTE exchange with 0 (R16)")
    register("set_pte_at", set_pte_at, summary="plain PTE store")
    register(
        "flush_tlb_kernel_range", flush_tlb_kernel_range, summary="kernel TLB flush on all CPUs (R7, R17)"
    )


# -- generic fault-path stages (R14) ------------------------------------------------------------


def exception_table_fixup(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """The faulting instruction has an exception-table entry: fix it up and skip it."""
    if not fault.extable:
        return None
    yield "extable fixup"
    return FIXUP


def kfence(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """KFENCE claims faults inside its own pool, reports them and recovers."""
    lo, size = m.arch.kfence_pool
    if not lo <= fault.addr < lo + size:
        return None
    m.note(f"kfence: out-of-bounds access at {fault.addr:#x}")
    yield "kfence"
    return KFENCE


@hookimpl
def fuzzkit_register_fault_stages(register: Any) -> None:
    register("exception_table_fixup", exception_table_fixup, summary="exception-table fixup")
    register("kfence", kfence, summary="KFENCE pool faults")


@hookimpl
def fuzzkit_register_injection_points(register: Any) -> None:
    register("alloc_page", summary="the page allocator returns no page")
    register("pte_erratum_bits", summary="hardware sets erratum bits in a cleared PTE (x86 A/D, R16)")


# -- memory-safety oracles (I2) -----------------------------------------------------------------


def _kind(page: Page) -> str:
    """What a title may say about a page: whether it is shared (R13), never whose it is."""
    return "shared page" if page.shared else "page"


def _check_free(m: Machine, cpu: Cpu, page: Page) -> None:
    owner = f"{page.owner} pfn {page.pfn:#x}"
    if page.freed:
        raise Violation("I2", f"double free of a {_kind(page)}", owner)
    if page.kmaps:
        raise Violation("I2", f"{_kind(page)} freed while a kernel PTE maps it", owner)
    if page.umaps:
        raise Violation("I2", f"{_kind(page)} freed while user-mapped", owner)
    if page.tlb_refs:
        raise Violation("I2", f"{_kind(page)} freed while a TLB entry maps it", owner)


def _check_map(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    page = m.page_of(new) if new else None  # a clear maps nothing
    if page is None:
        return
    if page.freed:
        raise Violation("I2", f"PTE installed to a freed {_kind(page)}", f"{page.owner} pfn {page.pfn:#x}")
    if page.kmaps > 1 and not page.shared:
        raise Violation("I2", "page backs two slots", f"{page.owner} pfn {page.pfn:#x}")


def _check_access(m: Machine, cpu: Cpu, vpage: int, page: Page, write: bool, how: str) -> None:
    if page.freed:
        # Found after the fact: the PTE write that took the page away left the translation
        # stale, so that write is the cause; the walk that cached it when none is recorded.
        cause = m.pte_cause(vpage)
        if cause is None or m.page_of(m.ptes.get(vpage, 0)) is page:
            cause = m.tlb_cause(cpu, vpage)
        op = cpu.call.spec.id if cpu.call is not None else "-"
        raise Violation(
            "I2",
            f"access to a freed {_kind(page)} through a stale translation",
            f"{how} {'write' if write else 'read'} of {page.owner} pfn {page.pfn:#x} in {op} (cpu{cpu.id})",
            cause,
        )


@hookimpl
def fuzzkit_register_invariants(register: Any) -> None:
    register(
        "I2",
        "free",
        summary="a page is freed once, never while mapped or cached",
        on={"page_free": _check_free},
    )
    register(
        "I2", "map", summary="no PTE maps a freed page; no page backs two slots", on={"pte_set": _check_map}
    )
    register("I2", "use_after_free", summary="no access reaches a freed page", on={"access": _check_access})

"""Seeded arena variants (kernel/bpf/arena.c), one flaw each; :mod:`fuzzkit_seeded.library`
names the finding each must lead to."""

from __future__ import annotations

from fuzzkit_arena import kernel
from fuzzkit_arena.arena import Arena

from fuzzkit import Cpu, Machine, Page, Steps
from fuzzkit.variants import Replacement


def clear_cb_without_scratch_skip(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """R7/R9 without the scratch skip: the scratch page is handed back to be freed (I1)."""
    old = yield from m.k.ptep_get_and_clear(m, cpu, vpage)
    page: Page | None = m.page_of(old)
    return page


def flush_tlb_forgotten(m: Machine, cpu: Cpu, lo_vpage: int, hi_vpage: int) -> Steps:
    """R7 without the flush: cleared translations stay in the TLBs (I15)."""
    yield "flush_tlb_kernel_range skipped"


def scratch_check_then_store(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """R15 with a plain store after the none check instead of ``ptep_try_set``: a page an
    allocation installs between the two is overwritten by the scratch page (I8)."""
    old = yield from m.k.ptep_get(m, cpu, vpage)
    if not m.arch.pte_none(old):
        return
    yield from m.k.set_pte_at(m, cpu, vpage, arena.scratch_pte)


def free_without_uncharge(
    m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int, sleepable: bool
) -> Steps:
    """R20: the free path clears and frees its pages but leaves ``nr_pages`` charged (I13)."""
    before = arena.nr_pages
    outcome = yield from kernel.arena_free_pages(m, cpu, arena, uaddr, page_cnt, sleepable)
    arena.nr_pages += max(0, before - arena.nr_pages)
    return outcome


def set_cb_without_break_before_make(m: Machine, cpu: Cpu, arena: Arena, vpage: int, page: Page) -> Steps:
    """R4 ``fixed`` replacing the scratch page without the TLB flush between the clear and
    the new entry: arm64's break-before-make is broken (I10)."""
    k = m.k
    new = m.arch.mk_pte(page.pfn)
    while not (yield from k.ptep_try_set(m, cpu, vpage, new)):
        old = yield from k.ptep_get(m, cpu, vpage)
        if m.arch.pte_none(old):
            continue
        if m.page_of(old) is not arena.scratch:
            return kernel.EBUSY
        yield from k.ptep_get_and_clear(m, cpu, vpage)
    return 0


no_scratch_skip = Replacement("no scratch skip", {"apply_range_clear_cb": clear_cb_without_scratch_skip})
no_tlb_flush = Replacement("no TLB flush after clearing", {"flush_tlb_kernel_range": flush_tlb_forgotten})
installer_overwrite = Replacement(
    "scratch install as check then store", {"apply_range_set_scratch_cb": scratch_check_then_store}
)
no_uncharge = Replacement("free leaves nr_pages charged", {"arena_free_pages": free_without_uncharge})
no_break_before_make = Replacement(
    "no flush between clear and set", {"apply_range_set_cb": set_cb_without_break_before_make}
)

"""fuzzkit arch plugin: x86-64.

What is x86 about the mechanism (SPEC R14, R16, R17):

* PTE bits are the real ones (arch/x86/include/asm/pgtable_types.h); a kernel arena page is
  PAGE_KERNEL: present, RW, accessed, dirty, global, NX.
* ``pte_none()`` ignores _PAGE_KNL_ERRATUM_MASK (Accessed | Dirty): Knights Landing may set
  those bits in an entry the kernel just cleared. A PTE holding only them is "none" to
  software yet not zero, so the strict-zero ``ptep_try_set`` fails on it (R16). The core's
  ``ptep_get_and_clear`` lets an injection choice leave those bits behind.
* No break-before-make: installing into an empty PTE needs no flush, a stale "not mapped"
  walk only causes one extra refault (R17).
* The kernel fault path (page_fault_oops): exception-table fixup, then the prefetch check,
  then, for not-present faults only, KFENCE and ``bpf_arena_handle_page_fault``; else oops.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit import IGNORED, Arch, Cpu, Fault, Machine, Steps

hookimpl = pluggy.HookimplMarker("fuzzkit")

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_GLOBAL = 1 << 8
_PAGE_NX = 1 << 63
#: __PHYSICAL_MASK_SHIFT is 52; the low 12 bits are flags.
PTE_PFN_MASK = ((1 << 52) - 1) & ~0xFFF
_PAGE_KNL_ERRATUM_MASK = _PAGE_DIRTY | _PAGE_ACCESSED
PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL | _PAGE_NX

_NOT_PRESENT = frozenset({"not_present"})


class X86(Arch):
    name = "x86"
    valid_bit = _PAGE_PRESENT
    pfn_mask = PTE_PFN_MASK
    erratum_bits = _PAGE_KNL_ERRATUM_MASK
    break_before_make = False
    fault_kinds = ("not_present", "protection")
    missing_fault = "not_present"
    fault_path = (
        ("exception_table_fixup", None),
        ("prefetch_check", None),
        ("kfence", _NOT_PRESENT),
        ("bpf_arena_handle_page_fault", _NOT_PRESENT),
    )
    #: VMALLOC_START with 4-level paging.
    kernel_vm_base = 0xFFFFC90000000000
    kfence_pool = (0xFFFF888100000000, 2 << 20)

    def mk_pte(self, pfn: int) -> int:
        return (pfn << 12) & PTE_PFN_MASK | PAGE_KERNEL

    def pte_none(self, pte: int) -> bool:
        return not pte & ~_PAGE_KNL_ERRATUM_MASK


def prefetch_check(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """is_prefetch(): a fault raised by a prefetch instruction is spurious and ignored."""
    if not fault.prefetch:
        return None
    yield "prefetch"
    return IGNORED


@hookimpl
def fuzzkit_register_arches(register: Any) -> None:
    register(X86)


@hookimpl
def fuzzkit_register_fault_stages(register: Any) -> None:
    register("prefetch_check", prefetch_check, summary="x86 is_prefetch(): ignore prefetch faults")

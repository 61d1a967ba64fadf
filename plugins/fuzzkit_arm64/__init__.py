"""fuzzkit arch plugin: arm64.

What is arm64 about the mechanism (SPEC R14, R16, R17, I10):

* PTE bits are the real ones (arch/arm64/include/asm/pgtable-hwdef.h); a kernel arena page is
  PAGE_KERNEL: valid page descriptor, AF, inner shareable, PXN, UXN, DBM-writable.
* ``pte_none()`` is strict: ``!pte_val(pte)``. It agrees with the strict-zero cmpxchg.
* Break-before-make: a valid entry may only become a *different* valid entry through an
  invalid entry and a TLB invalidation (R17). The I10 oracle (``invariants``) checks both
  halves.
* The kernel fault path (__do_kernel_fault): exception-table fixup, then the spurious
  translation fault check (if the address translates now, another CPU installed it: retry
  without a report), then, for translation faults only, KFENCE and
  ``bpf_arena_handle_page_fault``; else die.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit import RETRY, Arch, Cpu, Fault, Machine, Steps
from fuzzkit_arm64 import invariants

hookimpl = pluggy.HookimplMarker("fuzzkit")

#: Modules whose branches are the kernel paths the atheris engine steers by: the arch itself,
#: not its oracle.
FUZZKIT_COVERAGE = ("fuzzkit_arm64",)

PTE_VALID = 1 << 0
PTE_TYPE_PAGE = 3 << 0
PTE_SHARED = 3 << 8
PTE_AF = 1 << 10
PTE_WRITE = 1 << 51  # PTE_DBM
PTE_PXN = 1 << 53
PTE_UXN = 1 << 54
#: PTE_ADDR_LOW with 48-bit physical addresses.
PTE_ADDR_MASK = ((1 << 48) - 1) & ~0xFFF
PAGE_KERNEL = PTE_TYPE_PAGE | PTE_SHARED | PTE_AF | PTE_WRITE | PTE_PXN | PTE_UXN

_TRANSLATION = frozenset({"translation"})


class Arm64(Arch):
    name = "arm64"
    valid_bit = PTE_VALID
    pfn_mask = PTE_ADDR_MASK
    erratum_bits = 0
    break_before_make = True
    fault_kinds = ("translation", "permission")
    missing_fault = "translation"
    fault_path = (
        ("exception_table_fixup", None),
        ("spurious_translation_fault", _TRANSLATION),
        ("kfence", _TRANSLATION),
        ("bpf_arena_handle_page_fault", _TRANSLATION),
    )
    #: VMALLOC_START with 48-bit VAs (after the modules area).
    kernel_vm_base = 0xFFFF800080000000
    kfence_pool = (0xFFFF000100000000, 2 << 20)

    def mk_pte(self, pfn: int) -> int:
        return (pfn << 12) & PTE_ADDR_MASK | PAGE_KERNEL

    def pte_none(self, pte: int) -> bool:
        return pte == 0


def spurious_translation_fault(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """is_spurious_el1_translation_fault(): redo the walk (AT S1E1R); when the address
    translates now, another CPU installed the entry after our walk: retry, no report (R14)."""
    pte = m.ptes.get(fault.addr >> 12, 0)
    yield "at s1e1r"
    return RETRY if pte & PTE_VALID else None


@hookimpl
def fuzzkit_register_arches(register: Any) -> None:
    register(Arm64)


@hookimpl
def fuzzkit_register_fault_stages(register: Any) -> None:
    register(
        "spurious_translation_fault",
        spurious_translation_fault,
        summary="arm64: retry without report when the address translates now",
    )


@hookimpl
def fuzzkit_register_invariants(register: Any) -> None:
    register(
        "I10",
        "break_before_make",
        summary="no valid->different-valid PTE write without invalid + TLBI between",
        on={"pte_set": invariants.i10_break_before_make},
        arch="arm64",
    )

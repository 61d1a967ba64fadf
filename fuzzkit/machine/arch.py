"""The interface an arch plugin implements: PTE encoding, ``pte_none``, TLB rules and the order
of the kernel fault path.

The core keeps raw PTE values as plain ints and never interprets them itself: it asks the
arch. Only two facts are lifted into data for the hot path, ``valid_bit`` and ``pfn_mask``,
because every emulated access needs them. Everything else an arch differs in (which bits make
a PTE "none", whether hardware may set bits in a cleared PTE, break-before-make) lives in the
arch class (DESIGN principle 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: Fault outcomes a fault-path stage may return (``None`` means "not mine, go on").
#: The exception table fixed the access up: the instruction is skipped (R12).
FIXUP = "fixup"
#: The fault was handled; the faulting kernel instruction is executed again (R15).
RETRY = "retry"
#: The fault is of no consequence and the instruction completes without effect (x86 prefetch).
IGNORED = "ignored"
#: KFENCE claimed the address (its own pool) and reported it.
KFENCE = "kfence"
#: Nobody handled it: the kernel oopses (x86) or dies (arm64).
OOPS = "oops"


@dataclass(slots=True)
class Fault:
    """One kernel-mode fault as the fault path sees it."""

    #: The faulting virtual address.
    addr: int
    write: bool
    #: Arch fault kind, one of the arch's ``fault_kinds`` (x86 "not_present", arm64
    #: "translation", ...).
    kind: str
    #: The faulting instruction has an exception-table entry (JITed BPF arena access, R12).
    extable: bool = False
    #: The faulting instruction is a prefetch (x86's is_prefetch() check).
    prefetch: bool = False


class Arch:
    """Base class of arch backends. Subclasses set the class attributes and implement the
    methods; one instance serves one run."""

    #: Name used on the command line and in programs ("x86", "arm64").
    name: ClassVar[str]
    #: Bit that makes a PTE valid/present for the hardware walker.
    valid_bit: ClassVar[int]
    #: Bits of a PTE holding the physical address (the pfn, shifted by PAGE_SHIFT).
    pfn_mask: ClassVar[int]
    #: Bits hardware may leave set in a PTE the kernel just cleared, which ``pte_none``
    #: ignores but a strict-zero cmpxchg does not (R16; x86 Knights Landing A/D erratum).
    #: 0 on arches without such an erratum.
    erratum_bits: ClassVar[int] = 0
    #: A valid PTE may only change to a different valid PTE through an invalid entry and a TLB
    #: invalidation (R17, arm64 break-before-make).
    break_before_make: ClassVar[bool] = False
    #: Fault kinds the arch raises, and the one raised for an access to an invalid PTE.
    fault_kinds: ClassVar[tuple[str, ...]]
    missing_fault: ClassVar[str]
    #: The kernel fault path in arch order (R14): stage names with the fault kinds each runs
    #: for (``None``: all kinds). Stages are looked up by name among the registered fault
    #: stages; a stage no loaded plugin provides is skipped.
    fault_path: ClassVar[tuple[tuple[str, frozenset[str] | None], ...]]
    #: Where the arch's vmalloc area starts: arena kernel bands are carved from here.
    kernel_vm_base: ClassVar[int]
    #: Where the KFENCE pool lives and how big it is.
    kfence_pool: ClassVar[tuple[int, int]]

    def mk_pte(self, pfn: int) -> int:
        """A present, writable kernel PTE (PAGE_KERNEL) for page frame ``pfn``."""
        raise NotImplementedError

    def pte_none(self, pte: int) -> bool:
        """The kernel's ``pte_none()``: is this entry empty as far as software is concerned?"""
        raise NotImplementedError

    def pte_pfn(self, pte: int) -> int:
        return (pte & self.pfn_mask) >> PAGE_SHIFT

    def pte_present(self, pte: int) -> bool:
        return bool(pte & self.valid_bit)

    def describe_pte(self, pte: int) -> str:
        """Short human form of a raw PTE for traces and reports."""
        if pte == 0:
            return "none"
        if not self.pte_present(pte):
            return f"0x{pte:x}(none)" if self.pte_none(pte) else f"0x{pte:x}(invalid)"
        return f"pfn {self.pte_pfn(pte):#x}"

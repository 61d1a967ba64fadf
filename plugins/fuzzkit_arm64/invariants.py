"""arm64's oracle: I10, break-before-make (R17).

Apart from the arch module so that atheris does not instrument it: an oracle judges the
mechanism, it is not a path through it, and it runs on every PTE write.
"""

from __future__ import annotations

from fuzzkit import Cpu, Machine, Violation


def i10_break_before_make(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    """A valid entry becomes a different valid entry only through an invalid entry (the
    write itself) and a TLB invalidation (no CPU still caches the old page)."""
    valid = m.arch.valid_bit  # PTE_VALID: the check is registered for arm64 only
    if not new & valid:
        return
    if old & valid and old != new:
        raise Violation("I10", "valid PTE changed to a different valid PTE without break-before-make")
    page = m.page_of(new)
    for c in m.cpus:
        cached = c.tlb.get(vpage)
        if cached is not None and cached is not page:
            raise Violation("I10", "valid PTE installed while a TLB still holds the old entry", f"cpu{c.id}")

"""I2, the core's memory-safety oracles: every real page is freed once, never while a PTE, a
user mapping or a TLB entry still references it, and no page backs two slots."""

from __future__ import annotations

import pytest
from helpers import ARCHES, drive

from fuzzkit import Machine, Page, Replay, Violation
from fuzzkit.runner import Session


def machine(session: Session, arch: str) -> tuple[Machine, Page]:
    m = Machine(session.kernel(arch, "fixed", 2), [], Replay())
    page = m.alloc_page("t")
    assert page is not None
    return m, page


def violation(fn: object) -> Violation:
    with pytest.raises(Violation) as exc:
        fn()  # type: ignore[operator]
    assert exc.value.spec_id == "I2"
    return exc.value


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_double_free(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    m.free_page(m.cpus[0], page)
    assert "double free" in violation(lambda: m.free_page(m.cpus[0], page)).message


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_free_while_a_kernel_pte_maps_the_page(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    m.set_pte(m.cpus[0], 5, m.arch.mk_pte(page.pfn))
    assert "kernel PTE" in violation(lambda: m.free_page(m.cpus[0], page)).message


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_free_while_a_tlb_entry_maps_the_page(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    cpu0, cpu1 = m.cpus
    m.set_pte(cpu0, 5, m.arch.mk_pte(page.pfn))
    m.translate(cpu1, 5)
    drive(m.k.ptep_get_and_clear(m, cpu0, 5))
    assert "TLB entry" in violation(lambda: m.free_page(cpu0, page)).message
    drive(m.k.flush_tlb_kernel_range(m, cpu0, 5, 6))
    m.free_page(cpu0, page)  # after the flush, the free is clean
    assert page.freed


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_free_while_user_mapped(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    m.user_map(0x7000, page)
    assert "user-mapped" in violation(lambda: m.free_page(m.cpus[0], page)).message
    m.user_zap(0x7000, 0x7001)
    m.free_page(m.cpus[0], page)


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_page_backs_two_slots_unless_shared(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    m.set_pte(m.cpus[0], 5, m.arch.mk_pte(page.pfn))
    assert "two slots" in violation(lambda: m.set_pte(m.cpus[0], 6, m.arch.mk_pte(page.pfn))).message
    scratch = m.alloc_page("s", shared=True)
    assert scratch is not None
    m.set_pte(m.cpus[0], 7, m.arch.mk_pte(scratch.pfn))
    m.set_pte(m.cpus[0], 8, m.arch.mk_pte(scratch.pfn))  # the scratch page may back many (R13)


@pytest.mark.parametrize("arch", ARCHES)
def test_I2_pte_to_a_freed_page_and_access_through_a_stale_translation(session: Session, arch: str) -> None:
    m, page = machine(session, arch)
    cpu = m.cpus[0]
    m.free_page(cpu, page)
    assert "freed" in violation(lambda: m.set_pte(cpu, 5, m.arch.mk_pte(page.pfn))).message
    m2, p2 = machine(session, arch)
    c0 = m2.cpus[0]
    m2.set_pte(c0, 5, m2.arch.mk_pte(p2.pfn))
    m2.translate(c0, 5)
    p2.freed = True  # freed behind the oracle's back: the next access must still be caught
    assert "stale translation" in violation(lambda: m2.touch(c0, p2, 5, 5 << 12, False, 0, "kernel")).message

"""R14-R17 on both arches, at the level of the arch backends and the core atomics."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ARCHES, drive, program, run, slot_state

from fuzzkit import FIXUP, IGNORED, KFENCE, OOPS, RETRY, Fault, Machine, Replay, Violation
from fuzzkit.runner import Session, trace_table


def bare(session: Session, arch: str, inject: tuple[tuple[str, int], ...] = ()) -> Machine:
    return Machine(session.kernel(arch, "fixed", 2), [], Replay(inject=inject))


# -- R16: pte_none and the strict-zero cmpxchg --------------------------------------------------


def test_R16_x86_pte_none_ignores_knights_landing_ad_bits(session: Session) -> None:
    arch = session.kernel("x86", "fixed", 1).arch
    assert arch.erratum_bits == 0x60  # _PAGE_ACCESSED | _PAGE_DIRTY
    assert arch.pte_none(0)
    assert arch.pte_none(0x20) and arch.pte_none(0x40) and arch.pte_none(0x60)
    assert not arch.pte_none(0x1)
    assert not arch.pte_none(arch.mk_pte(0x1234))


def test_R16_arm64_pte_none_is_strict_zero(session: Session) -> None:
    arch = session.kernel("arm64", "fixed", 1).arch
    assert arch.erratum_bits == 0
    assert arch.pte_none(0)
    assert not arch.pte_none(0x400)  # a lone AF bit is not none on arm64


@pytest.mark.parametrize("arch", ARCHES)
def test_R16_real_bit_layouts_round_trip_the_pfn(session: Session, arch: str) -> None:
    a = session.kernel(arch, "fixed", 1).arch
    for pfn in (0x1, 0x1000, 0xFFFFF):
        pte = a.mk_pte(pfn)
        assert a.pte_present(pte) and a.pte_pfn(pte) == pfn
    if arch == "x86":
        assert a.mk_pte(1) >> 63 == 1  # NX
        assert a.mk_pte(1) & 0x2  # RW
    else:
        assert a.mk_pte(1) & 0b11 == 0b11  # valid page descriptor
        assert a.mk_pte(1) >> 53 & 0b11 == 0b11  # PXN, UXN


@pytest.mark.parametrize("arch", ARCHES)
def test_R16_try_set_succeeds_only_on_raw_zero(session: Session, arch: str) -> None:
    m = bare(session, arch)
    cpu = m.cpus[0]
    page = m.alloc_page("t")
    assert page is not None
    new = m.arch.mk_pte(page.pfn)
    assert drive(m.k.ptep_try_set(m, cpu, 7, new)) is True
    assert m.ptes[7] == new
    other = m.alloc_page("u")
    assert other is not None
    assert drive(m.k.ptep_try_set(m, cpu, 7, m.arch.mk_pte(other.pfn))) is False
    assert m.ptes[7] == new


def test_R16_try_set_fails_on_stray_ad_bits_x86(session: Session) -> None:
    m = bare(session, "x86")
    cpu = m.cpus[0]
    m.ptes[9] = m.arch.erratum_bits
    page = m.alloc_page("t")
    assert page is not None
    assert m.arch.pte_none(m.ptes[9])
    assert drive(m.k.ptep_try_set(m, cpu, 9, m.arch.mk_pte(page.pfn))) is False
    assert m.ptes[9] == m.arch.erratum_bits


@pytest.mark.parametrize("arch", ARCHES)
def test_R16_get_and_clear_returns_old_and_leaves_zero(session: Session, arch: str) -> None:
    m = bare(session, arch)
    cpu = m.cpus[0]
    page = m.alloc_page("t")
    assert page is not None
    pte = m.arch.mk_pte(page.pfn)
    m.set_pte(cpu, 3, pte)
    assert page.kmaps == 1
    assert drive(m.k.ptep_get_and_clear(m, cpu, 3)) == pte
    assert m.ptes.get(3, 0) == 0 and page.kmaps == 0


def test_R16_x86_hardware_may_leave_ad_bits_after_clear(session: Session) -> None:
    m = bare(session, "x86", inject=(("pte_erratum_bits", 1),))
    cpu = m.cpus[0]
    page = m.alloc_page("t")
    assert page is not None
    m.set_pte(cpu, 3, m.arch.mk_pte(page.pfn))
    drive(m.k.ptep_get_and_clear(m, cpu, 3))
    assert m.ptes[3] == 0x60 and m.arch.pte_none(m.ptes[3])
    assert m.injected == [("pte_erratum_bits", 1)]


def test_R16_arm64_has_no_erratum_injection(session: Session) -> None:
    m = bare(session, "arm64", inject=(("pte_erratum_bits", 1),))
    cpu = m.cpus[0]
    page = m.alloc_page("t")
    assert page is not None
    m.set_pte(cpu, 3, m.arch.mk_pte(page.pfn))
    drive(m.k.ptep_get_and_clear(m, cpu, 3))
    assert m.ptes.get(3, 0) == 0 and m.injected == []


# -- R17: TLB rules ----------------------------------------------------------------------------------


def _valid_to_valid(session: Session, arch: str) -> Violation | None:
    m = bare(session, arch)
    cpu = m.cpus[0]
    a, b = m.alloc_page("a"), m.alloc_page("b")
    assert a is not None and b is not None
    m.set_pte(cpu, 5, m.arch.mk_pte(a.pfn))
    try:
        drive(m.k.set_pte_at(m, cpu, 5, m.arch.mk_pte(b.pfn)))
    except Violation as v:
        return v
    return None


def test_R17_arm64_valid_to_different_valid_needs_break_before_make(session: Session) -> None:
    v = _valid_to_valid(session, "arm64")
    assert v is not None and v.spec_id == "I10"


def test_R17_x86_has_no_break_before_make_rule(session: Session) -> None:
    assert _valid_to_valid(session, "x86") is None


def test_R17_arm64_invalid_entry_without_tlbi_is_not_enough(session: Session) -> None:
    m = bare(session, "arm64")
    cpu0, cpu1 = m.cpus
    a, b = m.alloc_page("a"), m.alloc_page("b")
    assert a is not None and b is not None
    m.set_pte(cpu0, 5, m.arch.mk_pte(a.pfn))
    assert m.translate(cpu1, 5) is a  # cpu1 caches the translation
    drive(m.k.ptep_get_and_clear(m, cpu0, 5))
    with pytest.raises(Violation) as exc:
        m.set_pte(cpu0, 5, m.arch.mk_pte(b.pfn))
    assert exc.value.spec_id == "I10" and exc.value.detail == "cpu1"
    # With the TLB invalidation in between, the same write is fine.
    m2 = bare(session, "arm64")
    c0, c1 = m2.cpus
    a2, b2 = m2.alloc_page("a"), m2.alloc_page("b")
    assert a2 is not None and b2 is not None
    m2.set_pte(c0, 5, m2.arch.mk_pte(a2.pfn))
    m2.translate(c1, 5)
    drive(m2.k.ptep_get_and_clear(m2, c0, 5))
    drive(m2.k.flush_tlb_kernel_range(m2, c0, 5, 6))
    m2.set_pte(c0, 5, m2.arch.mk_pte(b2.pfn))
    assert m2.page_of(m2.ptes[5]) is b2


@pytest.mark.parametrize("arch", ARCHES)
def test_R17_stale_tlb_entry_survives_clear_until_flush(session: Session, arch: str) -> None:
    m = bare(session, arch)
    cpu0, cpu1 = m.cpus
    page = m.alloc_page("a")
    assert page is not None
    m.set_pte(cpu0, 5, m.arch.mk_pte(page.pfn))
    assert m.translate(cpu1, 5) is page
    drive(m.k.ptep_get_and_clear(m, cpu0, 5))
    assert m.translate(cpu1, 5) is page, "the TLB still holds the old translation"
    assert m.translate(cpu0, 5) is None, "a CPU without the entry walks and finds nothing"
    drive(m.k.flush_tlb_kernel_range(m, cpu0, 0, 16))
    assert m.translate(cpu1, 5) is None and page.tlb_refs == 0


# -- R14: fault path order ---------------------------------------------------------------------------


def test_R14_fault_path_orders(session: Session) -> None:
    def names(arch: str) -> list[tuple[str, Any]]:
        path = session.kernel(arch, "fixed", 1).fault_path
        return [(fn.__name__, kinds and sorted(kinds)) for fn, kinds in path]

    assert names("x86") == [
        ("exception_table_fixup", None),
        ("prefetch_check", None),
        ("kfence", ["not_present"]),
        ("bpf_arena_handle_page_fault", ["not_present"]),
    ]
    assert names("arm64") == [
        ("exception_table_fixup", None),
        ("spurious_translation_fault", ["translation"]),
        ("kfence", ["translation"]),
        ("bpf_arena_handle_page_fault", ["translation"]),
    ]


@pytest.mark.parametrize("arch", ARCHES)
def test_R14_exception_table_fixup_comes_first(session: Session, arch: str) -> None:
    m = bare(session, arch)
    kind = m.arch.missing_fault
    assert drive(m.fault(m.cpus[0], Fault(0x1000, False, kind, extable=True))) == FIXUP
    assert drive(m.fault(m.cpus[0], Fault(0x1000, False, kind))) == OOPS


def test_R14_x86_prefetch_faults_are_ignored(session: Session) -> None:
    m = bare(session, "x86")
    assert drive(m.fault(m.cpus[0], Fault(0x1000, False, "not_present", prefetch=True))) == IGNORED


@pytest.mark.parametrize("arch", ARCHES)
def test_R14_kfence_only_for_missing_translation_faults(session: Session, arch: str) -> None:
    m = bare(session, arch)
    addr = m.arch.kfence_pool[0] + 0x40
    missing, other = m.arch.fault_kinds[0], m.arch.fault_kinds[1]
    assert missing == m.arch.missing_fault
    assert drive(m.fault(m.cpus[0], Fault(addr, True, missing))) == KFENCE
    assert drive(m.fault(m.cpus[0], Fault(addr, True, other))) == OOPS


def test_R14_arm64_spurious_translation_fault_retries_without_report(session: Session) -> None:
    m = bare(session, "arm64")
    page = m.alloc_page("a")
    assert page is not None
    m.set_pte(m.cpus[1], 0x10, m.arch.mk_pte(page.pfn))  # another CPU installed it meanwhile
    assert drive(m.fault(m.cpus[0], Fault(0x10 << 12, False, "translation"))) == RETRY
    x86 = bare(session, "x86")
    xp = x86.alloc_page("a")
    assert xp is not None
    x86.set_pte(x86.cpus[1], 0x10, x86.arch.mk_pte(xp.pfn))
    assert drive(x86.fault(x86.cpus[0], Fault(0x10 << 12, False, "not_present"))) == OOPS


# -- replay is exact -------------------------------------------------------------------------------


RACE = [
    (0, "arena.create", {}),
    (0, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 2}),
    (1, "arena.kernel_access", {"arena": 0, "pgoff": 2, "insn": "store", "stack": "main"}),
    (0, "arena.free", {"arena": 0, "pgoff": 2}),
    (1, "arena.kernel_access", {"arena": 0, "pgoff": 2, "insn": "load", "stack": "main"}),
]


@pytest.mark.parametrize("arch", ARCHES)
def test_R17_install_racing_clear_replays_identically_100_times(session: Session, arch: str) -> None:
    # cpu1's second access faults on the slot cpu0's free is clearing: switching cpus in the
    # middle of the free makes the scratch install race the clear (R17).
    prog = program(RACE, arch=arch, cpus=2, switches=[(9, 1), (11, 0), (13, 1)])
    first = session.run(prog, trace=True)
    assert first.finding is None
    table = trace_table(first.trace or [], 2)
    assert {t.cpu for t in first.trace or []} == {0, 1}
    assert "ptep_get_and_clear" in table and "ptep_try_set" in table
    for _ in range(100):
        again = session.run(prog, trace=True)
        assert again.trace == first.trace and again.results == first.results
    assert slot_state(first, 0, 2) in ("EMPTY", "SCRATCH")


def test_R17_results_identical_through_the_helper(session: Session) -> None:
    a = run(session, RACE, cpus=2, switches=[(9, 1)])
    b = run(session, RACE, cpus=2, switches=[(9, 1)])
    assert a.results == b.results and a.steps == b.steps and a.switches == b.switches == [(9, 1)]

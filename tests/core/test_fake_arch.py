"""The core needs no installed plugin: a fake arch and a fake subsystem, given in-process,
run on it with no entry point loaded."""

from __future__ import annotations

from typing import Any

import pytest

from fuzzkit import RETRY, Arch, Choice, Cpu, Fault, Int, Machine, Steps, Violation, hookimpl, load_registry
from fuzzkit.program import OpCall, Program
from fuzzkit.runner import Session


class Toy(Arch):
    name = "toy"
    valid_bit = 1 << 0
    pfn_mask = 0xFFFFF000
    fault_kinds = ("missing", "other")
    missing_fault = "missing"
    fault_path = (("exception_table_fixup", None), ("toy_pager", frozenset({"missing"})))
    kernel_vm_base = 0x80000000
    kfence_pool = (0x40000000, 0x1000)

    def mk_pte(self, pfn: int) -> int:
        return pfn << 12 | 1

    def pte_none(self, pte: int) -> bool:
        return pte == 0


def toy_pager(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """Demand paging: back the faulting page with a fresh page and retry."""
    page = m.alloc_page("toy")
    if page is None:
        return None
    ok = yield from m.k.ptep_try_set(m, cpu, fault.addr >> 12, m.arch.mk_pte(page.pfn))
    return RETRY if ok else None


def populate(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    m.populate_tables(0x80000, 0x80004)
    yield "populate"


def touch(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    outcome, value = yield from m.kernel_access(
        cpu, 0x80000000 + args["page"] * 4096, args["op"] == "store", 7
    )
    return value if outcome == "ok" else outcome


def no_double_mapping(m: Machine, cpu: Cpu, vpage: int, old: int, new: int) -> None:
    if old and new:
        raise Violation("T1", "remapped a live pte")


class ToyPlugin:
    @hookimpl
    def fuzzkit_register_arches(self, register: Any) -> None:
        register(Toy)

    @hookimpl
    def fuzzkit_register_fault_stages(self, register: Any) -> None:
        register("toy_pager", toy_pager, summary="demand paging")

    @hookimpl
    def fuzzkit_register_ops(self, register: Any) -> None:
        register(
            "toy.touch", touch, args={"page": Int(0, 3), "op": Choice(("load", "store"))}, summary="touch"
        )
        register("toy.populate", populate, args={}, summary="create page tables")

    @hookimpl
    def fuzzkit_register_invariants(self, register: Any) -> None:
        register("T1", "no_remap", summary="never remap", on={"pte_set": no_double_mapping})


@pytest.fixture
def toy() -> Session:
    return Session(load_registry(autoload=False, extra=[("toy", ToyPlugin())]))


def test_core_runs_with_a_fake_arch_and_no_installed_plugins(toy: Session) -> None:
    assert [p.name for p in toy.registry.plugins] == ["core", "toy"]
    prog = Program(
        arch="toy",
        cpus=2,
        ops=[
            OpCall(0, "toy.populate"),
            OpCall(0, "toy.touch", {"page": 1, "op": "store"}),
            OpCall(1, "toy.touch", {"page": 1}),
        ],
    )
    result = toy.run(prog, trace=True)
    assert result.finding is None
    assert result.results == {0: None, 1: 7, 2: 7}, "the store paged the page in, the load reads it back"
    assert len(result.machine.ptes) == 1


def test_racing_faults_lose_the_cmpxchg_instead_of_remapping(toy: Session) -> None:
    # Both CPUs fault on page 2 before either installs: the loser's cmpxchg fails, the stage
    # declines and that fault ends in an oops; the winner's PTE is never overwritten (T1).
    ops = [
        OpCall(0, "toy.populate"),
        OpCall(0, "toy.touch", {"page": 2}),
        OpCall(1, "toy.touch", {"page": 2}),
    ]
    prog = Program(arch="toy", cpus=2, ops=ops, switches=[(3, 1), (4, 0), (5, 1)])
    result = toy.run(prog, trace=True)
    assert result.finding is None
    assert sorted(map(str, result.results.values())) == ["0", "None", "oops"]


def test_I14_installing_without_page_tables_in_fault_context(toy: Session) -> None:
    prog = Program(arch="toy", cpus=1, ops=[OpCall(0, "toy.touch", {"page": 0})])
    finding = toy.run(prog).finding
    assert finding is not None and finding.spec_id == "I14"
    assert finding.title == "I14 page-table allocation in fault context in toy.touch (toy, fixed)"
    assert finding.detail == "at 0x80000000", "the address is a specific: in the detail, not the title"


def test_unknown_arch_lists_the_loaded_ones(toy: Session) -> None:
    with pytest.raises(ValueError, match="unknown arch 'x86'; loaded arches: toy"):
        toy.kernel("x86", "fixed", 1)

"""A variant of each newly replaceable kernel function, loaded by ``-p`` as a user loads one,
changes what the model does: the band check, the fault hook itself and KFENCE (fault-path
stages), arena creation, the stack walk, the stream report and the PTE walk of free and
destroy (``tests/variants/replaceable.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Op, run

from fuzzkit import RunResult
from fuzzkit.plugins import registry_from_flags
from fuzzkit.runner import Session

CREATE: Op = ("arena.create", {"max_entries": 16})


def kaccess(pgoff: int = 3, **args: Any) -> Op:
    return ("arena.kernel_access", {"arena": 0, "pgoff": pgoff, "stack": "main", **args})


def alloc(pgoff: int, page_cnt: int = 1) -> Op:
    return ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": pgoff, "page_cnt": page_cnt})


@pytest.fixture(scope="module")
def baseline() -> Session:
    return Session(registry_from_flags([]))


def with_variant(name: str, ops: list[Op], baseline: Session) -> tuple[RunResult, RunResult]:
    session = Session(registry_from_flags([f"variants.replaceable:{name}"]))
    assert (session.registry.plugins[-1].name, session.registry.plugins[-1].distribution) == (
        f"variants.replaceable:{name}",
        "(imported)",
    )
    return run(baseline, ops), run(session, ops)


def test_R15_a_wider_band_recovers_the_lower_guard_and_I4_objects(baseline: Session) -> None:
    base, variant = with_variant("wide_band", [CREATE, kaccess(2, where="lower_guard")], baseline)
    assert base.finding is None and base.results[1] == "oops"
    assert variant.finding is not None
    assert variant.finding.title.startswith("I4 scratch page installed outside")


def test_R15_a_fault_hook_wrapper_that_skips_writes_is_caught_by_I6(baseline: Session) -> None:
    base, variant = with_variant("no_write_recovery", [CREATE, kaccess(3, insn="store")], baseline)
    assert base.finding is None and base.results[1] == 0xA5, "the store was retried and landed"
    assert variant.finding is not None and variant.finding.title.startswith("I6 recoverable arena fault")


def test_R14_without_the_kfence_stage_a_pool_fault_oopses(baseline: Session) -> None:
    base, variant = with_variant("no_kfence", [CREATE, kaccess(3, where="kfence")], baseline)
    assert base.results[1] == "kfence"
    assert variant.results[1] == "oops" and variant.finding is None


def test_arena_creation_replaced_refuses_what_the_original_creates(baseline: Session) -> None:
    base, variant = with_variant("small_arenas", [CREATE, ("arena.create", {"max_entries": 4})], baseline)
    assert base.results == {0: 0, 1: 1}
    assert variant.results == {0: "E2BIG", 1: 0}, "the wrapper hands small arenas to the original"


def test_R15_a_stack_walk_that_finds_nothing_leaves_faults_unrecovered(baseline: Session) -> None:
    base, variant = with_variant("no_stack_walk", [CREATE, kaccess(3)], baseline)
    assert base.finding is None
    assert variant.finding is not None and variant.finding.spec_id == "I6"


def test_R18_a_silent_report_is_caught_by_I7(baseline: Session) -> None:
    base, variant = with_variant("no_report", [CREATE, kaccess(3)], baseline)
    assert base.finding is None
    assert variant.finding is not None and variant.finding.spec_id == "I7"
    assert variant.machine.handles["arena"][0].prog.stream.attempts == []


def test_R7_a_pte_walk_one_short_leaves_a_slot_mapped_after_free(baseline: Session) -> None:
    ops = [CREATE, alloc(3, page_cnt=2), ("arena.free", {"arena": 0, "pgoff": 3, "page_cnt": 2})]
    base, variant = with_variant("short_walk", ops, baseline)
    assert base.finding is None and base.machine.ptes == {}
    assert variant.finding is not None and variant.finding.spec_id == "I11"
    assert len(variant.machine.ptes) == 1

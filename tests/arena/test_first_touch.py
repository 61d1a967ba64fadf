"""I19: the first kernel-side touch of an address that holds no real page oopses or is
reported through the stream of the program the stack walk finds, however the design got
there. The checks settle once no other CPU is mid-operation, so a report may trail the
access that met the scratch page first."""

from __future__ import annotations

from typing import Any

import pytest
from fuzzkit_arena import invariants
from fuzzkit_arena.arena import Arena
from helpers import ARCHES, Op, preempted, program, run

from fuzzkit import RunResult, Violation
from fuzzkit.explore import explore
from fuzzkit.runner import Session

CREATE: Op = ("arena.create", {"max_entries": 16})


def kaccess(pgoff: int, *, cpu: int = 0, **args: Any) -> Op:
    return (cpu, "arena.kernel_access", {"arena": 0, "pgoff": pgoff, "stack": "main", **args})


def labels_of(result: RunResult, call: int) -> list[str]:
    return [t.label for t in result.trace or [] if t.call == call]


def test_I19_is_registered_with_its_checks(session: Session) -> None:
    specs = [spec for spec, name, *_ in invariants.INVARIANTS if name == "first_touch_reported"]
    assert specs == ["I19"]


@pytest.mark.parametrize("arch", ARCHES)
def test_I19_fires_on_a_scratch_page_met_without_a_report(session: Session, arch: str) -> None:
    # A design that leaves the scratch page at slot 5 silently: the PTE written behind the
    # oracles' backs (no fault, no report), then a kfunc load meets it.
    r = run(session, [CREATE, kaccess(3)], arch=arch)
    assert r.finding is None
    m = r.machine
    arena: Arena = m.handles["arena"][0]
    cpu, call = m.cpus[0], r.machine.cpus[0].call
    m.ptes[arena.vpage(5)] = arena.scratch_pte
    invariants.i19_first_touch(m, cpu, arena.vpage(3), arena.scratch, False, "kernel")
    invariants.i19_settled(m, cpu, call, None)  # slot 3's page was reported: quiet
    invariants.i19_first_touch(m, cpu, arena.vpage(5), arena.scratch, True, "bpf")
    with pytest.raises(Violation) as exc:
        invariants.i19_settled(m, cpu, call, None)
    assert exc.value.spec_id == "I19" and "not reported" in str(exc.value)


@pytest.mark.parametrize("arch", ARCHES)
def test_I19_quiet_when_another_cpu_meets_the_scratch_page_before_the_report(
    session: Session, arch: str
) -> None:
    # cpu0 installs the scratch page and is preempted before its report; cpu1's kfunc load
    # meets the page without a fault. The report comes when cpu0 resumes: not a violation.
    ops = [CREATE, kaccess(3), kaccess(3, cpu=1)]
    r = preempted(session, ops, cpu=0, after="ptep_try_set", to=1, arch=arch)
    assert r.finding is None
    assert labels_of(r, 2) == ["load", "done"], "cpu1 met the scratch page without a fault"
    assert len(r.machine.handles["arena"][0].prog.stream.lines) == 1


@pytest.mark.parametrize("arch", ARCHES)
def test_I19_quiet_in_every_schedule_of_faults_racing_a_free(session: Session, arch: str) -> None:
    # Two kfunc loads of one slot, one on each CPU, and a free of it: the scratch page comes,
    # goes and comes back; each install is reported, and a load through a TLB entry left
    # from before the free is the earlier install's.
    ops = [CREATE, kaccess(3), kaccess(3, cpu=1), (1, "arena.free", {"arena": 0, "pgoff": 3}), kaccess(3)]
    e = explore(session, program(ops, arch=arch, cpus=2), max_switches=2)
    assert e.exhaustive and e.found is None and e.runs > 20

"""Shared pieces of the struct_ops and sched_ext tests: a registered scheduler in a few ops,
variant plugins, schedules found from the trace, and reading arena memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzzkit_arena.arena import Arena
from fuzzkit_scx.sched import ScxSched
from fuzzkit_struct_ops.maps import StructOpsMap
from helpers import Op, run

from fuzzkit import PAGE_SHIFT, RunResult, load_registry, replacing
from fuzzkit.runner import Session

#: An arena of 16 pages at a fixed, 4 GiB aligned user_vm_start, a map whose set_cmask
#: member uses it (enqueue uses no arena), and a cid-form scheduler registered from it.
REG: list[Op] = [
    (0, "arena.create", {"max_entries": 16}),
    (0, "struct_ops.load", {"arena": 0, "layout": "A,-"}),
    (0, "scx.reg_cid", {"map": 0}),
]


def alloc(size: int, *, cpu: int = 0) -> Op:
    return (cpu, "scx.alloc", {"sched": 0, "size": size})


def the_arena(r: RunResult, index: int = 0) -> Arena:
    arena: Arena = r.machine.handles["arena"][index]
    return arena


def the_sched(r: RunResult) -> ScxSched:
    sch: ScxSched = r.machine.handles["sched"][0]
    return sch


def the_map(r: RunResult, index: int = 0) -> StructOpsMap:
    st_map: StructOpsMap = r.machine.handles["struct_ops"][index]
    return st_map


def kword(r: RunResult, kaddr: int) -> int:
    """The 8-byte word at kernel address ``kaddr`` (0 when the page is not mapped)."""
    m = r.machine
    page = m.page_of(m.ptes.get(kaddr >> PAGE_SHIFT, 0))
    return page.data.get((kaddr & 0xFFF) >> 3, 0) if page is not None else 0


def preempted(
    session: Session, ops: list[Op], *, call: int, after: str, nth: int = 1, to: int, **kw: Any
) -> RunResult:
    """Run ``ops`` with op ``call`` preempted right after its ``nth`` step labelled ``after``;
    CPU ``to`` then runs everything it has queued before the preempted CPU resumes. The step
    is found from the trace of the unpreempted run, so the schedule follows the code."""
    plain = run(session, ops, trace=True, **kw)
    steps = [t.step for t in plain.trace or [] if t.call == call and t.label == after]
    return run(session, ops, trace=True, switches=[(steps[nth - 1] + 1, to)], **kw)


def variant(reason: str, **fns: Callable[..., Any]) -> Session:
    return Session(load_registry(extra=[replacing(reason=reason, **fns)]))

"""Shared test helpers: build programs tersely, run them, inspect the machine."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from typing import Any

from fuzzkit import PAGE_SHIFT, RunResult
from fuzzkit.program import OpCall, Program
from fuzzkit.runner import Session

ARCHES = ("x86", "arm64")
REVISIONS = ("merged", "fixed")

Op = tuple[int, str, dict[str, Any]] | tuple[str, dict[str, Any]]


def program(
    ops: Iterable[Op],
    *,
    arch: str = "x86",
    revision: str = "fixed",
    cpus: int | None = None,
    switches: Sequence[tuple[int, int]] = (),
    inject: Sequence[tuple[str, int]] = (),
) -> Program:
    """Ops are ``(cpu, op_id, args)`` or ``(op_id, args)`` for cpu 0."""
    calls = [OpCall(*o) if len(o) == 3 else OpCall(0, *o) for o in ops]  # type: ignore[arg-type]
    n = cpus if cpus is not None else max((c.cpu for c in calls), default=0) + 1
    return Program(
        arch=arch, revision=revision, cpus=n, ops=calls, switches=list(switches), inject=list(inject)
    )


def run(session: Session, ops: Iterable[Op], **kw: Any) -> RunResult:
    trace = kw.pop("trace", False)
    return session.run(program(ops, **kw), trace=trace)


def arena(**args: Any) -> tuple[str, dict[str, Any]]:
    """arena.create with small defaults (16 pages, fixed user_vm_start)."""
    return ("arena.create", args)


def pte(result: RunResult, arena_index: int, pgoff: int) -> int:
    m = result.machine
    return m.ptes.get(m.handles["arena"][arena_index].vpage(pgoff), 0)


def slot_state(result: RunResult, arena_index: int, pgoff: int) -> str:
    """EMPTY, SCRATCH or REAL, from the PTE."""
    m = result.machine
    a = m.handles["arena"][arena_index]
    raw = m.ptes.get(a.vpage(pgoff), 0)
    page = m.page_of(raw)
    if page is None:
        return "EMPTY"
    return "SCRATCH" if page is a.scratch else "REAL"


def vpage_of(result: RunResult, arena_index: int, pgoff: int) -> int:
    return int(result.machine.handles["arena"][arena_index].vpage(pgoff))


def drive(gen: Generator[str, None, Any]) -> Any:
    """Run a primitive (a generator) to completion outside the scheduler; return its result."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def step_of(result: RunResult, cpu: int, label: str, nth: int = 1) -> int:
    """The global step at which ``cpu`` took its ``nth`` step labelled ``label``."""
    steps = [t.step for t in result.trace or [] if t.cpu == cpu and t.label == label]
    assert len(steps) >= nth, f"cpu{cpu} never took step {label!r} #{nth}"
    return steps[nth - 1]


def preempted(
    session: Session, ops: list[Op], *, cpu: int, after: str, nth: int = 1, to: int, **kw: Any
) -> RunResult:
    """Run ``ops`` with ``cpu`` preempted right after its ``nth`` step labelled ``after``: CPU
    ``to`` then runs everything it has queued (the scheduler keeps the current CPU), and
    ``cpu`` resumes. Found from the trace of the unpreempted run, so the schedule follows the
    code rather than hard-coded step numbers."""
    plain = run(session, ops, trace=True, **kw)
    return run(session, ops, trace=True, switches=[(step_of(plain, cpu, after, nth) + 1, to)], **kw)


__all__ = [
    "ARCHES",
    "PAGE_SHIFT",
    "REVISIONS",
    "arena",
    "drive",
    "preempted",
    "program",
    "pte",
    "run",
    "slot_state",
    "step_of",
    "vpage_of",
]

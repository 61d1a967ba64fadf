"""Shared by the triage tests: sessions with a design variant, and a small seeded fuzzer.

Sessions load the arena's plugin set only (x86, arm64, arena, the variant): the bugs here are
arena bugs, and the minimizer's work and the fuzzer's odds then do not depend on what other
subsystems add to the op table.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from helpers import Op, program

from fuzzkit import Machine, RandomChoices, hookimpl, load_registry, replacing
from fuzzkit.generate import random_program
from fuzzkit.machine.arch import Arch
from fuzzkit.program import OpCall, Program
from fuzzkit.runner import Session

OTHER_SUBSYSTEMS = ["struct_ops", "scx"]
#: What every title of a bug that needs the in-process variant of :func:`variant` ends in.
NEEDS = ", needs variant"

#: create, alloc(3) and free(3) on cpu0 and alloc(5) on cpu1, for a free that clears a PTE
#: without uncharging it (I13). The two schedules were drawn by a seeded random scheduler: in
#: the first the free completes while cpu1's alloc is in flight, in the second the alloc
#: completes while cpu0's free is in flight.
RACE_OPS: list[Op] = [
    (0, "arena.create", {"max_entries": 16}),
    (0, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3, "page_cnt": 1}),
    (0, "arena.free", {"arena": 0, "pgoff": 3, "page_cnt": 1}),
    (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 5, "page_cnt": 1}),
]
FIRES_IN_FREE = [(10, 1)]
FIRES_IN_ALLOC = [(12, 1), (15, 0), (16, 1)]
#: The same bug seen at two ops' completion with nothing in flight either way. Under the
#: default schedule cpu0's free completes before cpu1 starts and the check fires in it. Here
#: cpu1's alloc takes the arena spinlock the moment cpu0's free drops it for the last time,
#: the range made FREE again (step 14), cpu0's free completes while the lock is held (the I13
#: check backs off from a lock holder's half-done bookkeeping), and the check first sees the
#: lost page when the alloc completes, last.
ALLOC_COMPLETES_LAST = [(14, 1), (15, 0)]


class ExtraArch:
    """An in-process plugin registering an arch (a different fault-path order)."""

    def __init__(self, cls: type[Arch]) -> None:
        self.__name__ = f"arch.{cls.name}"
        self.cls = cls

    @hookimpl
    def fuzzkit_register_arches(self, register: Any) -> None:
        register(self.cls)


def arena_session(*extra: tuple[str, object]) -> Session:
    return Session(load_registry(disable=OTHER_SUBSYSTEMS, extra=list(extra)))


def variant(primitive: str, fn: Callable[..., Any], reason: str = "variant") -> Session:
    return arena_session(replacing(reason=reason, **{primitive: fn}))


def with_arch(cls: type[Arch]) -> Session:
    return arena_session(("variant_arch", ExtraArch(cls)))


def fuzz(
    session: Session,
    arch: str,
    revision: str,
    *,
    runs: int,
    seed: int,
    cpus: int = 2,
    noise: int = 12,
    trigger: Sequence[Op] = (),
) -> list[Program]:
    """A seeded fuzz campaign in miniature: ``runs`` random programs of ``noise`` ops, each
    with the ``trigger`` ops (a seed input, as a corpus provides) spliced in at random places
    in their order, run under random preemption (20%) and injected failures (2% per arrival).
    Returns every run that found something, recorded so that it replays exactly."""
    kernel = session.kernel(arch, revision, cpus)
    seeds = program(trigger).ops
    found = []
    for i in range(runs):
        rng = random.Random(seed * 1_000_003 + i)
        prog = random_program(kernel, rng, noise)
        cuts = sorted(rng.randrange(len(prog.ops) + 1) for _ in seeds)
        # From the last cut back, so the trigger keeps its order.
        for oc, cut in reversed(list(zip(seeds, cuts, strict=True))):
            prog.ops.insert(cut, OpCall(oc.cpu, oc.op, dict(oc.args)))
        choices = RandomChoices(
            rng.randrange(1 << 30), preempt=0.2, inject=dict.fromkeys(kernel.injection_points, 0.02)
        )
        _, calls = session.resolve(prog)
        result = Machine(kernel, calls, choices).run()
        if result.finding is not None:
            found.append(session.record(prog, result))
    return found

"""The minimizer's benchmark figure: seconds (and replays) to minimize one large finding.

The finding is the first one a seeded search over random programs of ``n_ops`` ops on two
CPUs, with random preemption and injected failures, runs into: the kind of program a
coverage-guided campaign leaves behind, long, interleaved and with choices that do not matter.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from fuzzkit.generate import random_program
from fuzzkit.machine.choices import RandomChoices
from fuzzkit.machine.core import Machine
from fuzzkit.program import Program
from fuzzkit.runner import Session
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.minimize import DEFAULT_BUDGET, Minimized, minimize

#: Random programs tried before giving up on finding something to minimize.
MAX_SEARCH = 20_000


@dataclass(frozen=True)
class MinimizeFigure:
    title: str
    seconds: float
    replays: int
    complete: bool
    original: str
    minimized: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return (
            f"minimize: {self.seconds:.2f}s, {self.replays} replays, {self.original} -> {self.minimized}"
            f"{'' if self.complete else ' (budget exhausted)'}: {self.title}"
        )


def noisy_finding(
    session: Session, arch: str, revision: str, *, n_ops: int = 128, cpus: int = 2, seed: int = 0
) -> Program:
    """The first finding of a seeded random search, recorded so that it replays exactly."""
    kernel = session.kernel(arch, revision, cpus)
    rates = dict.fromkeys(kernel.injection_points, 0.02)
    for i in range(MAX_SEARCH):
        rng = random.Random(seed * 1_000_003 + i)
        program = random_program(kernel, rng, n_ops)
        _, calls = session.resolve(program)
        result = Machine(
            kernel, calls, RandomChoices(rng.randrange(1 << 30), preempt=0.2, inject=rates)
        ).run()
        if result.finding is not None:
            return session.record(program, result)
    raise TriageError(f"no finding in {MAX_SEARCH} random programs on {arch}/{revision}: nothing to minimize")


def minimize_figure(
    session: Session,
    arch: str = "x86",
    revision: str = "merged",
    *,
    n_ops: int = 128,
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
) -> tuple[MinimizeFigure, Minimized]:
    program = noisy_finding(session, arch, revision, n_ops=n_ops, seed=seed)
    start = time.perf_counter()
    result = minimize(session, program, budget=budget)
    seconds = time.perf_counter() - start
    figure = MinimizeFigure(
        title=result.signature.title,
        seconds=seconds,
        replays=result.replays,
        complete=result.complete,
        original=str(result.original_size),
        minimized=str(result.size),
    )
    return figure, result

"""``fuzzkit bench``: emulator throughput on a canonical mixed workload.

The workload is fixed (seeded generation of programs of 32 ops from the full op table, random
interleaving, rare injected failures) so figures are comparable between commits; each is the median of
several timed rounds, with their range. Oracles are
on, as in a campaign. Figures are wall-clock and belong in notes, never in tests.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fuzzkit.generate import random_program
from fuzzkit.machine.choices import RandomChoices
from fuzzkit.machine.core import Machine
from fuzzkit.program import load
from fuzzkit.runner import Session

#: Timed rounds of the emulator figure: the same programs run this many times and the median
#: round is reported, since one timing on a shared machine says as much about the neighbours.
ROUNDS = 5


@dataclass
class BenchFigure:
    name: str
    cpus: int
    programs: int
    #: Steps of one round (every round runs the same programs, so the same steps).
    steps: int
    #: Seconds of each round.
    rounds: list[float]
    findings: int

    @property
    def seconds(self) -> float:
        """The median round's seconds."""
        return statistics.median(self.rounds)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    @property
    def range(self) -> tuple[float, float]:
        """Steps per second of the slowest and the fastest round."""
        return self.steps / max(self.rounds), self.steps / min(self.rounds)

    def to_json(self) -> dict[str, object]:
        low, high = self.range
        return {
            **asdict(self),
            "seconds": self.seconds,
            "steps_per_second": round(self.steps_per_second),
            "steps_per_second_lowest": round(low),
            "steps_per_second_highest": round(high),
        }


def emulator_throughput(
    session: Session, arch: str, revision: str, cpus: int, programs: int, seed: int = 1
) -> BenchFigure:
    kernel = session.kernel(arch, revision, cpus)
    rng = random.Random(seed)
    progs = [session.resolve(random_program(kernel, rng, 32))[1] for _ in range(programs)]
    inject = {p: 0.01 for p in kernel.injection_points}
    rounds = []
    steps = findings = 0
    for _ in range(ROUNDS):
        steps = findings = 0
        start = time.perf_counter()
        for i, calls in enumerate(progs):
            result = Machine(kernel, calls, RandomChoices(seed + i, inject=inject)).run()
            steps += result.steps
            findings += result.finding is not None
        rounds.append(time.perf_counter() - start)
    return BenchFigure(f"emulator {arch}/{revision}", cpus, programs, steps, rounds, findings)


@dataclass
class MemoryFigure:
    program: str
    steps: int
    #: Peak Python heap allocated while the program ran (tracemalloc).
    peak_bytes: int
    #: Growth of the process's maximum resident set while it ran.
    rss_growth_bytes: int
    finding: str | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def memory(session: Session, path: Path) -> MemoryFigure:
    """Replay ``path`` once, measuring what the run itself allocates."""
    prog = load(path)
    kernel, calls = session.resolve(prog, str(path))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    result = Machine(kernel, calls, RandomChoices(0, preempt=0.0)).run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    title = result.finding.title if result.finding else None
    return MemoryFigure(path.name, result.steps, peak, (rss1 - rss0) * 1024, title)


def hypothesis_throughput(session: Session, arch: str, revision: str, cpus: int, examples: int) -> float:
    """Examples per second of the hypothesis engine (programs of up to 32 rules)."""
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    from fuzzkit.engines.hypothesis_engine import EveryTitle, state_machine

    machine = state_machine(arch, revision, cpus, session=session, known=EveryTitle())
    count = [0]
    init = machine.__init__

    def counting_init(self: Any) -> None:
        count[0] += 1
        init(self)

    machine.__init__ = counting_init  # type: ignore[method-assign]
    run_settings = settings(settings.get_profile("fuzzkit-ci"), max_examples=examples)
    start = time.perf_counter()
    run_state_machine_as_test(machine, settings=run_settings)
    return count[0] / (time.perf_counter() - start)

"""Systematic exploration of interleavings: every schedule of a small program, depth first.

Random interleaving finds races by luck; for a program of a few ops it is cheaper and more
convincing to try every schedule. A schedule is the sequence of CPUs picked at each step
where more than one could run; :func:`explore` enumerates them in lexicographic order (the
default, no-switch schedule first), optionally bounded in the number of switches
(preemptions) as in bounded model checking, and stops at the first finding or after
``max_runs`` runs. Injected failures come from the program and are not explored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fuzzkit.machine.core import Call, Finding, Machine, RunResult
from fuzzkit.program import Program
from fuzzkit.registry import Kernel
from fuzzkit.runner import Session

T = TypeVar("T")


class _Path:
    """Follows a prefix of decisions (indexes into the runnable list), then takes the
    default, remembering how many alternatives each decision had."""

    def __init__(self, prefix: list[int], inject: frozenset[tuple[str, int]]) -> None:
        self.prefix = prefix
        self.inject = inject
        self.taken: list[int] = []
        self.widths: list[int] = []
        self.defaults: list[int] = []

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        d = runnable.index(default)
        i = self.prefix[len(self.taken)] if len(self.taken) < len(self.prefix) else d
        self.taken.append(i)
        self.widths.append(len(runnable))
        self.defaults.append(d)
        return runnable[i]

    def fire(self, point: str, nth: int) -> bool:
        return (point, nth) in self.inject


@dataclass
class Exploration:
    runs: int
    #: True when every schedule (within the switch bound) was tried.
    exhaustive: bool
    #: The first run that found something, with its recorded choices.
    found: RunResult | None


def explore(
    session: Session, program: Program, *, max_runs: int = 10_000, max_switches: int | None = 3
) -> Exploration:
    """Run ``program`` under every schedule with at most ``max_switches`` preemptions
    (None: unbounded, which need not terminate when a retry loop can race forever)."""
    kernel, calls = session.resolve(program)
    return explore_calls(kernel, calls, program.inject, max_runs=max_runs, max_switches=max_switches)


def explore_calls(
    kernel: Kernel,
    calls: list[Call],
    inject: Iterable[tuple[str, int]] = (),
    *,
    max_runs: int = 10_000,
    max_switches: int | None = 3,
    wanted: Callable[[Finding], bool] = lambda finding: True,
) -> Exploration:
    """:func:`explore` for calls already resolved (an engine's), stopping only at a finding
    ``wanted`` accepts (a campaign ignores the bugs it already has)."""
    inject = frozenset(inject)
    stack: list[list[int]] = [[]]
    runs = 0
    while stack:
        if runs >= max_runs:
            return Exploration(runs, False, None)
        prefix = stack.pop()
        path = _Path(prefix, inject)
        result = Machine(kernel, calls, path).run()
        runs += 1
        if result.finding is not None and wanted(result.finding):
            return Exploration(runs, False, result)
        # Branch on every decision past the prefix; push in reverse so lower indexes run first.
        for depth in range(len(path.taken) - 1, len(prefix) - 1, -1):
            before = sum(t != d for t, d in zip(path.taken[:depth], path.defaults[:depth], strict=True))
            if max_switches is not None and before + 1 > max_switches:
                continue
            for alt in range(path.widths[depth] - 1, -1, -1):
                if alt != path.taken[depth]:
                    stack.append([*path.taken[:depth], alt])
    return Exploration(runs, True, None)

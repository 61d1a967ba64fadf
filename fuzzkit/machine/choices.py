"""The choice source: every nondeterministic decision of a run is drawn here (DESIGN
principle 2).

Two kinds of decision exist. *Scheduling*: at a step where more than one CPU can run, which
one runs. The default is to keep running the current CPU (or the lowest-numbered runnable one
when it cannot run), so a schedule is recorded as the list of *switches*, ``(step, cpu)``
pairs where the choice differed from that default. Fewer switches means fewer preemptions,
which is what the minimizer wants. *Injection*: whether the ``nth`` time a named injection
point is reached it fails. Recorded as ``(point, nth)`` pairs.

A run is a pure function of (configuration, program, choices): :class:`Replay` feeds recorded
choices back, :class:`RandomChoices` draws them from a seeded PRNG, and the machine records
what was actually decided either way, so any run can be written out and replayed exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class ChoiceSource(Protocol):
    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        """Which of ``runnable`` (at least two, in CPU order) runs step ``step``."""
        ...

    def fire(self, point: str, nth: int) -> bool:
        """Whether the ``nth`` (1-based) arrival at injection point ``point`` fails."""
        ...


def cpu_or_default(runnable: Sequence[T], want: int | None, default: T) -> T:
    """The runnable CPU numbered ``want``, or ``default`` when there is none: a recorded
    switch to a CPU that cannot run at that step is ignored."""
    if want is not None:
        for cpu in runnable:
            if cpu.id == want:  # type: ignore[attr-defined]
                return cpu
    return default


class Replay:
    """Recorded choices. A switch to a CPU that cannot run at that step is ignored, so a
    minimized program whose ops changed still runs (the machine records what happened)."""

    def __init__(
        self, switches: Iterable[tuple[int, int]] = (), inject: Iterable[tuple[str, int]] = ()
    ) -> None:
        self.switches = dict(switches)
        self.inject = frozenset(inject)

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        want = self.switches.get(step)
        # Most steps have no recorded switch: answer those without a second call.
        return default if want is None else cpu_or_default(runnable, want, default)

    def fire(self, point: str, nth: int) -> bool:
        return (point, nth) in self.inject


class RandomChoices:
    """Seeded random choices for generation and benchmarks.

    ``preempt`` is the chance of a switch at each step with a choice (free interleaving). With
    ``bound`` set, the PCT-style bounded-preemption mode is used instead: ``bound`` switch
    steps are drawn up front within ``horizon`` and no other switch happens, which finds
    shallow races with far fewer wasted runs. ``inject`` maps injection points to the
    probability that an arrival fails.
    """

    def __init__(
        self,
        seed: int,
        *,
        preempt: float = 0.2,
        bound: int | None = None,
        horizon: int = 256,
        inject: Mapping[str, float] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.preempt = preempt
        self.switch_at = (
            frozenset(self.rng.randrange(1, horizon + 1) for _ in range(bound)) if bound is not None else None
        )
        self.inject = dict(inject or {})

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        if self.switch_at is not None:
            if step not in self.switch_at:
                return default
        elif self.rng.random() >= self.preempt:
            return default
        return runnable[self.rng.randrange(len(runnable))]

    def fire(self, point: str, nth: int) -> bool:
        rate = self.inject.get(point)
        return rate is not None and self.rng.random() < rate

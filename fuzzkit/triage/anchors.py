"""Recorded choices anchored to ops, so that they survive the minimizer's edits.

A program records its choices by global position: a switch "before global step 57, run cpu1",
an injection "the 3rd arrival at alloc_page fails". Both move as soon as an earlier op is
removed, an argument changes the number of steps an op takes, or an earlier injection is
dropped: the race the switch created is then missed by a few steps, and a perfectly removable
op looks necessary. So the minimizer re-expresses them relative to the ops they happened in:

* a switch becomes "the ``n``-th time the default CPU is about to run step ``local`` of call
  ``call``, run ``cpu`` instead" (the preempted op's progress, which is what a race is made of);
* an injection becomes "the ``k``-th arrival at ``point`` during call ``call`` fails".

When an op is removed, the switches anchored in it are either dropped or carried to where it
was, the start of the next op on its CPU (:meth:`Anchors.carried`): the preemption may have
been the op's own race, or the op may only have hosted it.

:class:`Recording` replays a program as recorded and collects its :class:`Anchors`;
:class:`Anchored` replays anchors on an edited program, and :class:`Surveyed` also notes
every choice the scheduler offered, where the minimizer may try a new switch. Each is a
:class:`~fuzzkit.machine.choices.ChoiceSource`; all need a watched run of a
:class:`~fuzzkit.triage.probe.Probe` to know which call an injection arrives in. What a run
under :class:`Anchored` actually did is recorded by the machine as ordinary global switches
and injections, which is what the minimized program keeps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fuzzkit.machine.choices import Replay, cpu_or_default
from fuzzkit.triage.probe import Probe

T = TypeVar("T")

#: (call, step within the call, occurrence of that pending step at a choice, cpu to run instead)
Switch = tuple[int, int, int, int]
#: (call, injection point, arrival at that point within the call)
Injection = tuple[int, str, int]
#: A choice the scheduler offered: the (call, step within the call, occurrence) pending on
#: the default CPU, as a :data:`Switch` is anchored, then the default CPU and every CPU that
#: could run (the default among them).
ChoicePoint = tuple[int, int, int, int, tuple[int, ...]]


def pending(cpu: Any) -> tuple[int, int]:
    """The (call index, step within the call) a CPU runs next if it is picked."""
    if cpu.gen is None:
        return cpu.queue[0].index, 1
    return cpu.call.index, cpu.op_steps + 1


@dataclass(frozen=True)
class Anchors:
    switches: tuple[Switch, ...] = ()
    inject: tuple[Injection, ...] = ()

    def remap(self, calls: Mapping[int, int], cpus: Mapping[int, int] | None = None) -> Anchors:
        """Anchors for a program whose call ``i`` is now ``calls[i]`` and CPU ``c`` is now
        ``cpus[c]``; choices of calls or CPUs that are gone are dropped."""
        return Anchors(
            tuple(
                (calls[c], local, nth, cpu if cpus is None else cpus[cpu])
                for c, local, nth, cpu in self.switches
                if c in calls and (cpus is None or cpu in cpus)
            ),
            tuple((calls[c], point, k) for c, point, k in self.inject if c in calls),
        )

    def switched(self, call: int, local: int, nth: int, cpu: int) -> Anchors:
        """These anchors with the choice at (``call``, ``local``, ``nth``) running ``cpu``,
        replacing whatever switch was anchored there."""
        kept = tuple(s for s in self.switches if s[:3] != (call, local, nth))
        return Anchors((*kept, (call, local, nth, cpu)), self.inject)

    def without_calls(self, removed: set[int], n_calls: int) -> tuple[Anchors, dict[int, int]]:
        kept = [i for i in range(n_calls) if i not in removed]
        calls = {old: new for new, old in enumerate(kept)}
        return self.remap(calls), calls

    def carried(self, removed: set[int], cpu_of: Sequence[int]) -> Anchors:
        """Anchors for the program without calls ``removed`` (``cpu_of[i]`` is call ``i``'s
        CPU) where a removed call's switches are not dropped but moved to where the call
        was: the start of the next kept call on its CPU, which is what that CPU has pending
        there now. A preemption that an op only *hosted* (any step of it would do, it is
        the other CPU's progress that matters) then survives the op's removal, instead of
        the op looking necessary. The moved switches come first among that call start's
        occurrences, in the order they were made, and the call's own switches there count
        on after them. None of the removed calls' switches moves when its CPU has no call
        left after it: that CPU is finished there."""
        calls = {old: new for new, old in enumerate(i for i in range(len(cpu_of)) if i not in removed)}
        next_kept: dict[int, int] = {}
        following: dict[int, int | None] = {}
        for i in reversed(range(len(cpu_of))):
            following[i] = next_kept.get(cpu_of[i])
            if i not in removed:
                next_kept[cpu_of[i]] = i
        moved: dict[int, list[int]] = {}
        for c, _, _, cpu in sorted(self.switches):
            target = following[c] if c in removed else None
            if target is not None:
                moved.setdefault(target, []).append(cpu)
        switches = [
            (calls[target], 1, nth, cpu)
            for target, cpus in moved.items()
            for nth, cpu in enumerate(cpus, start=1)
        ]
        for c, local, nth, cpu in self.switches:
            if c not in removed:
                shift = len(moved.get(c, ())) if local == 1 else 0
                switches.append((calls[c], local, nth + shift, cpu))
        inject = tuple((calls[c], point, k) for c, point, k in self.inject if c in calls)
        return Anchors(tuple(switches), inject)


class _Arrivals:
    """Counts arrivals at injection points per call, from the probe's running call."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.counts: Counter[tuple[int, str]] = Counter()

    def arrive(self, point: str) -> tuple[int, str, int]:
        call = self.probe.current_call
        self.counts[call, point] += 1
        return call, point, self.counts[call, point]


class Recording:
    """Replays recorded global choices and collects them as :class:`Anchors`."""

    def __init__(
        self, probe: Probe, switches: Sequence[tuple[int, int]], inject: Sequence[tuple[str, int]]
    ) -> None:
        self._replay = Replay(switches, inject)
        self._arrivals = _Arrivals(probe)
        self._seen: Counter[tuple[int, int]] = Counter()
        self.switches: list[Switch] = []
        self.inject: list[Injection] = []

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        at = pending(default)
        self._seen[at] += 1
        choice = self._replay.pick(step, runnable, default)
        if choice is not default:
            self.switches.append((*at, self._seen[at], choice.id))  # type: ignore[attr-defined]
        return choice

    def fire(self, point: str, nth: int) -> bool:
        where = self._arrivals.arrive(point)
        fired = self._replay.fire(point, nth)
        if fired:
            self.inject.append(where)
        return fired

    def anchors(self) -> Anchors:
        return Anchors(tuple(self.switches), tuple(self.inject))


class Anchored:
    """Replays :class:`Anchors` on a (possibly edited) program."""

    def __init__(self, probe: Probe, anchors: Anchors) -> None:
        self._switches = {(c, local, nth): cpu for c, local, nth, cpu in anchors.switches}
        self._inject = frozenset(anchors.inject)
        self._arrivals = _Arrivals(probe)
        self._seen: Counter[tuple[int, int]] = Counter()

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        at = pending(default)
        self._seen[at] += 1
        return cpu_or_default(runnable, self._switches.get((*at, self._seen[at])), default)

    def fire(self, point: str, nth: int) -> bool:
        return self._arrivals.arrive(point) in self._inject


class Surveyed(Anchored):
    """:class:`Anchored`, noting every choice the scheduler offers as a :data:`ChoicePoint`:
    where else a switch could have gone in this run."""

    def __init__(self, probe: Probe, anchors: Anchors) -> None:
        super().__init__(probe, anchors)
        self.points: list[ChoicePoint] = []

    def pick(self, step: int, runnable: Sequence[T], default: T) -> T:
        choice = super().pick(step, runnable, default)
        at = pending(default)
        ids = tuple(c.id for c in runnable)  # type: ignore[attr-defined]
        self.points.append((*at, self._seen[at], default.id, ids))  # type: ignore[attr-defined]
        return choice

"""Instrumented replays: where an invariant fired, and what the machine looked like before.

A :class:`~fuzzkit.machine.core.Finding` names the op an invariant fired in, not the kernel
primitive. Triage wants both (the primitive is half of a good title), and a report wants the
page-table, range-tree and TLB state *before* the steps it shows, while a run only leaves the
final machine behind. Both are recovered here without touching the core, from the compiled
:class:`~fuzzkit.registry.Kernel` alone:

* Every named primitive and fault-path stage is wrapped in a function that notes its name when
  a :class:`~fuzzkit.machine.core.Violation` propagates through it. The first name noted is
  the innermost primitive, the rest its callers. Wrappers never yield, so the step sequence,
  and with it every recorded choice, is exactly that of the plain kernel.
* Every PTE write notes the primitives on the Python stack at that moment (the running
  generators' frames are on it), found by their code objects, so a finding caused by an
  earlier write (:class:`~fuzzkit.machine.core.Cause`) is attributed to the primitive that
  made the write, as a violation is to the one it fired in. This observer runs in probe
  replays only, never in a campaign.
* In a *watched* run every op executor is wrapped in a generator that forwards each step
  unchanged, noting which call is running (so choices can be tied to ops rather than to global
  step numbers, see :mod:`fuzzkit.triage.minimize`) and, just before global step
  ``snapshot_at``, copying the state a report shows. Every step of a run is a ``send`` into
  some op's executor, so "before step N" is always observed.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fuzzkit.machine.arch import PAGE_SHIFT
from fuzzkit.machine.choices import ChoiceSource, Replay
from fuzzkit.machine.core import OP_STEP_BUDGET, Call, Machine, RunResult, Violation
from fuzzkit.program import Program
from fuzzkit.registry import Kernel, Registry
from fuzzkit.runner import Session

#: The plugin name the core registers its own primitives under (PTE atomics, TLB flush).
CORE = "core"


@dataclass(frozen=True)
class Snapshot:
    """The state a report shows, copied out of a machine (nothing refers back into it)."""

    #: Before this global step ran (or after the last step, for a final snapshot).
    step: int
    #: Kernel virtual address -> the arch's description of the raw PTE (absent: 0).
    ptes: dict[int, str]
    #: CPU -> cached translations: kernel virtual address -> "pfn 0x... owner [freed]".
    tlbs: dict[int, dict[int, str]]
    #: Object name ("arena0") -> its range tree's FREE page intervals ``[start, end)``.
    free_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


def snapshot(m: Machine, step: int) -> Snapshot:
    """Copy the PTEs, TLBs and range trees of ``m``. Range trees are found on handle objects
    exposing ``rt.intervals()`` (the arena's, kernel/bpf/range_tree.c), so the core stays
    ignorant of arenas and a subsystem without one simply shows none."""
    describe = m.arch.describe_pte
    ptes = {}
    for vpage, raw in sorted(m.ptes.items()):
        page = m.page_of(raw)
        ptes[vpage << PAGE_SHIFT] = describe(raw) + (f" {page.owner}" if page is not None else "")
    tlbs = {
        c.id: {
            vpage << PAGE_SHIFT: f"pfn {page.pfn:#x} {page.owner}{' freed' if page.freed else ''}"
            for vpage, page in sorted(c.tlb.items())
        }
        for c in m.cpus
    }
    ranges: dict[str, list[tuple[int, int]]] = {}
    for kind, objs in sorted(m.handles.items()):
        for i, obj in enumerate(objs):
            intervals = getattr(getattr(obj, "rt", None), "intervals", None)
            if callable(intervals):
                ranges[f"{kind}{i}"] = [(int(s), int(e)) for s, e in intervals()]
    return Snapshot(step, ptes, tlbs, ranges)


@dataclass
class ProbeRun:
    """One instrumented replay."""

    result: RunResult
    #: Primitives the violation propagated through, innermost first (empty: it fired in an
    #: op's own code or in a check at op completion).
    chain: list[str]
    #: The primitive the finding is attributed to (see :meth:`Probe.where`), or None.
    primitive: str | None
    #: State before step ``snapshot_at``, when asked for and reached.
    before: Snapshot | None
    #: Primitives that made the write the finding's cause names, innermost first (empty: no
    #: cause, or one made outside any primitive), and the one it is attributed to.
    cause_chain: list[str] = field(default_factory=list)
    cause_primitive: str | None = None


class Probe:
    """An instrumented copy of one compiled kernel, reused across many replays."""

    def __init__(self, kernel: Kernel, registry: Registry) -> None:
        self._chain: list[str] = []
        self._snapshot_at: int | None = None
        self._before: Snapshot | None = None
        #: In a watched run, the index of the call whose step is running.
        self.current_call = -1
        #: (step, vpage) of each PTE write -> the primitives making it, innermost first.
        self._writers: dict[tuple[int, int], list[str]] = {}
        prims = {name: self._attribute(name, fn) for name, fn in vars(kernel.prims).items()}
        # The compiled stages, replacements included, are primitives under their stage names.
        stage_names = {id(getattr(kernel.prims, name)): name for name in registry.fault_stages}
        path = tuple(
            (self._attribute(stage_names.get(id(fn), getattr(fn, "__name__", "?")), fn), kinds)
            for fn, kinds in kernel.fault_path
        )
        named = [*vars(kernel.prims).items()]
        named += [(stage_names.get(id(fn), getattr(fn, "__name__", "?")), fn) for fn, _ in kernel.fault_path]
        self._code_names = {fn.__code__: name for name, fn in named if hasattr(fn, "__code__")}
        observers = dict(kernel.observers)
        observers["pte_set"] = (self._note_writer, *observers["pte_set"])
        self.kernel = dataclasses.replace(
            kernel, prims=SimpleNamespace(**prims), fault_path=path, observers=observers
        )
        self._watched = dataclasses.replace(
            self.kernel,
            ops={
                op_id: dataclasses.replace(spec, executor=self._watch(spec.executor))
                for op_id, spec in kernel.ops.items()
            },
        )
        replaced = {name for name, _ in kernel.replaced}
        owners = {name: p.plugin for (name, _), p in registry.primitives.items()}
        owners.update({name: st.plugin for name, st in registry.fault_stages.items()})
        #: Primitives that, like memcpy in a kernel stack trace, say little about where a bug
        #: is: the core's PTE atomics and TLB flush, unless a plugin replaced them.
        self.generic = frozenset(n for n, owner in owners.items() if owner == CORE and n not in replaced)

    def where(self, chain: list[str]) -> str | None:
        """The innermost primitive of ``chain`` that is not generic; the innermost generic one
        when nothing else encloses it."""
        for name in chain:
            if name not in self.generic:
                return name
        return chain[0] if chain else None

    def run(
        self,
        calls: list[Call],
        choices: ChoiceSource,
        *,
        trace: bool = False,
        snapshot_at: int | None = None,
        watch: bool = False,
        op_step_budget: int = OP_STEP_BUDGET,
    ) -> ProbeRun:
        """Run ``calls``; ``watch`` (implied by ``snapshot_at``) keeps :attr:`current_call`."""
        self._chain = []
        self._writers = {}
        self._snapshot_at, self._before = snapshot_at, None
        self.current_call = -1
        kernel = self.kernel
        if watch or snapshot_at is not None:
            # Calls carry the op spec they were resolved with: point them at the watched one.
            kernel = self._watched
            calls = [dataclasses.replace(c, spec=kernel.ops[c.spec.id]) for c in calls]
        result = Machine(kernel, calls, choices, trace=trace, op_step_budget=op_step_budget).run()
        chain = self._chain if result.finding is not None else []
        cause = result.finding.cause if result.finding is not None else None
        cause_chain = self._writers.get((cause.step, cause.vpage), []) if cause is not None else []
        return ProbeRun(result, chain, self.where(chain), self._before, cause_chain, self.where(cause_chain))

    # -- wrappers ------------------------------------------------------------------------

    def _note(self, name: str) -> None:
        self._chain.append(name)

    def _note_writer(self, m: Machine, cpu: Any, vpage: int, old: int, new: int) -> None:
        names = self._code_names
        chain = []
        frame = sys._getframe(1)
        while frame is not None:
            name = names.get(frame.f_code)
            if name is not None:
                chain.append(name)
            frame = frame.f_back  # type: ignore[assignment]
        self._writers[m.step, vpage] = chain

    def _attribute(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        note = self._note

        def through(gen: Generator[str, None, Any]) -> Generator[str, None, Any]:
            try:
                return (yield from gen)
            except Violation:
                note(name)
                raise

        def primitive(*args: Any, **kwargs: Any) -> Any:
            try:
                out = fn(*args, **kwargs)
            except Violation:
                note(name)
                raise
            # Generator primitives are reached through ``yield from``: delegate to keep the
            # steps, and catch what propagates while the caller drives it.
            return through(out) if isinstance(out, Generator) else out

        primitive.__name__ = name
        primitive.__wrapped__ = fn  # type: ignore[attr-defined]
        return primitive

    def _watch(self, executor: Callable[..., Any]) -> Callable[..., Any]:
        def watched(m: Machine, cpu: Any, args: dict[str, Any]) -> Generator[str, None, Any]:
            gen = executor(m, cpu, args)
            index = cpu.call.index if cpu.call is not None else -1
            try:
                while True:
                    if m.step == self._snapshot_at and self._before is None:
                        self._before = snapshot(m, m.step)
                    self.current_call = index
                    try:
                        label = gen.send(None)
                    except StopIteration as stop:
                        return stop.value
                    yield label
            finally:
                gen.close()

        return watched


class Replayer:
    """Replays programs with attribution, one :class:`Probe` per configuration."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._probes: dict[tuple[str, str, int], Probe] = {}
        #: Replays run so far (the minimizer's budget counts these).
        self.replays = 0

    def probe(self, program: Program) -> Probe:
        key = (program.arch, program.revision, program.cpus)
        probe = self._probes.get(key)
        if probe is None:
            kernel = self.session.kernel(*key)
            probe = self._probes[key] = Probe(kernel, self.session.registry)
        return probe

    def run(
        self,
        program: Program,
        *,
        trace: bool = False,
        snapshot_at: int | None = None,
        source: str = "<program>",
        choices: ChoiceSource | None = None,
        watch: bool = False,
    ) -> ProbeRun:
        """Replay ``program`` under its recorded choices (or ``choices``)."""
        _, calls = self.session.resolve(program, source)  # names the file and field at fault
        probe = self.probe(program)
        self.replays += 1
        if choices is None:
            choices = Replay(program.switches, program.inject)
        return probe.run(calls, choices, trace=trace, snapshot_at=snapshot_at, watch=watch)

"""The minimizer's search (the public entry point and its documentation are in
:mod:`fuzzkit.triage.minimize`).

A candidate is an edited program together with the current best's choices, anchored to its
ops (:mod:`fuzzkit.triage.anchors`) and carried through the edit: calls renumbered when ops
go or move, CPUs renumbered when CPUs merge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from fuzzkit.domains import Domain, Handle
from fuzzkit.program import OpCall, Program
from fuzzkit.runner import Session
from fuzzkit.triage.anchors import Anchored, Anchors, ChoicePoint, Recording, Surveyed
from fuzzkit.triage.probe import ProbeRun, Replayer
from fuzzkit.triage.signature import attribute, signature_of
from fuzzkit.triage.size import PassStats, ProgramSize, program_size

Candidate = tuple[Program, Anchors]
Key = tuple[str, str | None, str]

#: Choice points of one run a rescheduling move tries a switch at, at most: a bound on the
#: move's replays for long interleaved programs (it runs when the program is small).
MAX_CHOICE_POINTS = 256


class OutOfBudget(Exception):
    """The replay budget is spent; the current best stands."""


def canonical_args(oc: OpCall, args: Mapping[str, Domain]) -> dict[str, Any]:
    """Explicit arguments only where they differ from the default, in declaration order."""
    return {k: oc.args[k] for k in args if k in oc.args and oc.args[k] != args[k].base()}


class Shrinker:
    def __init__(
        self,
        session: Session,
        replayer: Replayer,
        keys: tuple[Key, Key],
        budget: int,
        window: int,
    ) -> None:
        self.session = session
        self.replayer = replayer
        #: The :attr:`~fuzzkit.triage.signature.Signature.key` every kept candidate has, as
        #: its own replay gives it and after its baseline replay (:func:`attribute`).
        self.plain_key, self.key = keys
        self.budget = budget
        self.window = window
        self.stats: dict[str, PassStats] = {}
        self.best = Program()
        self.best_run: ProbeRun | None = None
        self.best_size = ProgramSize(0, 0, 0, 0, 0)
        self.anchors = Anchors()
        #: Call indexes of the best in the order they started.
        self.started: list[int] = []

    def size(self, program: Program) -> ProgramSize:
        return program_size(program, self.session.kernel(program.arch, program.revision, program.cpus))

    def canonical(self, program: Program, run: ProbeRun) -> Program:
        """``program`` with the choices ``run`` made and explicit non-default arguments only."""
        recorded = self.session.record(program, run.result)
        kernel = self.session.kernel(program.arch, program.revision, program.cpus)
        recorded.ops = [
            OpCall(oc.cpu, oc.op, canonical_args(oc, kernel.ops[oc.op].args)) for oc in program.ops
        ]
        recorded.description = program.description
        return recorded

    def adopt(self, program: Program) -> None:
        """Make ``program`` (known to reproduce) the best, and anchor its choices."""
        recording = Recording(self.replayer.probe(program), program.switches, program.inject)
        run = self.replayer.run(program, choices=recording, trace=True, watch=True)
        self.best, self.best_run, self.best_size = program, run, self.size(program)
        self.anchors = recording.anchors()
        self.started = list(dict.fromkeys(t.call for t in run.result.trace or []))

    def attempt(self, stage: str, candidate: Candidate) -> bool:
        program, anchors = candidate
        stats = self.stats.setdefault(stage, PassStats(stage))
        if self.replayer.replays >= self.budget:
            raise OutOfBudget
        stats.tried += 1
        try:
            choices = Anchored(self.replayer.probe(program), anchors)
            run = self.replayer.run(program, choices=choices, watch=True)
        except ValueError:  # an edit the op table or a domain rejects is simply not kept
            return False
        sig = signature_of(run)
        if sig is None or sig.key != self.plain_key:
            return False
        recorded = self.canonical(program, run)
        if self.size(recorded) >= self.best_size:
            return False
        # Only now, for a smaller candidate, the baseline replay: a variant's bug must stay
        # the variant's (attribution runs a second replay, so it comes last).
        if sig.finding.replaced and attribute(self.session, recorded, sig).key != self.key:
            return False
        stats.kept += 1
        self.adopt(recorded)
        return True

    # -- edits ---------------------------------------------------------------------------

    def edit(self, **changes: Any) -> Candidate:
        return dataclasses.replace(self.best, **changes), self.anchors

    def without_ops(self, removed: set[int], *, carry: bool = False) -> Candidate:
        """The best without ops ``removed``; their switches are dropped, or with ``carry``
        moved to where the ops were (:meth:`Anchors.carried`)."""
        if carry:
            anchors = self.anchors.carried(removed, [oc.cpu for oc in self.best.ops])
        else:
            anchors, _ = self.anchors.without_calls(removed, len(self.best.ops))
        ops = [oc for i, oc in enumerate(self.best.ops) if i not in removed]
        return dataclasses.replace(self.best, ops=ops), anchors

    def without_ops_renumbered(self, removed: set[int], *, carry: bool = False) -> Candidate | None:
        """:meth:`without_ops`, with handle arguments renumbered as if the removed creators
        had never run: a handle names the n-th object of its kind created in the run, so
        removing the creator of object 1 makes object 3 object 2. Creation order is taken to
        be program order. None when no removed op creates anything."""
        kernel = self.session.kernel(self.best.arch, self.best.revision, self.best.cpus)
        made: dict[str, int] = {}
        gone: dict[str, list[int]] = {}
        for i, oc in enumerate(self.best.ops):
            kind = kernel.ops[oc.op].creates
            if kind is not None:
                if i in removed:
                    gone.setdefault(kind, []).append(made.get(kind, 0))
                made[kind] = made.get(kind, 0) + 1
        if not gone:
            return None
        program, anchors = self.without_ops(removed, carry=carry)
        ops = []
        for oc in program.ops:
            args = dict(oc.args)
            for name, dom in kernel.ops[oc.op].args.items():
                if isinstance(dom, Handle) and name in args and dom.kind in gone:
                    args[name] -= sum(1 for h in gone[dom.kind] if h < args[name])
            ops.append(OpCall(oc.cpu, oc.op, args))
        return dataclasses.replace(program, ops=ops), anchors

    def try_without_ops(self, stage: str, removed: set[int]) -> bool:
        """Without ops ``removed``: handles renumbered first (when one of them created
        something), then as they are; each with the removed ops' switches dropped, then,
        when they had any, carried to where the ops were."""
        hosted = any(c in removed for c, *_ in self.anchors.switches)
        for carry in (False, True) if hosted else (False,):
            renumbered = self.without_ops_renumbered(removed, carry=carry)
            if renumbered is not None and self.attempt(stage, renumbered):
                return True
            if self.attempt(stage, self.without_ops(removed, carry=carry)):
                return True
        return False

    @staticmethod
    def set_arg(candidate: Candidate, op: int, name: str, value: Any) -> Candidate:
        program, anchors = candidate
        ops = list(program.ops)
        ops[op] = OpCall(ops[op].cpu, ops[op].op, {**ops[op].args, name: value})
        return dataclasses.replace(program, ops=ops), anchors

    def args_of(self, program: Program, op: int) -> list[tuple[str, Domain, int]]:
        """(name, domain, current index) of every argument of op ``op``."""
        oc = program.ops[op]
        domains = self.session.kernel(program.arch, program.revision, program.cpus).ops[oc.op].args
        return [(n, d, d.index(oc.args[n]) if n in oc.args else 0) for n, d in domains.items()]

    def ddmin(self, stage: str, count: Callable[[], int], drop: Callable[[set[int]], bool]) -> bool:
        """Remove chunks of items (by index, ``count()`` of them in the current best), halving
        the chunk size down to one; ``drop`` tries the best without the given indexes. Chunks
        are tried from the end, so a removal never shifts the indexes still to try."""
        progress = False
        chunk = max(count() // 2, 1)
        while chunk >= 1:
            start = ((count() - 1) // chunk) * chunk
            while start >= 0:
                n = count()
                if start < n and drop(set(range(start, min(start + chunk, n)))):
                    progress = True
                start -= chunk
            chunk //= 2
        return progress

    # -- passes --------------------------------------------------------------------------

    def pass_ops(self) -> bool:
        never = set(range(len(self.best.ops))) - set(self.started)
        # Ops queued behind the finding never ran: usually all of them go in one replay.
        progress = bool(never) and self.try_without_ops("ops", never)
        return (
            self.ddmin("ops", lambda: len(self.best.ops), lambda gone: self.try_without_ops("ops", gone))
            or progress
        )

    def pass_cpus(self) -> bool:
        used = sorted({oc.cpu for oc in self.best.ops})
        if len(used) < self.best.cpus and self.attempt("cpus", self.compacted(*self.edit())):
            return True
        # Merged ops go in the order they ran, so each CPU keeps its own order and the moved
        # ops fall where they used to run.
        ranked = self.started + [i for i in range(len(self.best.ops)) if i not in self.started]
        calls = {old: new for new, old in enumerate(ranked)}
        for k in reversed(used):
            for j in used:
                if j != k:
                    ops = [self.best.ops[i] for i in ranked]
                    ops = [dataclasses.replace(oc, cpu=j if oc.cpu == k else oc.cpu) for oc in ops]
                    cpus = {c: j if c == k else c for c in range(self.best.cpus)}
                    program = dataclasses.replace(self.best, ops=ops)
                    if self.attempt("cpus", self.compacted(program, self.anchors.remap(calls, cpus))):
                        return True
        return False

    @staticmethod
    def compacted(program: Program, anchors: Anchors) -> Candidate:
        """CPUs numbered densely in their order, unused ones dropped."""
        dense = {cpu: i for i, cpu in enumerate(sorted({oc.cpu for oc in program.ops}))}
        ops = [dataclasses.replace(oc, cpu=dense[oc.cpu]) for oc in program.ops]
        program = dataclasses.replace(program, cpus=max(len(dense), 1), ops=ops)
        return program, anchors.remap({i: i for i in range(len(ops))}, dense)

    def pass_schedule(self) -> bool:
        def without(gone: set[int]) -> Candidate:
            switches = tuple(s for i, s in enumerate(self.anchors.switches) if i not in gone)
            return self.best, dataclasses.replace(self.anchors, switches=switches)

        return self.ddmin(
            "schedule",
            lambda: len(self.anchors.switches),
            lambda gone: self.attempt("schedule", without(gone)),
        )

    def pass_inject(self) -> bool:
        def without(gone: set[int]) -> Candidate:
            inject = tuple(x for i, x in enumerate(self.anchors.inject) if i not in gone)
            return self.best, dataclasses.replace(self.anchors, inject=inject)

        if self.ddmin(
            "inject", lambda: len(self.anchors.inject), lambda gone: self.attempt("inject", without(gone))
        ):
            return True
        # An earlier arrival failing instead: the first allocation of an op rather than its
        # fifth.
        inject = self.anchors.inject
        for i, (call, point, k) in enumerate(inject):
            for lower in range(1, k):
                if (call, point, lower) not in inject:
                    changed = (*inject[:i], (call, point, lower), *inject[i + 1 :])
                    if self.attempt("inject", (self.best, dataclasses.replace(self.anchors, inject=changed))):
                        return True
        return False

    def pass_args(self) -> bool:
        progress = False
        for op in range(len(self.best.ops)):
            for name, dom, _ in self.args_of(self.best, op):
                while True:
                    cur = next(c for n, _, c in self.args_of(self.best, op) if n == name)
                    if cur == 0 or not self.lower([(op, name)], dom, cur):
                        break
                    progress = True
        return progress

    def pass_args_together(self) -> bool:
        """Arguments of one domain holding one value in several ops (an offset one op
        scratches and another reads back) usually only work when lowered together."""
        groups: dict[tuple[Domain, Any], list[tuple[int, str]]] = {}
        for op in range(len(self.best.ops)):
            for name, dom, cur in self.args_of(self.best, op):
                if cur:
                    groups.setdefault((dom, self.best.ops[op].args[name]), []).append((op, name))
        return any(
            self.lower(places, dom, dom.index(value))
            for (dom, value), places in groups.items()
            if len(places) > 1
        )

    def lower(self, places: list[tuple[int, str]], dom: Domain, cur: int) -> bool:
        """Set the arguments at ``places`` to the lowest index below ``cur`` that keeps the
        bug: the default first, then a binary search between."""

        def at(index: int) -> Candidate:
            candidate = self.edit()
            for op, name in places:
                candidate = self.set_arg(candidate, op, name, dom.at(index))
            return candidate

        if self.attempt("args", at(0)):
            return True
        lo, hi, kept = 0, cur, False
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.attempt("args", at(mid)):
                hi, kept = mid, True
            else:
                lo = mid
        return kept

    def pass_substitute(self) -> bool:
        """Replace an op by one earlier in the op table, keeping the arguments both declare,
        and trying each of the first ``window`` values of one argument of the new op."""
        kernel = self.session.kernel(self.best.arch, self.best.revision, self.best.cpus)
        table = sorted(kernel.ops)
        for i, oc in enumerate(self.best.ops):
            for op_id in table[: table.index(oc.op)]:
                domains = kernel.ops[op_id].args
                carried = {}
                for name, dom in domains.items():
                    if name in oc.args:
                        try:
                            carried[name] = dom.validate(oc.args[name])
                        except ValueError:
                            continue
                ops = [*self.best.ops[:i], OpCall(oc.cpu, op_id, carried), *self.best.ops[i + 1 :]]
                base = self.edit(ops=ops)
                if self.attempt("substitute", base):
                    return True
                for name, dom in domains.items():
                    for index in range(1, min(dom.size, self.window)):
                        if self.attempt("substitute", self.set_arg(base, i, name, dom.at(index))):
                            return True
        return False

    def pass_drop_and_set(self) -> bool:
        """Drop one op while setting one argument of another to each of its first ``window``
        values: some bugs need a value the dropped op made unnecessary (one allocation at a
        higher offset instead of two that fragment the range tree)."""
        n = len(self.best.ops)
        for drop in range(n - 1, -1, -1):
            base = self.without_ops_renumbered({drop}) or self.without_ops({drop})
            for op in range(n - 1):
                for name, dom, cur in self.args_of(base[0], op):
                    for index in range(min(dom.size, self.window)):
                        if index != cur and self.attempt(
                            "drop+arg", self.set_arg(base, op, name, dom.at(index))
                        ):
                            return True
        return False

    def pass_default_and_set(self) -> bool:
        """Set one argument to its default while setting another to each of its first
        ``window`` values: two values that only work together (an arena size and an offset
        in it) reach their simplest pair."""
        for op in range(len(self.best.ops)):
            for name, dom, cur in self.args_of(self.best, op):
                if cur == 0:
                    continue
                base = self.set_arg(self.edit(), op, name, dom.base())
                for other in range(len(self.best.ops)):
                    for o_name, o_dom, o_cur in self.args_of(self.best, other):
                        if (other, o_name) == (op, name):
                            continue
                        for index in range(min(o_dom.size, self.window)):
                            if index != o_cur and self.attempt(
                                "default+arg", self.set_arg(base, other, o_name, o_dom.at(index))
                            ):
                                return True
        return False

    def pass_reschedule(self) -> bool:
        """The schedule searched afresh rather than edited (:meth:`reschedule`), for the
        best as it is and for edits that only work under another schedule: an op dropped,
        for an op that stood in for a preemption (it let the other CPU get just far enough
        ahead); and two ops on different CPUs trading places, for a race whose default
        order needs one preemption more than the mirrored one. Switch by switch, the
        ``schedule`` pass cannot leave a schedule whose switches only work together (one
        hands the CPU over, the next takes it back before anything ran)."""
        if len(self.best.switches) > 1 and self.reschedule(self.best, self.anchors):
            return True
        n = len(self.best.ops)
        for drop in range(n - 1, -1, -1):
            removed = {drop}
            program, _ = self.without_ops_renumbered(removed) or self.without_ops(removed)
            if self.reschedule(program, self.anchors.carried(removed, [oc.cpu for oc in self.best.ops])):
                return True
        for i in range(n):
            for j in range(i + 1, n):
                a, b = self.best.ops[i], self.best.ops[j]
                if a.cpu != b.cpu:
                    ops = list(self.best.ops)
                    ops[i], ops[j] = dataclasses.replace(a, cpu=b.cpu), dataclasses.replace(b, cpu=a.cpu)
                    if self.reschedule(dataclasses.replace(self.best, ops=ops), self.anchors):
                        return True
        return False

    def reschedule(self, program: Program, anchors: Anchors) -> bool:
        """Try ``program`` (its injections anchored as in ``anchors``) under the default
        schedule, then with one switch at each choice point of the default run, then with
        ``anchors``' switches and one more at each choice point of that run. Only schedules
        with few enough switches to make a smaller program are tried, and none on one CPU."""
        size = self.size(program)
        if program.cpus < 2 or (size.ops, size.cpus) > (self.best_size.ops, self.best_size.cpus):
            return False
        # With as many ops and CPUs as the best, only fewer switches make it smaller.
        limit = self.best_size.switches if (size.ops, size.cpus) == self.best_size.shape[:2] else None

        def fits(switches: int) -> bool:
            return limit is None or switches < limit

        plain = Anchors((), anchors.inject)
        if not fits(0):
            return False
        if self.attempt("reschedule", (program, plain)):
            return True
        bases = [plain] if fits(1) else []
        if anchors.switches and fits(len(anchors.switches) + 1):
            bases.append(anchors)
        for base in bases:
            for call, local, nth, default, runnable in self.choice_points(program, base):
                for cpu in runnable:
                    if cpu != default and self.attempt(
                        "reschedule", (program, base.switched(call, local, nth, cpu))
                    ):
                        return True
        return False

    def choice_points(self, program: Program, anchors: Anchors) -> list[ChoicePoint]:
        """The first :data:`MAX_CHOICE_POINTS` choices the scheduler offers when ``program``
        runs under ``anchors`` (one replay, counted against the budget)."""
        if self.replayer.replays >= self.budget:
            raise OutOfBudget
        try:
            survey = Surveyed(self.replayer.probe(program), anchors)
            self.replayer.run(program, choices=survey, watch=True)
        except ValueError:
            return []
        return survey.points[:MAX_CHOICE_POINTS]

    def run(self) -> bool:
        """Shrink to a fixpoint; False when the budget ran out first."""
        cheap = (
            self.pass_ops,
            self.pass_cpus,
            self.pass_schedule,
            self.pass_inject,
            self.pass_args,
            self.pass_args_together,
        )
        try:
            while True:
                if any([p() for p in cheap]):
                    continue
                if not (
                    self.pass_reschedule()
                    or self.pass_substitute()
                    or self.pass_drop_and_set()
                    or self.pass_default_and_set()
                ):
                    return True
        except OutOfBudget:
            return False

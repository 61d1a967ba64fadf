"""Finding signatures: the title a bug is known by, and the alternative titles that let the
same bug, seen another way, merge with it.

The title extends :attr:`Finding.title <fuzzkit.machine.core.Finding.title>` the way
syzkaller titles a crash after the function it happened in::

    I8 installer overwrote REAL pte in arena.kernel_access at apply_range_set_scratch_cb (x86, fixed)

``<SPEC id> <what broke> in <op> at <primitive> (<arch>, <revision>)``. The primitive is
the innermost named kernel primitive the violation was raised in, skipping the core's PTE
atomics and TLB flush when a subsystem primitive encloses them (they are the memcpy of this
kernel: they say little about where a bug is). A finding raised outside any primitive (a
check at op completion, a deadlock) has no `` at ...`` part, so its title is exactly the
finding's own. Messages carry no numbers (specifics live in ``detail``), so titles are
stable across occurrences.

Alternative titles cover races. When the invariant fires in op A while another CPU is in the
middle of op B, the breakage may well be B's (a check at the end of A sees B's half-done
work), and the same race fires in B when the schedule is mirrored. Such a finding gets two
alternative titles per op B in flight: the title as if it had fired in B,
``<SPEC id> <what broke> in B (<arch>, <revision>)``, and the race title
``<SPEC id> <what broke> in A vs B (<arch>, <revision>)`` with A and B in sorted order.

A check run when an op completes (an ``op_done`` check) names the op that happened to finish
when the broken state was first noticed, which need not be the op that broke it: a free that
forgets to uncharge a page is caught at the free's own completion, or, when another CPU held
the arena lock just then (the check backs off from half-done bookkeeping), at the completion
of that CPU's allocation, with nothing left in flight to link the two. Such a finding gets
the op-agnostic alternative title ``<SPEC id> <what broke> on op completion (<arch>,
<revision>)``, shared by every op's completion, so the same broken state merges into one bug
whichever op finished first. This is the syzkaller habit again: a crash is titled after
where in the kernel it fired, never after the syscall that was running, and for a check at
op completion the op is the closest thing to a syscall. The price: two different bugs that
break one invariant with one message, both caught at op completion, count as one bug (the
title keeps the op of its first, plainest occurrence, see :mod:`fuzzkit.triage.pipeline`).
The other way, an op-agnostic *title*, would rename every such bug (and its slug, so bugs
recorded before would stop matching) and drop the op a reader starts from. Whether a
finding came from such a check is read off the run (:func:`at_completion`), without help
from the core.

A check that detects a broken state *after the fact* (an access through a stale TLB entry:
I9, or I2 on a freed page; a page unmapped and never freed, I8) names the write that created the state (a
:class:`~fuzzkit.machine.core.Cause`), and then the title keys on the cause, the kernel
function that made that write (attributed by :mod:`fuzzkit.triage.probe`)::

    I9 allocated slot reached the scratch page at apply_range_set_cb (x86, fixed)

``<SPEC id> <what broke> at <primitive> (<arch>, <revision>)``, or ``... in <op> (...)``
with the op that made the write when no primitive made it. No op is named next to the
primitive: one broken state made by one kernel function is one bug whichever op called it
(scx.alloc grows an arena through the same allocation path as arena.alloc). The op that
tripped over the state goes into the detail and into an alternative title, ``<SPEC id>
<what broke> in <tripping op> (<arch>, <revision>)``, so a bug reached through three access
ops lists three alternative titles. Those are for a reader: such a finding merges on its
title alone (:attr:`Signature.keys`), never on the op that happened to trip over it, and no
race or completion titles are made for it (the cause already says whose work broke the
state).

Findings sharing a title or an alternative title are one bug (:mod:`fuzzkit.triage.store`).

A finding of a run with replaced primitives is replayed on the baseline as well
(:mod:`fuzzkit.triage.attribution`); when it needs the variant, every title ends in
``, needs <plugin>``::

    I16 scx_arena_alloc failed although the arena had room in scx.alloc (x86, fixed), needs scx_single_retry

so a variant's bug and a baseline bug never share a title.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fuzzkit.files import slug as slug  # one naming for finding files and bundles
from fuzzkit.machine.core import Cause, Finding, Machine, RunResult
from fuzzkit.program import Program
from fuzzkit.runner import Session
from fuzzkit.triage import attribution
from fuzzkit.triage.probe import ProbeRun, Replayer


@dataclass(frozen=True)
class Signature:
    """How a finding is known to triage."""

    title: str
    #: Titles under which the same bug may also show up (races seen from the other side).
    alt_titles: tuple[str, ...]
    finding: Finding
    #: The primitive the violation was attributed to, or None (see module docstring).
    primitive: str | None
    #: Ops other CPUs were in the middle of when it fired, sorted (none: a plain occurrence).
    in_flight: tuple[str, ...] = ()
    #: True when a check run as the finding's op completed fired (see :func:`at_completion`).
    at_completion: bool = False
    #: The write that created the broken state, for a check that found it after the fact,
    #: and the primitive that made it.
    cause: Cause | None = None
    cause_primitive: str | None = None
    #: The replacing plugins the bug needs (its baseline replay does not show it), or those
    #: it showed with that it also shows without (:mod:`fuzzkit.triage.attribution`).
    needs: tuple[str, ...] = ()
    also_without: tuple[str, ...] = ()
    #: What the baseline replay gave (``same``, ``clean``, ``other``; "" when none ran).
    baseline: str = ""

    @property
    def titles(self) -> frozenset[str]:
        return frozenset((self.title, *self.alt_titles))

    @property
    def keys(self) -> frozenset[str]:
        """The titles this finding merges on: all of them, or for a finding with a cause its
        title alone (the alternative titles name the ops that tripped over the state)."""
        return frozenset((self.title,)) if self.cause is not None else self.titles

    @property
    def key(self) -> tuple[str, str | None, str]:
        """What the minimizer keeps: the title, what the cause wrote (a PTE or a TLB entry),
        so a smaller program must break the same state in the same primitive, and what the
        baseline replay gave, so a variant's bug stays clean on the baseline."""
        return self.title, self.cause.what if self.cause is not None else None, self.baseline


def title(finding: Finding, primitive: str | None) -> str:
    """The title of ``finding`` attributed to ``primitive``: the primitive it fired in, or
    for a finding with a cause, the primitive that made the cause's write."""
    config = f"({finding.arch}, {finding.revision})"
    if finding.cause is not None:
        where = f"at {primitive}" if primitive else f"in {finding.cause.op}"
        return f"{finding.spec_id} {finding.message} {where} {config}"
    where = f"{finding.op} at {primitive}" if primitive else finding.op
    return f"{finding.spec_id} {finding.message} in {where} {config}"


def completion_title(finding: Finding) -> str:
    """The title of ``finding`` as if no op had been named: what every op's completion shares."""
    return f"{finding.spec_id} {finding.message} on op completion ({finding.arch}, {finding.revision})"


def at_completion(result: RunResult) -> bool:
    """Whether the finding of ``result`` came from a check run as its op completed. The
    machine records an op's result before it runs the op's completion checks, and nothing
    else records a result for an op that is still running: a violation raised in the op's
    own code, in a check of a step inside it, or by the scheduler (step budget, deadlock)
    leaves its op without a result."""
    f = result.finding
    return f is not None and f.call in result.results


def in_flight(finding: Finding, machine: Machine) -> tuple[str, ...]:
    """The ops other CPUs were in the middle of when ``finding`` fired, sorted."""
    return tuple(
        sorted(
            {
                c.call.spec.id
                for c in machine.cpus
                if c.id != finding.cpu and c.gen is not None and c.call is not None
            }
        )
    )


def race_titles(finding: Finding, machine: Machine) -> tuple[str, ...]:
    """Alternative titles from the ops other CPUs were in the middle of when the invariant
    fired: for each such op B, the title as if it had fired in B, and the race title of the
    finding's op and B."""
    config = f"({finding.arch}, {finding.revision})"
    titles = set()
    for other in in_flight(finding, machine):
        titles.add(f"{finding.spec_id} {finding.message} in {other} {config}")
        titles.add(
            f"{finding.spec_id} {finding.message} in {' vs '.join(sorted((finding.op, other)))} {config}"
        )
    return tuple(sorted(titles))


def signature_of(run: ProbeRun) -> Signature | None:
    finding = run.result.finding
    if finding is None:
        return None
    machine = run.result.machine
    done = at_completion(run.result)
    if finding.cause is not None:
        named = title(finding, run.cause_primitive)
        return Signature(
            named,
            tuple(sorted({finding.seen_title} - {named})),
            finding,
            run.cause_primitive,
            in_flight(finding, machine),
            done,
            finding.cause,
            run.cause_primitive,
        )
    alt = set(race_titles(finding, machine))
    if done:
        alt.add(completion_title(finding))
    return Signature(
        title(finding, run.primitive),
        tuple(sorted(alt)),
        finding,
        run.primitive,
        in_flight(finding, machine),
        done,
    )


def attribute(session: Session, program: Program, sig: Signature, source: str = "<program>") -> Signature:
    """``sig`` (of ``program`` run with ``session``) with its dependence on the replacing
    plugins of its run: a baseline replay decides whether it needs them."""
    plugins = attribution.replacing_plugins(sig.finding.replaced)
    if not plugins:
        return sig
    base = signature_of(Replayer(attribution.baseline(session, plugins)).run(program, source=source))
    if base is not None and (base.title == sig.title or bool(base.keys & sig.keys)):
        return dataclasses.replace(sig, also_without=plugins, baseline=attribution.SAME)
    return dataclasses.replace(
        sig,
        title=attribution.dependent_title(sig.title, plugins),
        alt_titles=tuple(attribution.dependent_title(t, plugins) for t in sig.alt_titles),
        needs=plugins,
        baseline=attribution.CLEAN if base is None else attribution.OTHER,
    )


def signature(session: Session, program: Program, source: str = "<program>") -> Signature | None:
    """Replay ``program`` under its recorded choices; its finding's signature, attributed
    (:func:`attribute`), or None when the run is clean. Raises
    :class:`~fuzzkit.errors.ProgramError` when the program does not resolve against the
    loaded plugins."""
    sig = signature_of(Replayer(session).run(program, source=source))
    return attribute(session, program, sig, source) if sig is not None else None

"""The minimizer: the smallest program that still shows the same bug.

It works on any program (either engine's, or one written by hand): only the op table's
argument domains and the recorded choices are used, never knowledge of a subsystem. A
candidate is kept only when its replay gives the same title and, for a finding with a cause,
the same kind of cause write (:attr:`~fuzzkit.triage.signature.Signature.key`: the title
then names the primitive that broke the state, so a smaller program breaks the same state in
the same primitive); for a bug found with replaced primitives, its replay without them must
give the same outcome too (:mod:`fuzzkit.triage.attribution`: a variant's bug stays clean on
the baseline; that replay runs only for a candidate already smaller and is not counted in
the budget); and it must be strictly smaller (:class:`ProgramSize`): fewer ops,
then fewer CPUs, fewer schedule switches (preemptions), fewer injected failures, then simpler
ops and arguments (index 0 of a domain is its default and smaller indexes are simpler,
DESIGN principle 1). A kept candidate is re-recorded from its own replay, so switches and
injections that no longer do anything disappear, and arguments equal to their default are
left out. Every step is a strict decrease, so the search ends; the replay budget ends it
sooner if need be, and :class:`Minimized` says how far it got.

Choices are carried through edits anchored to the ops they happened in
(:mod:`fuzzkit.triage.anchors`), so removing an op that ran before a race does not move the
preemption that makes the race. Passes, repeated until none shrinks the program:

``ops``         ops that never ran in one go, then delta debugging over the op list (chunks,
                halving down to single ops); when a removed op created an object, handle
                arguments of later ops are first tried renumbered (object 3 becomes 2); when
                a removed op was preempted, its switches are then tried moved to where it
                was (the start of the next op on its CPU) rather than dropped;
``cpus``        drop unused CPUs; move all ops of one CPU onto another, in the order they ran;
``schedule``    delta debugging over the switches (toward fewer preemptions);
``inject``      delta debugging over the injected failures, then an earlier arrival failing;
``args``        each argument toward index 0: the default, then a binary search between; then
                arguments sharing one value (an offset one op scratches and another reads
                back) together.

When all of those are stuck, wider moves. ``reschedule`` searches the schedule afresh instead
of editing it: the default schedule, then one switch at each choice point the scheduler
offers (at most ``MAX_CHOICE_POINTS`` of them), then the current switches and one more. It
does so for the best as it is (switches that only work together, which the ``schedule``
pass cannot drop one at a time), for the best without each op in turn (an op that stood in
for a preemption: it let the other CPU get just far enough ahead, so the op goes and a switch
takes its place) and for two ops on different CPUs trading places (a race whose default order
needs one preemption more than the mirrored order). Only schedules with few enough switches
to give a smaller program are tried, so the search is cheap once the program is small.
Then three moves each trying one argument over its first ``window`` values: ``substitute``
replaces an op by one earlier in the op table (arguments carried over); ``drop+arg`` drops
an op, for bugs that need a different value once an op is gone (one allocation at a higher
offset instead of two that fragment the range tree); and ``default+arg`` sets another
argument to its default, for values that only work together (an arena size and an offset in
it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fuzzkit.program import Program
from fuzzkit.runner import Session
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.probe import Replayer
from fuzzkit.triage.shrink import Shrinker
from fuzzkit.triage.signature import Signature, attribute, signature_of
from fuzzkit.triage.size import PassStats, ProgramSize

#: Replays one minimization may use by default. Replaying a program of a few ops costs well
#: under a millisecond, one of a few hundred ops a few milliseconds.
DEFAULT_BUDGET = 20_000
#: Values tried per argument by the wider moves.
DEFAULT_WINDOW = 32


@dataclass
class Minimized:
    """What :func:`minimize` found and how far it got."""

    program: Program
    signature: Signature
    original_size: ProgramSize
    size: ProgramSize
    #: Replays spent, and the budget they came from.
    replays: int
    budget: int
    #: True when every pass ran to a fixpoint; False when the budget stopped the search.
    complete: bool
    passes: list[PassStats] = field(default_factory=list)

    def summary(self) -> str:
        how = "fixpoint" if self.complete else "budget exhausted"
        return f"{self.original_size} -> {self.size} in {self.replays}/{self.budget} replays ({how})"


def minimize(
    session: Session,
    program: Program,
    *,
    budget: int = DEFAULT_BUDGET,
    window: int = DEFAULT_WINDOW,
    title: str | None = None,
    source: str = "<program>",
) -> Minimized:
    """Shrink ``program`` while its replay keeps the same title (by default, the title of its
    own replay), within ``budget`` replays. Raises :class:`~fuzzkit.errors.ProgramError` when
    the program does not resolve against the loaded plugins (unknown op, argument or
    injection point), :class:`~fuzzkit.errors.ConfigError` for an unknown arch, and
    :class:`TriageError` when it does not reproduce ``title`` (or any finding)."""
    if budget < 1:
        raise TriageError(f"the replay budget must be at least 1, got {budget}")
    replayer = Replayer(session)
    plain = signature_of(replayer.run(program, source=source))
    first = attribute(session, program, plain, source) if plain is not None else None
    if plain is None or first is None or (title is not None and first.title != title):
        wanted = f"'{title}'" if title is not None else "a finding"
        got = f"'{first.title}'" if first is not None else "a clean run"
        missing = _missing_plugins(session, program)
        hint = f"; it was recorded with plugin(s) not loaded now: {', '.join(missing)}" if missing else ""
        raise TriageError(f"{source}: replay gives {got}, not {wanted}{hint}")
    shrinker = Shrinker(session, replayer, (plain.key, first.key), budget, window)
    original_size = shrinker.size(program)
    shrinker.adopt(program)
    shrinker.adopt(shrinker.canonical(program, shrinker.best_run))  # type: ignore[arg-type]
    complete = shrinker.run()
    best_run = shrinker.best_run
    sig = signature_of(best_run) if best_run is not None else None
    if sig is not None:
        sig = attribute(session, shrinker.best, sig, source)
    assert sig is not None and sig.key == first.key, "the best always reproduces"
    return Minimized(
        program=shrinker.best,
        signature=sig,
        original_size=original_size,
        size=shrinker.best_size,
        replays=replayer.replays,
        budget=budget,
        complete=complete,
        passes=list(shrinker.stats.values()),
    )


def _missing_plugins(session: Session, program: Program) -> list[str]:
    recorded = program.recorded_with.get("plugins", {})
    loaded = {p.name for p in session.registry.plugins}
    return sorted(name for name in recorded if name not in loaded) if isinstance(recorded, dict) else []

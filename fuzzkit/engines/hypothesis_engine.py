"""The hypothesis engine: a ``RuleBasedStateMachine`` generated from the registry.

One rule per op (its arguments drawn from the op's domains, handles among the objects of
their kind created so far), one rule each for a schedule switch, an injected failure and the
repeat of an earlier call, and one invariant per SPEC id that the loaded oracles check.
Every example starts with one object of each handle kind at default arguments
(:func:`~fuzzkit.generate.creation_prefix`): left to the rules, an example whose swarm left
out the arena's creator did nothing at all, and those were most examples.

Swarm testing (Groce et al., ISSTA 2012): hypothesis already leaves a random subset of the
rules out of each example (its feature flags); each example also draws the injection points,
hardware events among them, that its failures come from, so an example injecting only stray
A/D bits is as common as one spreading its failures over every point. A switch and an
injection are drawn within what the current run reaches (its steps, its arrivals at each
point), and a wide argument (a page offset, a count) one time in four repeats a value the
example drew before: most bugs need two ops to meet on one page. When the target
replaces primitives, half the examples keep every op that reaches them and the ops creating
their handles (:mod:`fuzzkit.engines.directed`) and leave out half of the others.

The rules build a program; after each rule the program is run from the start under its
recorded choices, so what hypothesis shrinks is always a replayable program, and the program
file a failure leaves behind is exactly the minimal example hypothesis reports.

Use it from pytest::

    from fuzzkit.engines.hypothesis_engine import state_machine
    TestArena = state_machine(arch="x86", revision="fixed").TestCase

Settings profiles (``hypothesis.settings.load_profile``): ``fuzzkit-ci`` (derandomized,
small), ``fuzzkit-dev``, ``fuzzkit-overnight``, registered by :mod:`fuzzkit.profiles`. The
example database lives under ``corpora/hypothesis/``.
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.internal.conjecture import providers as _providers
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fuzzkit.domains import Choice, Domain, Handle, Int
from fuzzkit.engines.campaign import Target, trusted_calls
from fuzzkit.engines.codec import with_creators
from fuzzkit.engines.database import open_database
from fuzzkit.engines.directed import reaching_ops
from fuzzkit.engines.worker import STATS_SECONDS, Emitter, Job, Recorder
from fuzzkit.errors import EXIT_FAILURE, ConfigError, PluginFailure
from fuzzkit.explore import explore_calls
from fuzzkit.generate import creation_prefix
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Finding, Machine, RunResult
from fuzzkit.plugins import load_registry, registry_from_flags
from fuzzkit.profiles import STEPS as STEPS  # importing it registers the settings profiles
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel, OpSpec
from fuzzkit.runner import Session

# Hypothesis mixes literal constants found in every loaded module into what it generates, so
# the same seed would search differently depending on which plugins happen to be imported.
# fuzzkit programs are drawn from op domains only (DESIGN principle 2).
if hasattr(_providers, "_get_local_constants") and hasattr(_providers, "Constants"):
    _providers._get_local_constants = _providers.Constants
#: Runs of the depth-one schedule search per example (see ``_teardown``).
SCHEDULES = 128
#: Runs of the depth-one injection search per example (see ``_teardown``).
INJECTIONS = 64
#: Hypothesis phases of a campaign: all but shrinking (see :func:`campaign`).
CAMPAIGN_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)


class EveryTitle(frozenset[str]):
    """``known`` titles that take in every title: the examples are collected or timed, never
    judged (a benchmark, a test of what examples are made of)."""

    def __contains__(self, title: object) -> bool:
        return True


class FuzzkitFailure(AssertionError):
    """An oracle fired; carries the finding and the program that reproduces it."""

    def __init__(self, finding: Finding, program: Program) -> None:
        super().__init__(f"{finding.title}\n(cpu{finding.cpu}, step {finding.step}) {finding.detail}")
        self.finding = finding
        self.program = program


def strategy(dom: Domain) -> st.SearchStrategy[Any]:
    """Values by domain index, so shrinking moves toward the default. The default itself
    (valid by the plugin's choice) and small indexes (where the edge cases sit) are drawn
    far more often than a uniform draw would."""
    default = st.just(dom.base())
    if isinstance(dom, Choice):
        return default | st.sampled_from(dom.values)
    near = st.integers(0, min(dom.size, 16) - 1).map(dom.at)
    return default | near | st.integers(0, dom.size - 1).map(dom.at) if dom.size > 16 else default | near


#: Integer domains wider than this are drawn as :func:`strategy` does or, one time in four,
#: as a value an earlier op of the example drew from the same domain.
REUSE_WIDER = 16


def state_machine(
    arch: str = "x86",
    revision: str = "fixed",
    cpus: int = 2,
    *,
    session: Session | None = None,
    ops: Sequence[str] = (),
    known: Iterable[str] = (),
    on_failure: Callable[[FuzzkitFailure], None] | None = None,
    schedules: int = SCHEDULES,
    injections: int = INJECTIONS,
    directed: Collection[str] | None = None,
) -> type[RuleBasedStateMachine]:
    """The state machine class for one target, with rules for the ops ``ops`` selects (see
    :func:`~fuzzkit.engines.campaign.focus`; all by default). Findings whose title is in
    ``known`` are ignored (a campaign that already recorded a bug keeps looking for others).
    An example whose ops run on two CPUs or more and whose own schedule is clean then has up
    to ``schedules`` runs of its one-preemption schedules tried, and every clean example up
    to ``injections`` runs with one more injected arrival (see :func:`_teardown`).
    ``directed``: the ops half the examples are confined to (by default those reaching a
    replaced primitive, :func:`~fuzzkit.engines.directed.reaching_ops`; empty: none)."""
    session = session or Session(load_registry())
    kernel = Target(arch, revision, cpus, tuple(ops)).kernel(session)
    if directed is None:
        directed = reaching_ops(kernel)
    every_op = frozenset(kernel.ops)
    narrow = frozenset(with_creators(list(kernel.ops.values()), set(directed))) if directed else every_op
    ignored: Collection[str] = known if isinstance(known, (set, frozenset)) else frozenset(known)
    prefix = creation_prefix(kernel)
    spec_ids = sorted(
        {inv.spec_id for inv in session.registry.invariants.values() if inv.arch in (None, arch)} | {"I16"}
    )
    body: dict[str, Any] = {"_kernel": kernel, "_session": session}

    def __init__(self: Any) -> None:
        RuleBasedStateMachine.__init__(self)
        self.program = Program(arch=arch, revision=revision, cpus=cpus)
        self.result = None
        #: Objects made so far per handle kind: what a handle argument may name.
        self.created = {}
        #: Per wide integer domain, the values drawn from it so far (see ``REUSE_WIDER``).
        self.drawn = {}
        self.enabled = every_op
        self.points = kernel.injection_points

    body["__init__"] = __init__

    @initialize(data=st.data())
    def swarm(self: Any, data: st.DataObject) -> None:
        # Both draws shrink toward the configuration holding everything.
        if narrow is not every_op and data.draw(st.booleans(), label="directed"):
            # The reaching ops rarely reach anything alone (a free needs an allocation
            # first): the others stay in, each on a coin flip.
            others = sorted(every_op - narrow)
            flags = st.lists(st.booleans(), min_size=len(others), max_size=len(others))
            left_out = data.draw(flags, label="directed swarm")
            self.enabled = narrow | {op for op, out in zip(others, left_out, strict=True) if not out}
        points = kernel.injection_points
        flags = st.lists(st.booleans(), min_size=len(points), max_size=len(points))
        left_out = data.draw(flags, label="swarm")
        self.points = tuple(p for p, out in zip(points, left_out, strict=True) if not out)
        self.program.ops.extend(OpCall(c.cpu, c.op, dict(c.args)) for c in prefix)  # never shared
        self.created = {kind: len(made) for kind, made in self.run().machine.handles.items()}

    body["swarm"] = swarm
    for op in kernel.ops.values():
        name, fn = _op_rule(op, kernel)
        body[name] = fn

    if cpus > 1:  # one CPU has no schedule to choose: the rule would only take turns

        @rule(data=st.data(), cpu=st.integers(0, cpus - 1))
        def preempt(self: Any, data: st.DataObject, cpu: int) -> None:
            # A switch only matters at a step the program reaches: draw it within the current
            # run (the invariants just ran it), so a race window of one step in a run of n is
            # hit one time in n, not one in the longest schedule any program could have.
            step = data.draw(st.integers(1, max(1, self.run().steps)), label="step")
            switches = dict(self.program.switches)
            switches[step] = cpu
            self.program.switches = sorted(switches.items())
            self.result = None

        body["preempt"] = preempt

    @precondition(lambda self: len(self.program.ops) > len(prefix))
    @rule(data=st.data(), cpu=st.just(0) | st.integers(0, cpus - 1))
    def repeat(self: Any, data: st.DataObject, cpu: int) -> None:
        # The same call again, after what came since: an access after the free of its page,
        # a second free, a fault on what a fault installed. Drawn as two independent calls,
        # the pair would have to agree on every argument.
        index = data.draw(st.integers(len(prefix), len(self.program.ops) - 1), label="call")
        call = self.program.ops[index]
        if call.op in self.enabled and not kernel.ops[call.op].creates:  # creators count handles
            self.program.ops.append(OpCall(cpu, call.op, dict(call.args)))
            self.result = None

    body["repeat"] = repeat
    if kernel.injection_points:

        @precondition(lambda self: bool(self.points))
        @rule(data=st.data())
        def inject(self: Any, data: st.DataObject) -> None:
            # As with a switch: a failure only matters at an arrival the program reaches, so
            # it is drawn among the arrivals of the current run at the points it reached
            # (shrinking toward the first). Stray A/D bits arrive a handful of times, and
            # only in runs that free a mapped page: drawn blind among eight arrivals of any
            # point, that pairing was a draw in a hundred. A point the run has not reached
            # yet (the ops that reach it may come later) takes one of its first arrivals.
            arrivals = self.run().machine.arrivals
            reached = [p for p in self.points if arrivals.get(p)]
            point = data.draw(st.sampled_from(reached or self.points), label="point")
            nth = data.draw(st.integers(1, arrivals.get(point) or 4), label="nth")
            if (point, nth) not in self.program.inject:
                self.program.inject.append((point, nth))
                self.result = None

        body["inject"] = inject

    def run(self: Any) -> RunResult:
        if self.result is None:
            calls = trusted_calls(self.program, kernel)
            try:
                self.result = Machine(kernel, calls, Replay(self.program.switches, self.program.inject)).run()
            except PluginFailure as exc:
                exc.program = self.program  # what a campaign saves for `fuzzkit replay`
                raise
        return self.result

    body["run"] = run
    for sid in spec_ids:
        body[f"invariant_{sid}"] = _invariant(sid, ignored, on_failure)
    if schedules > 0 or injections > 0:
        body["teardown"] = _teardown(kernel, schedules, injections, ignored, on_failure)
    return type(f"Fuzzkit_{arch}_{revision}_{cpus}cpu", (RuleBasedStateMachine,), body)


def _op_rule(op: OpSpec, kernel: Kernel) -> tuple[str, Any]:
    handles = {name: dom for name, dom in op.args.items() if isinstance(dom, Handle)}
    # A page offset, a count, an address: wide domains whose values only meet (a free of the
    # page an allocation made, an access to the page a free left) when one op repeats what
    # another drew. Drawn apart, two offsets of a million values meet by luck; reused, the
    # example says "this page" the way a test author would.
    wide = {name: dom for name, dom in op.args.items() if isinstance(dom, Int) and dom.size > REUSE_WIDER}
    strategies: dict[str, st.SearchStrategy[Any]] = {
        f"arg_{n}": strategy(d) for n, d in op.args.items() if n not in handles and n not in wide
    }
    strategies["cpu"] = st.just(0) | st.integers(0, kernel.cpus - 1)
    # Rules are drawn uniformly; an op declared rarer than others (teardown) only takes effect
    # when its gate draw clears 100 * (1 - weight). The gate shrinks toward 0: no effect.
    threshold = round(100 * (1 - min(op.weight, 1.0)))
    strategies["gate"] = st.integers(0, 99)
    if handles or wide:
        strategies["data"] = st.data()
    fresh = {name: strategy(dom) for name, dom in wide.items()}

    def fn(self: Any, cpu: int, gate: int, data: st.DataObject | None = None, **kw: Any) -> None:
        if gate < threshold:
            return
        drawn = {name[4:]: value for name, value in kw.items()}
        if data is not None:  # the rule draws inside only when it has handles or wide values
            for name, dom in handles.items():
                # Among the objects that exist, shrinking toward the first one made.
                made = min(self.created[dom.kind], dom.limit)
                drawn[name] = data.draw(st.integers(0, made - 1), label=name)
            for name, wdom in wide.items():
                earlier = self.drawn.setdefault(wdom, [])
                values = fresh[name] | st.sampled_from(earlier) if earlier else fresh[name]
                drawn[name] = value = data.draw(values, label=name)
                if value not in earlier:
                    earlier.append(value)
        self.program.ops.append(OpCall(cpu, op.id, {name: drawn[name] for name in op.args}))
        self.result = None
        if op.creates:
            # Only an object that exists counts: a create that failed (a bad flag, no
            # memory) would otherwise hand later rules a handle naming nothing, and most of
            # what they draw would fail the same dull way. The invariants run the program
            # after this rule anyway; this run is that one.
            made = len(self.run().machine.handles.get(op.creates, ()))
            self.created[op.creates] = max(made, self.created.get(op.creates, 0))

    name = "op_" + op.id.replace(".", "_")
    fn.__name__ = name
    make_rule: Any = rule  # hypothesis's overloads cannot see through a strategies dict
    kinds = {dom.kind for dom in handles.values()}
    enabled = precondition(lambda self: op.id in self.enabled and all(self.created.get(k) for k in kinds))
    return name, make_rule(**strategies)(enabled(fn))


def _invariant(
    sid: str, ignored: Collection[str], on_failure: Callable[[FuzzkitFailure], None] | None
) -> Any:
    def check(self: Any) -> None:
        finding = self.run().finding
        if finding is not None and finding.spec_id == sid and finding.title not in ignored:
            _fail(self, self.result, on_failure)

    check.__name__ = f"invariant_{sid}"
    return invariant()(check)


def _teardown(
    kernel: Kernel,
    schedules: int,
    injections: int,
    ignored: Collection[str],
    on_failure: Callable[[FuzzkitFailure], None] | None,
) -> Callable[[Any], None]:
    """Depth-one searches at the end of a clean example. A race needs its ops and one
    preemption at one step, a failure path its ops and one failing arrival: drawn at random,
    that step or arrival is a long shot on top of everything else the example had to get
    right (stray A/D bits must fall on the one clear a later access meets), while trying
    each in turn costs a fraction of a millisecond per run against hypothesis's milliseconds
    per example. Arrivals are tried rarest point first, the example's own swarm points
    before the others; then, with ops on two CPUs, each one-preemption schedule. What fails
    is recorded in the program, so shrinking replays it like any other."""

    def teardown(self: Any) -> None:
        prog = self.program
        if self.run().finding is not None:
            return
        wanted = [*self.points, *(p for p in kernel.injection_points if p not in self.points)]
        arrivals = self.run().machine.arrivals
        order = sorted((p for p in wanted if arrivals.get(p)), key=lambda p: arrivals[p])  # stable
        extra = [(p, nth) for p in order for nth in range(1, arrivals[p] + 1) if (p, nth) not in prog.inject]
        calls = trusted_calls(prog, kernel)  # runs only read their calls (explore shares them too)
        for arrival in extra[:injections]:
            result = Machine(kernel, calls, Replay(prog.switches, [*prog.inject, arrival])).run()
            if result.finding is not None and result.finding.title not in ignored:
                self.result = result
                _fail(self, result, on_failure)
        if schedules <= 0 or len({c.cpu for c in prog.ops}) < 2:
            return
        search = explore_calls(
            kernel,
            trusted_calls(prog, kernel),
            prog.inject,
            max_runs=schedules,
            max_switches=1,
            wanted=lambda f: f.title not in ignored,
        )
        found = search.found
        if found is None or found.finding is None:
            return
        self.result = found
        _fail(self, found, on_failure)

    return teardown


def _fail(machine: Any, result: RunResult, on_failure: Callable[[FuzzkitFailure], None] | None) -> None:
    """Raise the failure of ``result``, a run of the state machine's program."""
    assert result.finding is not None
    record = machine._session.record(machine.program, result)
    failure = _failure_type(result.finding.spec_id)(result.finding, record)
    if on_failure is not None:
        on_failure(failure)
    raise failure


@functools.cache
def _failure_type(spec_id: str) -> type[FuzzkitFailure]:
    """One exception type per SPEC id: hypothesis tells bugs apart by exception type and
    place, and every failure is raised from one place (:func:`_fail`)."""
    return type(f"FuzzkitFailure_{spec_id}", (FuzzkitFailure,), {})


class _UntilStopped(ExampleDatabase):
    """``db`` until the campaign stops. Hypothesis saves the example a ``BaseException``
    interrupted, so it can be replayed; the one :class:`StopCampaign` interrupts is empty,
    and a rerun would replay it first instead of the saved failures."""

    def __init__(self, db: ExampleDatabase, stopping: list[bool]) -> None:
        super().__init__()
        self.db = db
        self.stopping = stopping

    def save(self, key: bytes, value: bytes) -> None:
        if not self.stopping[0]:
            self.db.save(key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.db.fetch(key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.db.delete(key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if not self.stopping[0]:
            self.db.move(src, dest, value)


class StopCampaign(BaseException):
    """Ends a campaign between two examples (its time is up, or it was asked to stop).
    A ``BaseException``, so hypothesis lets it through as it does KeyboardInterrupt."""


def campaign(
    session: Session,
    target: Target,
    *,
    examples: int,
    seed: int,
    known: Iterable[str] = (),
    database: ExampleDatabase | Path | None = None,
    max_findings: int = 20,
    on_failure: Callable[[FuzzkitFailure], None] | None = None,
    on_example: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[FuzzkitFailure]:
    """Run the state machine until ``examples`` are spent or ``should_stop()`` says so (it is
    asked before each example); after each failure (hypothesis stops at one) the bug's title
    is added to the ignore list and the search goes on. ``on_failure`` hears of each failure
    when hypothesis finds it, ``on_example`` of every example with the count so far.

    The seed is given to hypothesis as ``@seed`` would give it, which keeps ``database``
    (saved failures, replayed first next time: a rerun resumes) in use; a forced global seed
    would turn the database off. A plugin's exception ends the campaign as
    :class:`~fuzzkit.errors.PluginFailure` with the failing ``program`` attached.

    A campaign does not let hypothesis shrink: triage minimizes every finding anyway, within
    a replay budget and knowing what a schedule is, while hypothesis re-runs each candidate's
    schedule search and can spend minutes on one race."""
    found: list[FuzzkitFailure] = []
    seen = set(known)
    budget = examples
    spent = [0]
    db = DirectoryBasedExampleDatabase(str(database)) if isinstance(database, Path) else database
    stopping = [False]
    if db is not None:
        db = _UntilStopped(db, stopping)

    def failed(failure: FuzzkitFailure) -> None:
        last.append(failure)
        if on_failure is not None and failure.finding.title not in reported:
            reported.add(failure.finding.title)
            on_failure(failure)

    reported: set[str] = set()
    kernel = target.kernel(session)
    while budget > 0 and len(found) < max_findings:
        last: list[FuzzkitFailure] = []
        base = state_machine(
            target.arch,
            target.revision,
            target.cpus,
            session=session,
            ops=target.ops,
            known=seen,
            on_failure=failed,
        )

        def __init__(self: Any) -> None:
            if should_stop is not None and should_stop():
                stopping[0] = True
                raise StopCampaign
            spent[0] += 1
            if on_example is not None:
                on_example(spent[0])
            super(type(self), self).__init__()  # the base of this round's class

        # Hypothesis keys saved examples by the state machine class (its source, or its name
        # when it has none): a class made here, named after the target and its op table,
        # keeps every target's examples apart in one shared database.
        counted = type(
            f"Fuzzkit_{target.name}_{kernel.fingerprint}",
            (base,),
            {"__init__": __init__, "_hypothesis_internal_use_seed": seed + len(found)},
        )

        before = spent[0]
        run_settings = settings(
            settings.get_profile("fuzzkit-dev"),
            max_examples=budget,
            database=db,
            derandomize=False,
            # Saved failures are replayed by the first run only: a later one ignores the bugs
            # found so far, and hypothesis deletes a saved example that no longer fails.
            phases=CAMPAIGN_PHASES if not found else tuple(p for p in CAMPAIGN_PHASES if p != Phase.reuse),
            report_multiple_bugs=False,
        )
        try:
            run_state_machine_as_test(counted, settings=run_settings)
            budget = 0
        except FuzzkitFailure:
            failure = last[-1]  # hypothesis re-runs the minimal example last
            found.append(failure)
            seen.add(failure.finding.title)
            budget -= max(1, spent[0] - before)
        except StopCampaign:
            break
        except FlakyStrategyDefinition:
            # An example interrupted before its first draw trips hypothesis's check that a
            # replayed prefix draws the same: the stop itself, not the state machine.
            if stopping[0]:
                break
            raise
    return found


class HypothesisEngine:
    """The state machine in a worker process per job (see :class:`fuzzkit.engines.base.Engine`)."""

    name = "hypothesis"
    default_runs = 300

    def check(self, job: Job) -> None:
        if job.libfuzzer_args:
            raise ConfigError("arguments after '--' are libFuzzer's; they need --engine atheris")
        if job.database:
            open_database(job.database)  # a wrong path or an unreachable server fails now

    def prepare(self, job: Job, session: Session) -> None:
        job.target.kernel(session)
        job.corpus.mkdir(parents=True, exist_ok=True)

    def command(self, job: Job) -> list[str]:
        return [sys.executable, "-m", "fuzzkit.engines.hypothesis_engine"]

    def parse(self, line: str) -> dict[str, Any] | None:
        return None


def main() -> None:
    """The worker process: a campaign until its examples or time are spent, or SIGINT/SIGTERM
    asks it to stop (checked between examples, so the example database is never left
    half-written)."""
    job = Job.from_env()
    emit = Emitter.from_env(job)
    session = Session(registry_from_flags(job.plugin_flags))
    recorder = Recorder(job, session, emit)
    stop = [False]

    def request_stop(signum: int, frame: Any) -> None:
        stop[0] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    start = time.monotonic()
    deadline = start + job.seconds if job.seconds is not None else None
    spent = [0]
    next_stats = [start + STATS_SECONDS]

    def on_example(n: int) -> None:
        spent[0] = n
        now = time.monotonic()
        if now >= next_stats[0]:
            next_stats[0] = now + STATS_SECONDS
            emit("stats", execs=n, exec_per_second=round(n / (now - start), 1), corpus=corpus_size(job))

    # Without --runs, a campaign with --time runs until its time is up.
    runs = job.runs if job.runs is not None or deadline is not None else HypothesisEngine.default_runs

    def should_stop() -> bool:
        # Hypothesis does not count an example its preconditions or size limits threw out,
        # so left to itself it starts more than ``max_examples``: --runs is what was started.
        return (
            stop[0]
            or (runs is not None and spent[0] >= runs)
            or (deadline is not None and time.monotonic() >= deadline)
        )

    try:
        campaign(
            session,
            job.target,
            # Told a budget of a few hundred, hypothesis keeps its examples small for most of
            # it; a campaign is told it is long, as with --time, and stops at --runs itself.
            examples=10**12,
            seed=job.seed,
            database=open_database(job.database) if job.database else job.corpus,
            max_findings=10**6,
            on_failure=lambda f: recorder.finding(f.finding, f.program, spent[0]),
            on_example=on_example,
            should_stop=should_stop,
        )
    except PluginFailure as failure:
        recorder.plugin_failure(failure, failure.program or Program(), spent[0])
        sys.exit(EXIT_FAILURE)
    elapsed = time.monotonic() - start
    emit(
        "stats",
        execs=spent[0],
        exec_per_second=round(spent[0] / max(elapsed, 1e-9), 1),
        corpus=corpus_size(job),
    )


def corpus_size(job: Job) -> int | None:
    """Entries in the worker's example database folder (the saved examples hypothesis
    replays first); None for a database on a server. Counted per stats interval only."""
    if "://" in job.database:
        return None
    folder = Path(job.database) if job.database else job.corpus
    return sum(1 for entry in folder.rglob("*") if entry.is_file())


if __name__ == "__main__":
    main()

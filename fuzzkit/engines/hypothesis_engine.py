"""The hypothesis engine: a ``RuleBasedStateMachine`` generated from the registry.

One rule per op (its arguments drawn from the op's domains, handles from a bundle per handle
kind), one rule each for a schedule switch and an injected failure, and one invariant per
SPEC id that the loaded oracles check. The rules build a program; after each rule the
program is run from the start under its recorded choices, so what hypothesis shrinks is
always a replayable program, and the program file a failure leaves behind is exactly the
minimal example hypothesis reports.

Use it from pytest::

    from fuzzkit.engines.hypothesis_engine import state_machine
    TestArena = state_machine(arch="x86", revision="fixed").TestCase

Settings profiles (``hypothesis.settings.load_profile``): ``fuzzkit-ci`` (derandomized,
small), ``fuzzkit-dev``, ``fuzzkit-overnight``. The example database lives under
``corpora/hypothesis/``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import hypothesis.core
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.internal.conjecture import providers as _providers
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from fuzzkit.domains import Choice, Domain, Handle
from fuzzkit.engines.campaign import Target, trusted_calls
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Finding, Machine, RunResult
from fuzzkit.plugins import load_registry
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel, OpSpec
from fuzzkit.runner import Session

DATABASE = Path(__file__).resolve().parents[2] / "corpora" / "hypothesis"

# Hypothesis mixes literal constants found in every loaded module into what it generates, so
# the same seed would search differently depending on which plugins happen to be imported.
# fuzzkit programs are drawn from op domains only (DESIGN principle 2).
if hasattr(_providers, "_get_local_constants") and hasattr(_providers, "Constants"):
    _providers._get_local_constants = _providers.Constants
STEPS = 32

_common: dict[str, Any] = {
    "deadline": None,
    "stateful_step_count": STEPS,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}
settings.register_profile("fuzzkit-ci", max_examples=60, derandomize=True, database=None, **_common)
settings.register_profile("fuzzkit-dev", max_examples=500, **_common)
settings.register_profile("fuzzkit-overnight", max_examples=10_000_000, **_common)


class FuzzkitFailure(AssertionError):
    """An oracle fired; carries the finding and the program that reproduces it."""

    def __init__(self, finding: Finding, program: Program) -> None:
        super().__init__(f"{finding.title}\n(cpu{finding.cpu}, step {finding.step}) {finding.detail}")
        self.finding = finding
        self.program = program


def strategy(dom: Domain, bundles: dict[str, Bundle]) -> st.SearchStrategy[Any]:
    """Values by domain index, so shrinking moves toward the default. The default itself
    (valid by the plugin's choice) and small indexes (where the edge cases sit) are drawn
    far more often than a uniform draw would."""
    if isinstance(dom, Handle) and dom.kind in bundles:
        return bundles[dom.kind]
    default = st.just(dom.base())
    if isinstance(dom, Choice):
        return default | st.sampled_from(dom.values)
    near = st.integers(0, min(dom.size, 16) - 1).map(dom.at)
    return default | near | st.integers(0, dom.size - 1).map(dom.at) if dom.size > 16 else default | near


def state_machine(
    arch: str = "x86",
    revision: str = "fixed",
    cpus: int = 2,
    *,
    session: Session | None = None,
    known: Iterable[str] = (),
    on_failure: Callable[[FuzzkitFailure], None] | None = None,
) -> type[RuleBasedStateMachine]:
    """The state machine class for one target. Findings whose title is in ``known`` are
    ignored (a campaign that already recorded a bug keeps looking for others)."""
    session = session or Session(load_registry())
    kernel = session.kernel(arch, revision, cpus)
    ignored: Collection[str] = known if isinstance(known, (set, frozenset)) else frozenset(known)
    bundles = {op.creates: Bundle(op.creates) for op in kernel.ops.values() if op.creates}
    spec_ids = sorted(
        {inv.spec_id for inv in session.registry.invariants.values() if inv.arch in (None, arch)} | {"I16"}
    )
    body: dict[str, Any] = {"_kernel": kernel, "_session": session}

    def __init__(self: Any) -> None:
        RuleBasedStateMachine.__init__(self)
        self.program = Program(arch=arch, revision=revision, cpus=cpus)
        self.result = None
        self.created = {}

    body["__init__"] = __init__
    for op in kernel.ops.values():
        name, fn = _op_rule(op, kernel, bundles)
        body[name] = fn

    @rule(step=st.integers(1, 512), cpu=st.integers(0, cpus - 1))
    def preempt(self: Any, step: int, cpu: int) -> None:
        switches = dict(self.program.switches)
        switches[step] = cpu
        self.program.switches = sorted(switches.items())
        self.result = None

    body["preempt"] = preempt
    if kernel.injection_points:

        @rule(point=st.sampled_from(kernel.injection_points), nth=st.integers(1, 8))
        def inject(self: Any, point: str, nth: int) -> None:
            if (point, nth) not in self.program.inject:
                self.program.inject.append((point, nth))
                self.result = None

        body["inject"] = inject

    def run(self: Any) -> RunResult:
        if self.result is None:
            calls = trusted_calls(self.program, kernel)
            self.result = Machine(kernel, calls, Replay(self.program.switches, self.program.inject)).run()
        return self.result

    body["run"] = run
    for sid in spec_ids:
        body[f"invariant_{sid}"] = _invariant(sid, ignored, on_failure)
    return type(f"Fuzzkit_{arch}_{revision}_{cpus}cpu", (RuleBasedStateMachine,), body)


def _op_rule(op: OpSpec, kernel: Kernel, bundles: dict[str, Bundle]) -> tuple[str, Any]:
    strategies = {f"arg_{n}": strategy(d, bundles) for n, d in op.args.items()}
    strategies["cpu"] = st.just(0) | st.integers(0, kernel.cpus - 1)
    # Rules are drawn uniformly; an op declared rarer than others (teardown) only takes effect
    # when its gate draw clears 100 * (1 - weight). The gate shrinks toward 0: no effect.
    # Creators are never gated: the rules that use their handles wait on them.
    threshold = 0 if op.creates else round(100 * (1 - min(op.weight, 1.0)))
    strategies["gate"] = st.integers(0, 99)
    target = bundles.get(op.creates) if op.creates else None

    def fn(self: Any, cpu: int, gate: int, **kw: Any) -> Any:
        if gate < threshold:
            return None
        args = {name[4:]: value for name, value in kw.items()}
        self.program.ops.append(OpCall(cpu, op.id, args))
        self.result = None
        if op.creates:
            index = self.created.get(op.creates, 0)
            self.created[op.creates] = index + 1
            return index
        return None

    name = "op_" + op.id.replace(".", "_")
    fn.__name__ = name
    make_rule: Any = rule  # hypothesis's overloads cannot see through a strategies dict
    decorated = make_rule(target=target, **strategies) if target is not None else make_rule(**strategies)
    decorated = decorated(fn)
    return name, decorated


def _invariant(
    sid: str, ignored: Collection[str], on_failure: Callable[[FuzzkitFailure], None] | None
) -> Any:
    def check(self: Any) -> None:
        finding = self.run().finding
        if finding is not None and finding.spec_id == sid and finding.title not in ignored:
            failure = FuzzkitFailure(finding, self._session.record(self.program, self.result))
            if on_failure is not None:
                on_failure(failure)
            raise failure

    check.__name__ = f"invariant_{sid}"
    return invariant()(check)


def campaign(
    session: Session,
    target: Target,
    *,
    examples: int,
    seed: int,
    known: Iterable[str] = (),
    database: Path | None = None,
    max_findings: int = 20,
) -> list[FuzzkitFailure]:
    """Run the state machine until ``examples`` are spent; after each failure (hypothesis
    stops at one) the bug's title is added to the ignore list and the search goes on."""
    found: list[FuzzkitFailure] = []
    seen = set(known)
    budget = examples
    while budget > 0 and len(found) < max_findings:
        last: list[FuzzkitFailure] = []
        machine = state_machine(
            target.arch, target.revision, target.cpus, session=session, known=seen, on_failure=last.append
        )
        db = DirectoryBasedExampleDatabase(str(database)) if database is not None else None
        run_settings = settings(
            settings.get_profile("fuzzkit-dev"), max_examples=budget, database=db, derandomize=False
        )
        previous = hypothesis.core.global_force_seed
        hypothesis.core.global_force_seed = seed + len(found)  # type: ignore[assignment]
        try:
            run_state_machine_as_test(machine, settings=run_settings)
            budget = 0
        except FuzzkitFailure:
            failure = last[-1]  # hypothesis re-runs the minimal example last
            found.append(failure)
            seen.add(failure.finding.title)
            budget -= max(1, budget // 4)  # the shrink spent examples too; keep the campaign bounded
        finally:
            hypothesis.core.global_force_seed = previous
    return found

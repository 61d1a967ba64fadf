"""What the hypothesis engine's examples are made of: objects to act on from the first rule,
wide values that meet, injections at arrivals the program reaches (see
``fuzzkit.engines.hypothesis_engine``). Sixty derandomized examples of the arena's x86 table
on two CPUs, collected once."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from fuzzkit.domains import Int
from fuzzkit.engines.campaign import trusted_calls
from fuzzkit.engines.hypothesis_engine import REUSE_WIDER, EveryTitle, FuzzkitFailure, state_machine
from fuzzkit.generate import creation_prefix
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Machine
from fuzzkit.plugins import load_registry
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel
from fuzzkit.runner import Session


@pytest.fixture(scope="module")
def examples() -> tuple[Kernel, list[Program]]:
    session = Session(load_registry(disable=["struct_ops", "scx"]))
    base = state_machine("x86", "fixed", 2, session=session, schedules=0, injections=0, known=EveryTitle())
    programs: list[Program] = []

    class Collect(base):  # type: ignore[valid-type, misc]
        def teardown(self) -> None:
            programs.append(self.program)

    run_state_machine_as_test(Collect, settings=settings(settings.get_profile("fuzzkit-ci"), max_examples=60))
    return base._kernel, programs


def test_every_example_starts_with_one_object_of_each_kind(examples: tuple[Kernel, list[Program]]) -> None:
    kernel, programs = examples
    prefix = creation_prefix(kernel)
    assert [c.op for c in prefix] == ["arena.create"]
    assert all(p.ops[: len(prefix)] == prefix for p in programs)
    # And the rules act on it: most examples do more than create.
    assert sum(len(p.ops) > len(prefix) for p in programs) > len(programs) // 2


def test_wide_values_drawn_earlier_come_back(examples: tuple[Kernel, list[Program]]) -> None:
    """A far page offset (index 16 or more of a million) drawn twice in one example: one
    time in four a wide argument repeats an earlier value. Drawn independently, two far
    values of a million meet about never."""
    kernel, programs = examples
    repeated = 0
    for p in programs:
        far = [
            (dom, call.args[name])
            for call in p.ops
            for name, dom in kernel.ops[call.op].args.items()
            if isinstance(dom, Int) and dom.size > REUSE_WIDER and dom.index(call.args[name]) >= 16
        ]
        repeated += len(far) > len(set(far))
    assert repeated >= len(programs) // 3


def test_injections_fall_on_arrivals_the_program_reaches(examples: tuple[Kernel, list[Program]]) -> None:
    """Drawn among the current run's arrivals, most injections fire in the final program
    (drawn blind, one in ten did)."""
    kernel, programs = examples
    drawn = fired = 0
    for p in programs:
        result = Machine(kernel, trusted_calls(p, kernel), Replay(p.switches, p.inject)).run()
        drawn += len(p.inject)
        fired += len(result.injected)
    assert drawn >= 20
    assert fired >= drawn * 2 // 3


def test_a_clean_example_ends_trying_each_reached_arrival() -> None:
    """The stray A/D bit livelock (R16): a kernel fault installs the scratch page, a free
    clears it, and stray bits in that clear leave a PTE that pte_none() calls none and the
    strict-zero compare does not; the next kernel fault on it refaults forever. The example
    has the ops but no injection: the end-of-example search tries the clear's arrival."""
    session = Session(load_registry(disable=["struct_ops", "scx"]))
    calls = [
        ("arena.create", {}),
        ("arena.kernel_access", {}),
        ("arena.free", {}),
        ("arena.kernel_access", {}),
    ]
    for injections, finds in ((64, True), (0, False)):
        cls = state_machine("x86", "fixed", 1, session=session, schedules=0, injections=injections)
        kernel = cls._kernel
        example = cls()
        example.program.ops = [
            OpCall(0, op, {n: args.get(n, d.base()) for n, d in kernel.ops[op].args.items()})
            for op, args in calls
        ]
        assert example.run().finding is None and example.run().machine.arrivals["pte_erratum_bits"] == 1
        if not finds:
            example.teardown()
            continue
        with pytest.raises(FuzzkitFailure) as failure:
            example.teardown()
        assert failure.value.finding.title.startswith("I16 operation did not finish")
        assert " in arena.kernel_access " in failure.value.finding.title
        assert failure.value.program.inject == [("pte_erratum_bits", 1)]


def test_calls_come_back_whole(examples: tuple[Kernel, list[Program]]) -> None:
    """An access after a free, a second free: the repeat rule copies an earlier call, every
    argument of it. Drawn apart, two calls agreeing on a far page offset and every other
    argument are about never seen."""
    kernel, programs = examples
    repeated = 0
    for p in programs:
        far = [
            (call.op, tuple(sorted(call.args.items())))
            for call in p.ops
            if any(
                isinstance(dom, Int) and dom.size > REUSE_WIDER and dom.index(call.args[name]) >= 16
                for name, dom in kernel.ops[call.op].args.items()
            )
        ]
        repeated += len(far) > len(set(far))
    assert repeated >= len(programs) // 5

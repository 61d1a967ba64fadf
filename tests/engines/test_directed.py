"""Variant-directed search: the probe names the ops that reach a replaced primitive, the
programs an atheris corpus starts from hold them in a narrow swarm configuration, and pair
programs run each of them on two CPUs by turns."""

from __future__ import annotations

import dataclasses

from fuzzkit.engines.campaign import Target
from fuzzkit.engines.codec import Codec
from fuzzkit.engines.directed import pair_programs, reaching_ops, seed_programs
from fuzzkit.generate import creation_prefix
from fuzzkit.plugins import registry_from_flags
from fuzzkit.runner import Session


def kernel_with(*flags: str) -> Session:
    return Session(registry_from_flags(list(flags)))


def test_the_probe_names_the_ops_that_reach_the_replaced_primitive() -> None:
    variant = kernel_with("fuzzkit_seeded.scx:free_keeps_bits")
    kernel = Target("x86", "fixed", 2).kernel(variant)
    assert reaching_ops(kernel) == {"scx.free", "scx.unreg"}
    clean = Target("x86", "fixed", 2).kernel(kernel_with())
    assert reaching_ops(clean) == frozenset()


def test_corpus_seeds_hold_the_reaching_ops_in_a_narrow_configuration() -> None:
    variant = kernel_with("no:scx", "no:struct_ops", "fuzzkit_seeded.arena:no_uncharge")
    kernel = Target("x86", "fixed", 1).kernel(variant)
    ops = reaching_ops(kernel)
    assert ops == {"arena.free"}
    codec = Codec(kernel)
    seeds = seed_programs(kernel, ops)
    assert len(seeds) == 16 and sum("arena.free" in {c.op for c in p.ops} for p in seeds) >= 8
    for program in seeds:
        data = codec.encode(program)
        assert codec.decode(data) == program
        held = {codec.ops[i].id for i in codec.configs[data[0]][0]}
        assert {c.op for c in program.ops} <= held and len(held) < len(codec.ops)


def test_pair_programs_put_two_cpus_in_the_replaced_primitive_by_turns() -> None:
    """The unlocked gen_pool claim is a race: two CPUs allocating at once. The pair program
    of its reaching op is that race, and a finding as it stands."""
    session = kernel_with("fuzzkit_seeded.scx:unlocked_claim")
    kernel = Target("x86", "fixed", 2).kernel(session)
    ops = reaching_ops(kernel)
    pairs = pair_programs(kernel, ops)
    assert len(pairs) == len(ops) and "scx.alloc" in ops
    [alloc] = [p for p in pairs if p.ops[-1].op == "scx.alloc"]
    prefix = creation_prefix(kernel)
    assert alloc.ops[: len(prefix)] == prefix
    assert [(c.cpu, c.op) for c in alloc.ops[len(prefix) :]] == [(0, "scx.alloc"), (1, "scx.alloc")]
    codec = Codec(kernel)
    assert codec.decode(codec.encode(alloc)) == alloc
    result = session.run(alloc, trace=True)
    turns = [t.cpu for t in result.trace or [] if t.call >= len(prefix)]
    assert turns[:4] == [0, 1, 0, 1]
    assert result.finding is not None and result.finding.title.startswith("I17 overlapping gen_pool grants")
    # The same pair, one CPU after the other: no race, no finding.
    assert session.run(dataclasses.replace(alloc, switches=[])).finding is None
    assert pair_programs(Target("x86", "fixed", 1).kernel(session), ops) == []

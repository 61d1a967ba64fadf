"""Variant-directed search: the probe names the ops that reach a replaced primitive, and the
programs an atheris corpus starts from hold them in a narrow swarm configuration."""

from __future__ import annotations

from fuzzkit.engines.campaign import Target
from fuzzkit.engines.codec import Codec
from fuzzkit.engines.directed import reaching_ops, seed_programs
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

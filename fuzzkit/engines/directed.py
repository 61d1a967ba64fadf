"""Variant-directed search: which ops reach the primitives a variant replaced.

A user who replaces ``gen_pool_free`` wants the campaign to spend its executions on the ops
that end up there (``scx.free``, ``scx.unreg``) and on the ops creating what those take, but
cannot be expected to know which ones they are. At start-up, :func:`reaching_ops` runs seeded
random programs on one CPU with a probe on each replaced primitive and names the ops that
were executing when a probe fired. The engines then steer by it: the hypothesis engine makes
those ops its swarm configuration in half its examples, the atheris engine starts its corpus
with programs of those ops alone (whose swarm byte keeps the mutations among them) and, on
two CPUs, with each of them run on two CPUs by turns (:func:`pair_programs`).

The probe runs before any fuzzing and on its own kernel object, so the hot path never sees
it (DESIGN: the per-step path is plain calls compiled at start-up).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from fuzzkit.engines.campaign import focus, trusted_calls
from fuzzkit.errors import PluginFailure
from fuzzkit.generate import creation_prefix, random_program
from fuzzkit.machine.choices import RandomChoices, Replay
from fuzzkit.machine.core import Machine
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel

#: Probe programs and their length: enough for every op of the full table to run a few
#: dozen times (measured: 29 ops, 200 programs of 24 ops give each op 100-300 runs).
PROBE_PROGRAMS = 200
PROBE_OPS = 24
#: Programs of the reaching ops that start an atheris corpus.
SEED_PROGRAMS = 16
#: Steps of a pair program (:func:`pair_programs`) whose CPUs take turns.
PAIR_STEPS = 64


def _probe(fn: Callable[..., Any], hits: set[str]) -> Callable[..., Any]:
    """``fn``, noting the op CPU 0 is running whenever it is called."""

    def note(m: Machine) -> None:
        call = m.cpus[0].call
        if call is not None:
            hits.add(call.spec.id)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_probe(m: Machine, *args: Any) -> Any:
            note(m)
            return (yield from fn(m, *args))

        return gen_probe

    @functools.wraps(fn)
    def probe(m: Machine, *args: Any) -> Any:
        note(m)
        return fn(m, *args)

    return probe


def reaching_ops(kernel: Kernel, *, programs: int = PROBE_PROGRAMS, seed: int = 0) -> frozenset[str]:
    """The ops that reach a replaced primitive of ``kernel`` within ``programs`` seeded
    random programs (empty when nothing is replaced). A program a plugin fails on is skipped:
    the campaign names that plugin when it meets it."""
    replaced = [name for name, _ in kernel.replaced if hasattr(kernel.prims, name)]
    if not replaced:
        return frozenset()
    hits: set[str] = set()
    prims = SimpleNamespace(**vars(kernel.prims))
    for name in replaced:
        setattr(prims, name, _probe(getattr(kernel.prims, name), hits))
    probed = dataclasses.replace(kernel, prims=prims)
    rng = random.Random(seed)
    for i in range(programs):
        prog = random_program(kernel, rng, PROBE_OPS)
        prog.ops = [dataclasses.replace(c, cpu=0) for c in prog.ops]
        try:
            Machine(probed, trusted_calls(prog, kernel), RandomChoices(seed + i, preempt=0.0)).run()
        except PluginFailure:
            continue
    return frozenset(hits)


def seed_programs(kernel: Kernel, ops: frozenset[str], *, count: int = SEED_PROGRAMS) -> list[Program]:
    """Random programs of ``ops``, the ops creating their handles and a coin-flip half of
    the others (a free reaches nothing without an allocation first), for a corpus to start
    from. Encoded, each names a narrow swarm configuration holding its ops."""
    if not ops:
        return []
    rng = random.Random(0)
    out = []
    for _ in range(count):
        half = [op for op in kernel.ops if op not in ops and rng.random() < 0.5]
        out.append(random_program(focus(kernel, sorted(ops | set(half))), rng, rng.randrange(4, 17)))
    return out


def pair_programs(kernel: Kernel, ops: frozenset[str]) -> list[Program]:
    """On two CPUs or more, for each of ``ops``: the creation prefix, then the op at its
    default arguments on CPU 0 and on CPU 1, their steps interleaved one by one for
    ``PAIR_STEPS``. A replaced primitive is as often a question about two CPUs inside it at
    once as about one, and a switch at the right step of a run of a hundred is what random
    bytes seldom name; both calls default to the same objects and offsets, so they meet."""
    if kernel.cpus < 2 or not ops:
        return []
    prefix = creation_prefix(kernel)
    setup = Program(arch=kernel.arch.name, revision=kernel.revision, cpus=kernel.cpus, ops=prefix)
    try:
        start = Machine(kernel, trusted_calls(setup, kernel), Replay()).run().steps
    except PluginFailure:
        return []  # the campaign names the plugin when it meets it
    # The prefix runs on CPU 0, which keeps running by default and takes the pair's first
    # step too; each step after goes to the other CPU (a switch to one that is done or
    # asleep is ignored).
    turns = [(start + 1 + k, k % 2) for k in range(1, PAIR_STEPS)]
    out = []
    for op in sorted(ops):
        args = {name: dom.base() for name, dom in kernel.ops[op].args.items()}
        pair = [OpCall(0, op, args), OpCall(1, op, dict(args))]
        out.append(dataclasses.replace(setup, ops=[*prefix, *pair], switches=turns))
    return out

"""Random programs drawn from the op table, for benchmarks and seeds.

Values are drawn through the argument domains, mostly near the default (small indexes,
where the interesting edge cases sit) and sometimes anywhere. An op that needs a
handle is only drawn once an op creating that kind of handle was drawn before it, so most
generated programs do something.
"""

from __future__ import annotations

import random
from typing import Any

from fuzzkit.domains import Domain, Handle
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel


def draw(dom: Domain, rng: random.Random, created: dict[str, int]) -> Any:
    if isinstance(dom, Handle):
        return rng.randrange(max(1, min(created.get(dom.kind, 0), dom.limit)))
    r = rng.random()
    if r < 0.75:
        return dom.at(rng.randrange(min(dom.size, 16)))
    if r < 0.95:
        return dom.at(rng.randrange(min(dom.size, 512)))
    return dom.at(rng.randrange(dom.size))


def creation_prefix(kernel: Kernel) -> list[OpCall]:
    """One call at default arguments of each op that creates a handle, on CPU 0, in an order
    where each creator's handle arguments already exist (a scheduler needs its struct_ops
    map, which needs an arena): the objects a program acts on. Defaults are chosen by
    plugins to be valid."""
    ops = list(kernel.ops.values())
    created: set[str] = set()
    calls = []
    creators = [op for op in ops if op.creates]
    while creators:
        ready = [
            op
            for op in creators
            if all(
                d.kind in created or d.kind == op.creates for d in op.args.values() if isinstance(d, Handle)
            )
        ] or creators[:1]
        for op in ready:
            kind = op.creates
            if kind is not None and kind not in created:
                calls.append(OpCall(0, op.id, {name: dom.base() for name, dom in op.args.items()}))
                created.add(kind)
            creators.remove(op)
    return calls


def random_program(kernel: Kernel, rng: random.Random, n_ops: int) -> Program:
    """``n_ops`` random calls, the first of them :func:`creation_prefix`, so the rest has
    objects to act on."""
    ops = list(kernel.ops.values())
    calls = creation_prefix(kernel)
    created = {kind: 1 for c in calls if (kind := kernel.ops[c.op].creates)}
    for _ in range(n_ops - len(calls)):
        ready = [
            op for op in ops if all(created.get(d.kind) for d in op.args.values() if isinstance(d, Handle))
        ]
        if not ready:
            break
        op = rng.choices(ready, weights=[o.weight for o in ready])[0]
        args = {name: draw(dom, rng, created) for name, dom in op.args.items()}
        if op.creates:
            created[op.creates] = created.get(op.creates, 0) + 1
        calls.append(OpCall(rng.randrange(kernel.cpus), op.id, args))
    return Program(arch=kernel.arch.name, revision=kernel.revision, cpus=kernel.cpus, ops=calls)

"""Random programs drawn from the op table, for benchmarks and seeds.

Values are drawn through the argument domains, half the time near the default (small
indexes, where the interesting edge cases sit) and half the time anywhere. An op that needs a
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
    if rng.random() < 0.5:
        return dom.at(rng.randrange(min(dom.size, 8)))
    return dom.at(rng.randrange(dom.size))


def random_program(kernel: Kernel, rng: random.Random, n_ops: int) -> Program:
    ops = list(kernel.ops.values())
    created: dict[str, int] = {}
    calls = []
    for _ in range(n_ops):
        ready = [
            op for op in ops
            if all(created.get(d.kind) for d in op.args.values() if isinstance(d, Handle))
        ]
        if not ready:
            break
        op = rng.choice(ready)
        args = {name: draw(dom, rng, created) for name, dom in op.args.items()}
        if op.creates:
            created[op.creates] = created.get(op.creates, 0) + 1
        calls.append(OpCall(rng.randrange(kernel.cpus), op.id, args))
    return Program(arch=kernel.arch.name, revision=kernel.revision, cpus=kernel.cpus, ops=calls)

"""How big a program is: the order the minimizer shrinks in and the index reports sizes by."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fuzzkit.program import Program
from fuzzkit.registry import Kernel


@dataclass(frozen=True, order=True)
class ProgramSize:
    """Compares in order of importance, fields in order."""

    ops: int
    cpus: int
    #: Schedule switches (preemptions).
    switches: int
    #: Injected failures.
    inject: int
    #: Sum over ops of the op's rank in the op table (ids in order) and of its arguments'
    #: domain indexes (0: the default): lower is simpler. Breaks ties between programs of one
    #: shape.
    weight: int

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(ops, cpus, switches, injected failures): what "as small as the bug allows" means."""
        return self.ops, self.cpus, self.switches, self.inject

    def __str__(self) -> str:
        parts = [f"{self.ops} op{'s' * (self.ops != 1)}", f"{self.cpus} cpu{'s' * (self.cpus != 1)}"]
        if self.switches:
            parts.append(f"{self.switches} switch{'es' * (self.switches != 1)}")
        if self.inject:
            parts.append(f"{self.inject} injected")
        return ", ".join(parts)


def program_size(program: Program, kernel: Kernel) -> ProgramSize:
    rank = {op_id: i for i, op_id in enumerate(sorted(kernel.ops))}
    weight = 0
    for oc in program.ops:
        spec = kernel.ops.get(oc.op)
        if spec is not None:
            weight += rank[oc.op] + sum(spec.args[k].index(v) for k, v in oc.args.items() if k in spec.args)
    return ProgramSize(len(program.ops), program.cpus, len(program.switches), len(program.inject), weight)


@dataclass
class PassStats:
    """Candidates one minimizer pass tried and kept."""

    name: str
    tried: int = 0
    kept: int = 0

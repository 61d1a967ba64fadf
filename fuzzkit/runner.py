"""Running programs against a loaded plugin set."""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from fuzzkit.errors import ConfigError, ProgramError
from fuzzkit.machine.choices import ChoiceSource, Replay
from fuzzkit.machine.core import OP_STEP_BUDGET, Call, Machine, RunResult, TraceStep
from fuzzkit.program import Program, resolve
from fuzzkit.registry import Kernel, Registry
from fuzzkit.text import printable


class Session:
    """A loaded plugin set, with one compiled :class:`Kernel` per configuration."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._kernels: dict[tuple[str, str, int], Kernel] = {}

    def kernel(self, arch: str, revision: str, cpus: int) -> Kernel:
        key = (arch, revision, cpus)
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._kernels[key] = self.registry.compile(arch, revision, cpus)
        return kernel

    def run(
        self,
        program: Program,
        *,
        choices: ChoiceSource | None = None,
        trace: bool = False,
        source: str = "<program>",
        op_step_budget: int = OP_STEP_BUDGET,
    ) -> RunResult:
        """Run ``program``; with no ``choices`` its recorded choices are replayed."""
        kernel = self.kernel_of(program, source)
        calls = resolve(program, kernel, source)
        if choices is None:
            choices = Replay(program.switches, program.inject)
        return Machine(kernel, calls, choices, trace=trace, op_step_budget=op_step_budget).run()

    def resolve(self, program: Program, source: str = "<program>") -> tuple[Kernel, list[Call]]:
        """Validate ``program`` once; run it many times with :class:`Machine` directly."""
        kernel = self.kernel_of(program, source)
        return kernel, resolve(program, kernel, source)

    def kernel_of(self, program: Program, source: str = "<program>") -> Kernel:
        """The kernel ``program`` runs on. A configuration the loaded plugins cannot build
        (an arch no plugin registers) is an error naming ``source`` and the field."""
        try:
            return self.kernel(program.arch, program.revision, program.cpus)
        except ConfigError as exc:
            field = (
                "arch"
                if program.arch not in self.registry.arches
                else "revision"
                if program.revision not in self.registry.revision_names()
                else "cpus"
            )
            raise ProgramError(f"{source}: config.{field}: {exc}") from None

    def recorded_with(self) -> dict[str, Any]:
        return {
            "plugins": {p.name: p.version for p in self.registry.plugins},
            "op_table": self.registry.fingerprint(),
        }

    def record(self, program: Program, result: RunResult) -> Program:
        """``program`` with the choices ``result`` actually made, so it replays exactly."""
        return Program(
            arch=program.arch,
            revision=program.revision,
            cpus=program.cpus,
            ops=list(program.ops),
            switches=list(result.switches),
            inject=list(result.injected),
            description=program.description,
            recorded_with=self.recorded_with(),
        )


def jsonable(value: Any) -> Any:
    """``value`` when it is plain JSON, else its ``repr``: an op may return anything, and
    showing its result must not fail."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def format_result(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0xFFFF:
        return hex(value)
    value = jsonable(value)
    return printable(value if isinstance(value, str) else json.dumps(value))


def ops_table(program: Program, result: RunResult) -> str:
    rows = [
        [
            i,
            f"cpu{c.cpu}",
            c.op,
            " ".join(f"{k}={v}" for k, v in c.args.items()),
            format_result(result.results[i]) if i in result.results else "(not run)",
        ]
        for i, c in enumerate(program.ops)
    ]
    return tabulate(rows, headers=["#", "cpu", "op", "args", "result"], tablefmt="simple")


def trace_table(trace: list[TraceStep], cpus: int) -> str:
    """The step trace with one column per CPU: each row is one atomic step."""
    rows = []
    for t in trace:
        cell = "\n".join([f"[{t.call}] {t.op}: {t.label}", *(f"  {n}" for n in t.notes)])
        rows.append([t.step, *(cell if c == t.cpu else "" for c in range(cpus))])
    return tabulate(rows, headers=["step", *(f"cpu{c}" for c in range(cpus))], tablefmt="simple")


def trace_json(trace: list[TraceStep]) -> list[dict[str, Any]]:
    return [
        {"step": t.step, "cpu": t.cpu, "call": t.call, "op": t.op, "label": t.label, "notes": list(t.notes)}
        for t in trace
    ]

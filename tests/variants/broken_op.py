"""A plugin with a bug of its own: its op divides by an argument that may be zero. Load it
by module name (``-p variants.broken_op``); whatever drives it must report the plugin, never
a finding of the kernel model."""

from __future__ import annotations

from typing import Any

from fuzzkit import Cpu, Int, Machine, Steps, hookimpl


def broken_ratio(total: int, parts: int) -> int:
    return total // parts


def broken_divide(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    yield "read"
    return broken_ratio(4096, args["parts"])


def broken_spin(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """Never yields: only the run guard can stop it."""
    while True:
        pass
    yield "unreachable"


@hookimpl
def fuzzkit_register_ops(register: Any) -> None:
    register("broken.divide", broken_divide, args={"parts": Int(0, 3)}, summary="divides by parts")
    register("broken.spin", broken_spin, args={}, summary="loops without yielding", weight=0.01)

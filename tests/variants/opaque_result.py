"""A plugin module whose op returns a value JSON cannot hold (a set): replay must still show
it. Load it by module name: ``fuzzkit replay -p variants.opaque_result FILE``."""

from __future__ import annotations

from typing import Any

from fuzzkit import Cpu, Machine, Steps, hookimpl


def opaque_result(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    yield "compute"
    return {3}


@hookimpl
def fuzzkit_register_ops(register: Any) -> None:
    register("opaque.result", opaque_result, args={}, summary="returns a set, which is not JSON")

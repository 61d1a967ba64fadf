"""fuzzkit subsystem plugin: struct_ops maps whose member programs reach arena memory.

Implements SPEC R21 (``maps``: maps and member programs with or without an arena;
``struct_ops``: the kernel entry points ``bpf_struct_ops_for_each_prog``, ``bpf_prog_arena``
and ``bpf_arena_map_kern_vm_start`` as named primitives) and the callback operation that puts
real kernel > main program > subprogram > kfunc frames on the emulated stack for the R15
stack walk (``ops``). R22, registering a cid-form sched_ext scheduler from such a map, is
sched_ext's ``->reg()`` and lives in the ``scx`` plugin on top of these primitives.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit_struct_ops import struct_ops
from fuzzkit_struct_ops.ops import OPS

hookimpl = pluggy.HookimplMarker("fuzzkit")

#: Modules whose branches are the kernel paths the atheris engine steers by: the entry points,
#: not the maps (``maps``) or the operations.
FUZZKIT_COVERAGE = ("fuzzkit_struct_ops.struct_ops",)


@hookimpl
def fuzzkit_register_primitives(register: Any) -> None:
    register(
        "bpf_struct_ops_for_each_prog",
        struct_ops.bpf_struct_ops_for_each_prog,
        summary="R21 visit each member program once; non-zero return stops",
    )
    register("bpf_prog_arena", struct_ops.bpf_prog_arena, summary="R21 prog->aux->arena or NULL")
    register(
        "bpf_arena_map_kern_vm_start",
        struct_ops.bpf_arena_map_kern_vm_start,
        summary="R21 kernel address of arena offset 0 (kbase)",
    )
    register("bpf_map_put", struct_ops.bpf_map_put, summary="R19 drop an arena reference; the last frees it")
    register(
        "bpf_struct_ops_map_free",
        struct_ops.bpf_struct_ops_map_free,
        summary="R21 free a struct_ops map and its programs' arena references",
    )


@hookimpl
def fuzzkit_register_ops(register: Any) -> None:
    for op_id, executor, args, summary, rules, creates, weight in OPS:
        register(op_id, executor, args=args, summary=summary, rules=rules, creates=creates, weight=weight)

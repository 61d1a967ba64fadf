"""struct_ops operations: load a map of member programs, let the kernel call one of them,
unload the map.

A callback is the kernel's way into arena memory that made direct kernel access necessary:
the kernel calls a member program (through the struct_ops trampoline), the program or one of
its subprograms calls a kfunc, and the kfunc dereferences an ``__arena`` pointer the program
handed it. Each of those is a real frame on the emulated stack, so the fault handler's stack
walk (R15) searches exactly what it searches in the kernel: it must skip the kfunc and the
subprogram and find the *main* program, whose arena decides recovery.
"""

from __future__ import annotations

from typing import Any

from fuzzkit_arena.arena import NOT_LOADABLE, Arena, BpfProg

from fuzzkit import FIXUP, Choice, Cpu, Frame, Handle, Int, Machine, Steps
from fuzzkit.holds import holding
from fuzzkit_struct_ops.maps import MEMBERS, StructOpsMap
from fuzzkit_struct_ops.struct_ops import bpf_map_inc

#: Which arena each member program uses: "A" (argument ``arena``), "B" (argument ``other``)
#: or "-" (none); "_" and members past the list are NULL. "A,B" with ``other`` naming the
#: same arena as ``arena`` is a one-arena map.
LAYOUTS = ("A,-", "A", "A,A", "-", "A,B", "-,A", "A,-,B", "-,-", "_,A")
ACCESSES = ("kfunc_load", "kfunc_store", "prog_load", "prog_store")
U32 = 0xFFFFFFFF


def _map_free(m: Machine, cpu: Cpu, st_map: StructOpsMap) -> Steps:
    return (yield from m.k.bpf_struct_ops_map_free(m, cpu, st_map))


#: Ops naming a map keep its programs alive; the last holder of an unloaded map frees it.
holds_map = holding(
    "struct_ops",
    "map",
    missing="no-map",
    putting=lambda st: st.unloaded,
    released=lambda st: st.freed,
    release=_map_free,
)


def op_load(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """Load a struct_ops map whose member programs use the arenas ``layout`` names."""
    index = len(m.handles.get("struct_ops", []))
    chosen: dict[str, Arena | None] = {
        "A": m.handle("arena", args["arena"]),
        "B": m.handle("arena", args["other"]),
    }
    progs: list[BpfProg | None] = [None] * len(MEMBERS)
    for slot, use in enumerate(args["layout"].split(",")):
        if use == "_":
            continue
        arena = None
        if use != "-":
            arena = chosen[use]
            if arena is None or arena.dying:
                return "no-arena"
        prog = progs[slot] = BpfProg(f"struct_ops{index}.{MEMBERS[slot]}", arena)
        if not prog.loadable:
            return NOT_LOADABLE
    st_map = StructOpsMap(index, progs)
    for arena in st_map.arenas:
        bpf_map_inc(arena)
    m.new_handle("struct_ops", st_map)
    yield "bpf_struct_ops_map_update_elem"
    return index


@holds_map
def op_call(m: Machine, cpu: Cpu, st_map: StructOpsMap, args: dict[str, Any]) -> Steps:
    """The kernel calls member ``member``; it (or its subprogram) reaches arena memory, either
    with a JITed arena load/store (R12, R13) or through a kfunc that dereferences the pointer
    (R14, R15). A program without an arena can still hand a kfunc a pointer into another arena
    (taken from a map); the fault handler then finds no arena on the stack and the kernel
    oopses (R15). A JITed arena access needs an arena of the program's own (the verifier)."""
    member = args["member"]
    prog = st_map.links[member] if member < len(st_map.links) else None
    if prog is None:
        return "no-member"
    kind, _, insn = args["access"].partition("_")
    arena = m.k.bpf_prog_arena(m, cpu, prog)
    if arena is None and kind == "kfunc" and st_map.arenas:
        arena = st_map.arenas[0]
    if arena is None:
        return "no-arena"
    write = insn == "store"
    # The __arena pointer the program holds is a user address; both the JIT and a kfunc
    # reach it at kern_vm_start + (u32)pointer.
    uptr = arena.uaddr(args["pgoff"]) + args["word"] * 8
    addr = m.k.bpf_arena_map_kern_vm_start(m, cpu, arena) + (uptr & U32)
    frames = [Frame("kernel"), Frame("bpf_main", prog)]
    if args["via"] == "sub":
        frames.append(Frame("bpf_sub", st_map.subs[member]))
    if kind == "kfunc":
        frames += [Frame("kfunc"), Frame("kernel")]
    cpu.stack.extend(frames)
    try:
        if kind == "kfunc":
            outcome, value = yield from m.kernel_access(cpu, addr, write, args["value"])
            return value if outcome == "ok" else outcome
        outcome, value = yield from m.kernel_access(cpu, addr, write, args["value"], extable=True, how="bpf")
        if outcome == FIXUP:
            # R12: report the exact address first, then the load yields 0 / the store is
            # dropped.
            m.k.bpf_prog_report_arena_violation(m, cpu, prog, write, addr - arena.kbase)
            return "fixup"
        return value
    finally:
        del cpu.stack[-len(frames) :]


def op_unload(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """Close the map. Refused while a subsystem registered from it is live (the link holds
    the map); otherwise the map is freed once no callback runs any more."""
    st_map: StructOpsMap | None = m.handle("struct_ops", args["map"])
    if st_map is None or st_map.unloaded:
        return "no-map"
    if st_map.attached is not None:
        return "EBUSY"
    st_map.unloaded = True
    yield "bpf_map_put"
    if st_map.users == 0:
        yield from m.k.bpf_struct_ops_map_free(m, cpu, st_map)
    return 0


MAP = Handle("struct_ops")
ARENA = Handle("arena")

#: (op id, executor, argument domains, summary, SPEC rules, handle kind created, weight)
OPS: list[tuple[str, Any, dict[str, Any], str, tuple[str, ...], str | None, float]] = [
    (
        "struct_ops.load",
        op_load,
        {"arena": ARENA, "other": ARENA, "layout": Choice(LAYOUTS)},
        "load a struct_ops map of member programs with or without an arena",
        ("R21",),
        "struct_ops",
        0.3,
    ),
    (
        "struct_ops.call",
        op_call,
        {
            "map": MAP,
            "member": Int(0, len(MEMBERS) - 1),
            "via": Choice(("sub", "main")),
            "access": Choice(ACCESSES),
            "pgoff": Int(0, 63, default=2),
            "word": Int(0, 511),
            "value": Int(0, 255, default=0xA5),
        },
        "the kernel runs a member program that reaches arena memory (kernel > main > sub > kfunc)",
        ("R12", "R13", "R14", "R15", "R21"),
        None,
        1.0,
    ),
    ("struct_ops.unload", op_unload, {"map": MAP}, "close the struct_ops map", ("R21",), None, 0.05),
]

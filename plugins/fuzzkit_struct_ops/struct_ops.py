"""struct_ops maps and their member programs (kernel/bpf/bpf_struct_ops.c), with the kernel
entry points the arena's kernel-side users build on (R21).

A struct_ops map is a table of callbacks, its *members*; each member slot holds a loaded BPF
program or is left NULL. A member program may use an arena (the verifier sets
``prog->aux->arena`` when the program references an arena map) or not, and its subprograms
share its aux. Through ``used_maps`` the programs hold a reference to every arena they use,
so an arena outlives its user fd for as long as the map is loaded: the map takes one reference
per arena here and drops it when unloaded, and the last reference runs ``arena_map_free``
exactly as the arena plugin's own operations do.
"""

from __future__ import annotations

from collections.abc import Callable

from fuzzkit_arena.arena import Arena, BpfProg

from fuzzkit import Cpu, Machine, Steps

#: Member slots of the modelled ops table, in slot order (sched_ext_ops_cid names).
MEMBERS = ("set_cmask", "enqueue", "dispatch")


class StructOpsMap:
    """A BPF_MAP_TYPE_STRUCT_OPS map with its member programs."""

    def __init__(self, index: int, progs: list[BpfProg | None]) -> None:
        self.index = index
        self.name = f"struct_ops{index}"
        #: ``st_map->links[i]->prog`` per member slot; None for a member left NULL.
        self.links = progs
        #: One subprogram per member program (same aux, so same arena and stream).
        self.subs = [BpfProg(f"{p.name}.sub", p.arena, main=p) if p is not None else None for p in progs]
        #: Distinct arenas the member programs use, in member order: the map's references.
        self.arenas: list[Arena] = []
        for prog in progs:
            if prog is not None and prog.arena is not None and prog.arena not in self.arenas:
                self.arenas.append(prog.arena)
        #: The scheduler (or other subsystem object) registered from this map, if any.
        self.attached: object | None = None
        #: CPUs currently running one of the map's callbacks.
        self.users = 0
        self.unloaded = False
        self.freed = False


# -- R21: the kernel entry points -------------------------------------------------------------------


def bpf_struct_ops_for_each_prog(
    m: Machine, cpu: Cpu, st_map: StructOpsMap, cb: Callable[[BpfProg], int]
) -> int:
    """R21: call ``cb`` once per member program, skipping NULL members; the first non-zero
    return stops the walk and is returned."""
    for prog in st_map.links:
        if prog is None:
            continue
        ret = cb(prog)
        if ret:
            return ret
    return 0


def bpf_prog_arena(m: Machine, cpu: Cpu, prog: BpfProg) -> Arena | None:
    """R21: ``prog->aux->arena``, or NULL when the program uses no arena."""
    return prog.main_prog().arena


def bpf_arena_map_kern_vm_start(m: Machine, cpu: Cpu, arena: Arena) -> int:
    """R21: the kernel address of arena offset 0 (``kern_vm_start`` + GUARD_SZ/2, ``kbase``)."""
    return arena.kbase


# -- map references to arenas ------------------------------------------------------------------------


def bpf_map_inc(arena: Arena) -> None:
    """Take a long-lived reference: counted with the in-flight operations, so the arena's
    ``map_free`` waits for the last of either."""
    arena.users += 1


def bpf_map_put(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
    """Drop a reference; the last one after the user fd was closed frees the arena (R19)."""
    arena.users -= 1
    if arena.dying and arena.users == 0 and not arena.destroyed:
        yield from m.k.arena_map_free(m, cpu, arena)


def struct_ops_map_free(m: Machine, cpu: Cpu, st_map: StructOpsMap) -> Steps:
    """bpf_struct_ops_map_free(): the programs go, and with them their arena references."""
    st_map.freed = True
    yield "bpf_struct_ops_map_free"
    for arena in st_map.arenas:
        yield from bpf_map_put(m, cpu, arena)

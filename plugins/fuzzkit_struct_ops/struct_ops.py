"""The kernel entry points of struct_ops maps (kernel/bpf/bpf_struct_ops.c) the arena's
kernel-side users build on (R21), and the maps' references to their arenas. The maps
themselves are in :mod:`fuzzkit_struct_ops.maps`.

Through ``used_maps`` the member programs hold a reference to every arena they use,
so an arena outlives its user fd for as long as the map is loaded: the map takes one reference
per arena here and drops it when unloaded, and the last reference runs ``arena_map_free``
exactly as the arena plugin's own operations do.
"""

from __future__ import annotations

from collections.abc import Callable

from fuzzkit_arena.arena import Arena, BpfProg

from fuzzkit import Cpu, Machine, Steps
from fuzzkit_struct_ops.maps import StructOpsMap

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


def bpf_struct_ops_map_free(m: Machine, cpu: Cpu, st_map: StructOpsMap) -> Steps:
    """bpf_struct_ops_map_free(): the programs go, and with them their arena references."""
    st_map.freed = True
    yield "bpf_struct_ops_map_free"
    for arena in st_map.arenas:
        yield from m.k.bpf_map_put(m, cpu, arena)

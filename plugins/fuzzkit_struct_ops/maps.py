"""struct_ops maps and their member programs: the objects the kernel entry points in
:mod:`fuzzkit_struct_ops.struct_ops` act on.

A struct_ops map is a table of callbacks, its *members*; each member slot holds a loaded BPF
program or is left NULL. A member program may use an arena (the verifier sets
``prog->aux->arena`` when the program references an arena map) or not, and its subprograms
share its aux. Objects like these live outside the plugin's ``FUZZKIT_COVERAGE``, as the
arena plugin's do: building one decides nothing about the mechanism.
"""

from __future__ import annotations

from fuzzkit_arena.arena import Arena, BpfProg

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

"""A cid-form sched_ext scheduler: registration from a struct_ops map (R22), the arena bits
of enabling it (its gen_pool and the per-CPU ``set_cmask`` scratch cmasks) and of disabling
it (R26), and ``ops.set_cmask`` (R27).

One scheduler runs at a time (``scx_enable_mutex``, and -EBUSY while one is live). Operations
on a scheduler hold it like the arena ops hold an arena: disabling waits for the last one
(the kernel's disable path drains callbacks), and whichever finishes last tears the pool down.
"""

from __future__ import annotations

from fuzzkit_arena.arena import Arena, BpfProg
from fuzzkit_struct_ops.maps import StructOpsMap

from fuzzkit import Cpu, Frame, Machine, Mutex, Steps
from fuzzkit_scx.arena_pool import EINVAL, ENOMEM
from fuzzkit_scx.cmask_layout import CmaskCtx, cmask_log, cmask_size
from fuzzkit_scx.genalloc import GenPool

#: m.state keys: the live scheduler, the enable mutex, per-CPU rq locks.
ROOT = "scx.root"
ENABLE_MUTEX = "scx.enable_mutex"
RQ_LOCKS = "scx.rq_locks"


class ScxSched:
    def __init__(self, index: int, st_map: StructOpsMap, arena: Arena) -> None:
        self.index = index
        self.st_map = st_map
        #: The one arena of the member programs (R22), its kernel base and the pool over it.
        self.arena: Arena | None = arena
        self.arena_kern_base = 0
        self.pool: GenPool | None = None
        #: Per-CPU set_cmask scratch cmasks: kernel addresses, by CPU id.
        self.scratch: list[int] = []
        #: Kernel-side grants made through ``scx.alloc`` and not freed yet: (kern_va, size).
        self.grants: list[tuple[int, int]] = []
        #: CPUs inside an operation on this scheduler.
        self.users = 0
        self.disabling = False
        self.dead = False


def enable_mutex(m: Machine) -> Mutex:
    lock: Mutex | None = m.state.get(ENABLE_MUTEX)
    if lock is None:
        lock = m.state[ENABLE_MUTEX] = Mutex("scx_enable_mutex")
    return lock


def rq_lock(m: Machine, cpu: Cpu) -> Mutex:
    locks: list[Mutex] | None = m.state.get(RQ_LOCKS)
    if locks is None:
        locks = m.state[RQ_LOCKS] = [Mutex(f"rq{c.id}.lock") for c in m.cpus]
    return locks[cpu.id]


def bpf_scx_reg_cid(m: Machine, cpu: Cpu, st_map: StructOpsMap) -> Steps:
    """R22: find the one arena of the member programs, then enable. Returns the scheduler, or
    a string naming why registration failed."""
    found: list[Arena] = []

    def scx_arena_scan_prog(prog: BpfProg) -> int:
        arena = m.k.bpf_prog_arena(m, cpu, prog)
        if arena is None:
            return 0
        if found and found[0] is not arena:
            return EINVAL
        if not found:
            found.append(arena)
        return 0

    if m.k.bpf_struct_ops_for_each_prog(m, cpu, st_map, scx_arena_scan_prog):
        reason = "EINVAL: cid-form scheduler uses multiple arena maps"
    elif not found:
        reason = "EINVAL: cid-form scheduler uses no arena map"
    else:
        reason = ""
    yield "scx_arena_scan"
    if reason:
        m.note(reason)
        return reason
    sch = ScxSched(len(m.handles.get("sched", [])), st_map, found[0])
    sch.arena_kern_base = m.k.bpf_arena_map_kern_vm_start(m, cpu, found[0])
    if m.k.scx_arena_pool_init(m, cpu, sch):
        return "ENOMEM"
    if (yield from m.k.scx_set_cmask_scratch_alloc(m, cpu, sch)):
        yield from m.k.scx_arena_pool_destroy(m, cpu, sch)
        return "ENOMEM"
    return sch


def scx_set_cmask_scratch_alloc(m: Machine, cpu: Cpu, sch: ScxSched) -> Steps:
    """One cmask over the whole cid space per possible CPU, from the pool, initialized by the
    kernel through its kernel address."""
    assert sch.arena is not None
    nr = len(m.cpus)
    ctx = CmaskCtx(sch.arena, None, cmask_log(m, cpu))
    cpu.stack.append(Frame("kernel"))
    try:
        for _ in m.cpus:
            kern_va = yield from m.k.scx_arena_alloc(m, cpu, sch, cmask_size(nr))
            if not kern_va:
                return ENOMEM
            sch.scratch.append(kern_va)
            yield from m.k.scx_cmask_init(m, cpu, ctx, kern_va, 0, nr)
    finally:
        cpu.stack.pop()
    return 0


def scx_disable(m: Machine, cpu: Cpu, sch: ScxSched) -> Steps:
    """The arena part of disabling: the pool goes (R26), the map is released."""
    sch.dead = True  # first, before any step: exactly one CPU tears the scheduler down
    yield from m.k.scx_arena_pool_destroy(m, cpu, sch)
    sch.scratch = []
    sch.grants = []
    sch.st_map.attached = None
    m.state[ROOT] = None
    return 0


def scx_call_op_set_cmask(m: Machine, cpu: Cpu, sch: ScxSched, cpumask: int) -> Steps:
    """R27: with the rq lock held and IRQs off, build this CPU's scratch cmask from ``cpumask``
    through its kernel address, then call ``ops_cid.set_cmask`` with the arena address. The
    member program reads the cmask back (``cmask_weight``), which is what it returns.

    If the scheduler freed the pool pages behind the scratch cmask, the kernel's first store
    faults with only kernel frames on the stack: the fault handler finds no program and the
    kernel oopses (:class:`~fuzzkit_scx.cmask_layout.Oops`)."""
    prog = sch.st_map.links[0]
    if prog is None:
        return "no-op"  # !SCX_HAS_OP(set_cmask): the kernel builds nothing
    assert sch.arena is not None
    kern_va = sch.scratch[cpu.id]
    rq = rq_lock(m, cpu)
    log = cmask_log(m, cpu)
    yield from m.mutex_lock(cpu, rq)
    try:
        cpu.stack.append(Frame("kernel"))
        try:
            yield from m.k.scx_cpumask_to_cmask(m, cpu, CmaskCtx(sch.arena, None, log), cpumask, kern_va)
        finally:
            cpu.stack.pop()
        uaddr = m.k.scx_kaddr_to_arena(m, cpu, sch, kern_va)
        log.append(("addr", sch, kern_va, uaddr))
        if m.k.bpf_prog_arena(m, cpu, prog) is not sch.arena:
            return None  # a program without the arena cannot dereference __arena pointers
        cpu.stack += [Frame("kernel"), Frame("bpf_main", prog)]
        try:
            weight: int = yield from m.k.cmask_weight(m, cpu, CmaskCtx(sch.arena, prog, log), uaddr)
        finally:
            del cpu.stack[-2:]
        return weight
    finally:
        m.mutex_unlock(cpu, rq)

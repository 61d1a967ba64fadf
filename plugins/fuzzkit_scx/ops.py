"""sched_ext operations: register a cid-form scheduler from a struct_ops map, kernel-side
allocations from its arena pool, ``ops.set_cmask``, disabling, and the BPF-side cmask helpers.

Kernel-side grants are freed the way the kernel frees them, by the grant, with the size it
was allocated with: ``scx.free`` names an outstanding grant, never a raw address, so every
program is a well-formed free/destroy sequence and a BUG in it is a finding (I17). A BUG or an
oops stops the operation; its result says which ("BUG: ...", "oops").

The cmask helpers act on a cmask at a place in an arena (page offset and word), run as the
arena's BPF program, and reach memory through JITed arena accesses like any other BPF access.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzzkit_arena.arena import NOT_LOADABLE, Arena
from fuzzkit_arena.ops import holds_arena
from fuzzkit_struct_ops.maps import StructOpsMap

from fuzzkit import Cpu, Frame, Handle, Int, Machine, Steps
from fuzzkit.holds import holding
from fuzzkit_scx.arena_pool import GROWTH
from fuzzkit_scx.cmask_layout import CmaskCtx, Oops, cmask_log
from fuzzkit_scx.genalloc import KernelBug
from fuzzkit_scx.sched import ROOT, ScxSched, enable_mutex, scx_disable


def kernel_task(steps: Steps) -> Steps:
    """Run kernel code that may BUG or oops; either ends the task with that as its result."""
    try:
        return (yield from steps)
    except KernelBug as bug:
        return f"BUG: {bug}"
    except Oops:
        return "oops"


#: Ops naming a scheduler hold it, each as a kernel task; the last holder of a scheduler
#: being disabled tears it down, and a BUG or oops in the teardown is that op's result.
holds_sched = holding(
    "sched",
    "sched",
    missing="no-sched",
    putting=lambda sch: sch.disabling,
    released=lambda sch: sch.dead,
    release=scx_disable,
    task=kernel_task,
    ends_op=bool,
)


def op_reg_cid(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """Attach a struct_ops map as a cid-form scheduler (bpf_scx_reg_cid, R22): the handle of
    the new scheduler, or why it was refused."""
    lock = enable_mutex(m)
    yield from m.mutex_lock(cpu, lock)
    try:
        st_map: StructOpsMap | None = m.handle("struct_ops", args["map"])
        if st_map is None or st_map.unloaded:
            return "no-map"
        if m.state.get(ROOT) is not None or st_map.attached is not None:
            return "EBUSY"
        # Claimed before the first step that can sleep: unload and a second enable back off.
        st_map.attached = m.state[ROOT] = True
        sch = yield from kernel_task(m.k.bpf_scx_reg_cid(m, cpu, st_map))
        if not isinstance(sch, ScxSched):
            st_map.attached = m.state[ROOT] = None
            return sch
        st_map.attached = m.state[ROOT] = sch
        return m.new_handle("sched", sch)
    finally:
        m.mutex_unlock(cpu, lock)


@holds_sched
def op_alloc(m: Machine, cpu: Cpu, sch: ScxSched, args: dict[str, Any]) -> Steps:
    """scx_arena_alloc() by a kernel-side user of the pool: the kernel address, or 0."""
    m.state.setdefault(GROWTH, {})[cpu.id] = None
    kern_va: int = yield from m.k.scx_arena_alloc(m, cpu, sch, args["size"])
    if kern_va:
        sch.grants.append((kern_va, args["size"]))
    return kern_va


@holds_sched
def op_free(m: Machine, cpu: Cpu, sch: ScxSched, args: dict[str, Any]) -> Steps:
    """scx_arena_free() of outstanding grant ``grant`` (in grant order): its kernel address."""
    if args["grant"] >= len(sch.grants):
        return "no-grant"
    kern_va, size = sch.grants.pop(args["grant"])  # taken at once: each grant is freed once
    yield from m.k.scx_arena_free(m, cpu, sch, kern_va, size)
    return kern_va


@holds_sched
def op_set_cmask(m: Machine, cpu: Cpu, sch: ScxSched, args: dict[str, Any]) -> Steps:
    """A task's affinity changes on this CPU: the kernel calls ops.set_cmask (R27)."""
    return (yield from m.k.scx_call_op_set_cmask(m, cpu, sch, args["cpumask"] & ((1 << len(m.cpus)) - 1)))


def op_unreg(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """Disable the scheduler: once no operation holds it, the pool is destroyed (R26)."""
    sch: ScxSched | None = m.handle("sched", args["sched"])
    if sch is None or sch.disabling:
        return "no-sched"
    sch.disabling = True
    yield "scx_disable"
    if sch.users or sch.dead:
        return "deferred"  # the last holder tears it down (or, since the yield, already did)
    return (yield from kernel_task(m.k.scx_disable(m, cpu, sch)))


# -- BPF-side cmask helpers ------------------------------------------------------------------------


def _cmask(arena: Arena, pgoff: int, slot: int) -> int:
    return arena.uaddr(pgoff) + slot * 8


HelperArgs = Callable[[Arena, dict[str, Any]], tuple[Any, ...]]


def cmask_helper(helper: str, more: HelperArgs = lambda arena, args: ()) -> Callable[..., Steps]:
    """An op running primitive ``helper`` as the arena's main program on the cmask at
    (``pgoff``, ``slot``), with the further arguments ``more`` picks from the op's."""

    def run(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
        if not arena.prog.loadable:
            return NOT_LOADABLE
        ctx = CmaskCtx(arena, arena.prog, cmask_log(m, cpu))
        cm = _cmask(arena, args["pgoff"], args["slot"])
        cpu.stack += [Frame("kernel"), Frame("bpf_main", arena.prog)]
        try:
            return (yield from getattr(m.k, helper)(m, cpu, ctx, cm, *more(arena, args)))
        finally:
            del cpu.stack[-2:]

    run.__name__ = f"op_{helper}"
    run.__doc__ = f"{helper}() run by the arena's BPF program."
    return holds_arena(run)


def _cid(arena: Arena, args: dict[str, Any]) -> tuple[Any, ...]:
    return (args["cid"],)


def _src(op: str) -> HelperArgs:
    return lambda arena, args: (_cmask(arena, args["src_pgoff"], args["src_slot"]), op)


SCHED = Handle("sched")
PLACE = {"arena": Handle("arena"), "pgoff": Int(0, 63), "slot": Int(0, 511)}
SRC = {"src_pgoff": Int(0, 63), "src_slot": Int(0, 511, default=8)}
CID = {"cid": Int(0, 1023, default=64)}

#: (op id, executor, argument domains, summary, SPEC rules, handle kind created, weight)
OPS: list[tuple[str, Any, dict[str, Any], str, tuple[str, ...], str | None, float]] = [
    (
        "scx.reg_cid",
        op_reg_cid,
        {"map": Handle("struct_ops")},
        "register a struct_ops map as a cid-form scheduler (one arena, pool, scratch cmasks)",
        ("R21", "R22", "R24", "R25"),
        "sched",
        0.3,
    ),
    (
        "scx.alloc",
        op_alloc,
        {"sched": SCHED, "size": Int(1, 65536, default=32)},
        "scx_arena_alloc: gen_pool allocation, growing the pool from the arena",
        ("R23", "R24", "R25"),
        None,
        1.0,
    ),
    (
        "scx.free",
        op_free,
        {"sched": SCHED, "grant": Int(0, 15)},
        "scx_arena_free of an outstanding grant",
        ("R23",),
        None,
        0.6,
    ),
    (
        "scx.set_cmask",
        op_set_cmask,
        {"sched": SCHED, "cpumask": Int(0, (1 << 64) - 1, default=1)},
        "ops.set_cmask: the kernel writes the per-CPU arena cmask, the program reads it",
        ("R27",),
        None,
        1.0,
    ),
    (
        "scx.unreg",
        op_unreg,
        {"sched": SCHED},
        "disable the scheduler; destroy its pool",
        ("R26",),
        None,
        0.05,
    ),
    (
        "scx.cmask_init",
        cmask_helper("cmask_init", lambda arena, args: (args["base"], args["nr_cids"])),
        {**PLACE, "base": Int(0, 255, default=60), "nr_cids": Int(0, 512, default=8)},
        "cmask_init on arena memory",
        ("R27",),
        None,
        0.4,
    ),
    ("scx.cmask_set", cmask_helper("cmask_set", _cid), {**PLACE, **CID}, "cmask_set", ("R27",), None, 0.3),
    (
        "scx.cmask_clear",
        cmask_helper("cmask_clear", _cid),
        {**PLACE, **CID},
        "cmask_clear",
        ("R27",),
        None,
        0.3,
    ),
    ("scx.cmask_test", cmask_helper("cmask_test", _cid), {**PLACE, **CID}, "cmask_test", ("R27",), None, 0.3),
    (
        "scx.cmask_next_set",
        cmask_helper("cmask_next_set", _cid),
        {**PLACE, **CID},
        "cmask_next_set",
        ("R27",),
        None,
        0.3,
    ),
    ("scx.cmask_weight", cmask_helper("cmask_weight"), PLACE, "cmask_weight", ("R27",), None, 0.3),
    *(
        (
            f"scx.cmask_{op}",
            cmask_helper("cmask_op", _src(op)),
            {**PLACE, **SRC},
            f"cmask_{op} of a second cmask into the first",
            ("R27",),
            None,
            0.2,
        )
        for op in ("and", "or", "copy")
    ),
]

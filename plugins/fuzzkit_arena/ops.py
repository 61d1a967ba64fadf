"""Arena operations: what programs are made of.

Addresses are given as page offsets into the arena (``pgoff``), so that programs mean the
same thing whatever address the first mmap picks; ``addr`` selects how the offset reaches the
kernel (best fit "any", the exact address, or a misaligned one for R1). Every operation that
names an arena holds a reference to it for its duration; destroying an arena only drops the
program's reference, and the last holder runs ``arena_map_free`` (R19), as in the kernel.
"""

from __future__ import annotations

from typing import Any

from fuzzkit import FIXUP, PAGE_SHIFT, PAGE_SIZE, Choice, Cpu, Frame, Handle, Int, Machine, Steps
from fuzzkit.holds import holding
from fuzzkit_arena.arena import (
    BPF_F_MMAPABLE,
    BPF_F_NO_USER_CONV,
    BPF_F_SEGV_ON_FAULT,
    GUARD_SZ,
    MAX_PAGES,
    MMAP_BASE,
    NOT_LOADABLE,
    SZ_4G,
    Arena,
    BpfProg,
)

FLAGS = {
    "mmapable": BPF_F_MMAPABLE,
    "mmapable|segv_on_fault": BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT,
    "mmapable|no_user_conv": BPF_F_MMAPABLE | BPF_F_NO_USER_CONV,
    "none": 0,
    "mmapable|unknown": BPF_F_MMAPABLE | 1 << 20,
}
#: A page offset domain reaching past the largest arena (R1 range checks).
PGOFF = Int(0, MAX_PAGES + 16)
#: Page counts reach past the two-batch allocation of selftest verifier_arena_large
#: (2051 pages, R3's batches of KMALLOC_BATCH); generators stay near the default.
PAGE_CNT = Int(0, 4096, default=1)
ARENA = Handle("arena")
#: Fixed user_vm_start values: 4 GiB aligned, then one per arena.
FIXED_BASE = 0x7E0000000000


def bpf_map_put(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
    """The last reference an op or the map fd held is gone. R19: a user mapping holds one
    too (mmap()'s vm_file holds the map, kernel/bpf/syscall.c bpf_map_mmap()), so while the
    arena is mapped nothing is freed: the last munmap() runs arena_map_free()."""
    if arena.vmas:
        yield "bpf_map_put: still mapped"
        return "mapped"
    return (yield from m.k.arena_map_free(m, cpu, arena))


#: Ops naming an arena hold it; once the map fd is closed they see no arena, and the last
#: holder runs map_free unless a user mapping still holds the map (R19).
holds_arena = holding(
    "arena",
    "arena",
    missing="no-arena",
    putting=lambda a: a.dying,
    released=lambda a: a.destroyed,
    release=bpf_map_put,
)

#: User-space ops reach the arena through its mapping, which outlives the map fd (R19):
#: they see no arena only once it is closed and unmapped.
holds_mapping = holding(
    "arena",
    "arena",
    missing="no-arena",
    putting=lambda a: a.dying and not a.vmas,
    released=lambda a: a.destroyed,
    release=bpf_map_put,
)


def op_create(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
    """arena_map_alloc(): returns the arena handle or an errno name."""
    flags = FLAGS[args["flags"]]
    max_entries = args["max_entries"]
    index = len(m.handles.get("arena", []))
    start = {
        "mmap": 0,
        "fixed": FIXED_BASE + index * 2 * SZ_4G,
        "fixed_unaligned": FIXED_BASE + index * 2 * SZ_4G + 0x800,
        "fixed_crossing_4g": FIXED_BASE + index * 2 * SZ_4G + SZ_4G - PAGE_SIZE,
        # Ends exactly at a 4 GiB boundary (selftest verifier_arena's map_extra): the low
        # 32 bits are as high as they can be, so pointer arithmetic wraps them.
        "fixed_below_4g": FIXED_BASE + index * 2 * SZ_4G + SZ_4G - max_entries * PAGE_SIZE,
    }[args["user_vm_start"]]
    arena = m.k.arena_map_alloc(m, cpu, index, max_entries, flags, start)
    if isinstance(arena, str):
        return arena
    m.new_handle("arena", arena)
    m.new_handle("prog", arena.prog)
    yield "arena_map_alloc"
    return index


@holds_arena
def op_mmap(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """arena_map_mmap(): map the arena in the (single) user process."""
    yield from m.mutex_lock(cpu, arena.lock)
    try:
        if arena.vmas:
            return "EBUSY"
        if not arena.user_vm_start:
            size = arena.max_entries * PAGE_SIZE
            start = MMAP_BASE + arena.index * 2 * SZ_4G
            if start >> 32 != (start + size - 1) >> 32:
                start = (start + SZ_4G - 1) & ~(SZ_4G - 1)
            arena.user_vm_start, arena.user_vm_end = start, start + size
        arena.vmas = 1
        return arena.user_vm_start
    finally:
        m.mutex_unlock(cpu, arena.lock)


@holds_mapping
def op_munmap(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """munmap() of the arena VMA, then arena_vm_close()."""
    if not arena.vmas:
        return "EINVAL"
    # The VMA leaves the mm and its PTEs are zapped in one step: under mmap_lock no user
    # fault runs in between, so none can map a page after the zap (arena_vm_fault checks).
    yield from m.mutex_lock(cpu, arena.lock)
    arena.vmas = 0
    m.user_zap(arena.user_vm_start >> PAGE_SHIFT, arena.user_vm_end >> PAGE_SHIFT)
    m.mutex_unlock(cpu, arena.lock)
    yield "zap vma"
    return 0


def _uaddr(arena: Arena, args: dict[str, Any]) -> int:
    addr = args["addr"]
    if addr == "any":
        return 0
    return arena.uaddr(args["pgoff"]) + (8 if addr == "misaligned" else 0)


@holds_arena
def op_alloc(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """bpf_arena_alloc_pages() and its sleepable/non-sleepable kernel variants (R1-R5)."""
    if args["flags"] or not args["page_cnt"]:
        return 0
    uaddr = _uaddr(arena, args)
    return (
        yield from m.k.arena_alloc_pages(
            m, cpu, arena, uaddr, args["page_cnt"], args["node"], args["sleepable"]
        )
    )


@holds_arena
def op_free(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """bpf_arena_free_pages() (sleepable) or its non-sleepable variant (R6-R9)."""
    uaddr = arena.uaddr(args["pgoff"])
    if not args["page_cnt"] or not uaddr:
        return "noop"
    return (yield from m.k.arena_free_pages(m, cpu, arena, uaddr, args["page_cnt"], args["sleepable"]))


@holds_arena
def op_free_worker(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """The deferred-free work item running on this CPU (R8)."""
    return (yield from m.k.arena_free_worker(m, cpu, arena))


@holds_arena
def op_reserve(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """bpf_arena_reserve_pages() (R10)."""
    return (yield from m.k.arena_reserve_pages(m, cpu, arena, _uaddr(arena, args), args["page_cnt"]))


@holds_arena
def op_mem_usage(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """The arena's memory usage as the map reports it, in bytes: its REAL pages (R20),
    read without the lock. The scratch page and range-tree nodes are not counted."""
    yield "map_mem_usage"
    return arena.nr_pages << PAGE_SHIFT


@holds_mapping
def op_user_access(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """A user-space load or store through the arena mapping (R11)."""
    pgoff, write = args["pgoff"], args["write"]
    if not arena.vmas or pgoff >= arena.max_entries:
        return "SIGSEGV"
    uaddr = arena.uaddr(pgoff) + args["word"] * 8
    uvpage = uaddr >> PAGE_SHIFT
    # arena_vm_fault() maps the page itself; a concurrent zap, VM_FAULT_RETRY or VM_FAULT_OOM
    # faults again.
    while (page := m.user_ptes.get(uvpage)) is None:
        if (yield from m.k.arena_vm_fault(m, cpu, arena, uaddr)) is None:
            return "SIGSEGV"
    value = m.touch(cpu, page, uvpage, uaddr, write, args["value"], "user")
    yield "user store" if write else "user load"
    return value


def _with_frames(cpu: Cpu, frames: list[Frame]) -> int:
    cpu.stack.extend(frames)
    return len(frames)


#: Where a JITed arena access runs: the main program, a subprogram it called, or a
#: callback the kernel runs for it with no frame of the main program below (a bpf_timer
#: callback in softirq context, selftest arena_stream's stream_arena_callback_fault).
PROG_CTX = ("main", "subprog", "timer_cb")


def _prog_frames(arena: Arena, ctx: str) -> list[Frame]:
    prog = arena.prog
    if ctx == "main":
        return [Frame("kernel"), Frame("bpf_main", prog)]
    name = f"{prog.name}.{'sub' if ctx == 'subprog' else 'timer_cb'}"
    sub = Frame("bpf_sub", BpfProg(name, arena, main=prog))
    if ctx == "subprog":
        return [Frame("kernel"), Frame("bpf_main", prog), sub]
    return [Frame("kernel"), sub]


@holds_arena
def op_prog_access(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """A JITed BPF arena load or store (R12, R13): exception-table protected.

    The JIT addresses ``kern_vm_start + (u32)reg + off``: ``pgoff`` puts the user pointer in
    the register, ``off`` is the byte offset the instruction adds (not wrapped to 32 bits,
    so an access near the top of the band reaches the upper guard). Memory holds 8-byte
    words: a narrower access reads or writes the word holding its byte."""
    if not arena.prog.loadable:
        return NOT_LOADABLE
    write = args["write"]
    addr = arena.kbase + ((arena.user_vm_start + args["pgoff"] * PAGE_SIZE) & 0xFFFFFFFF) + args["off"]
    frames = _prog_frames(arena, args["ctx"])
    n = _with_frames(cpu, frames)
    try:
        outcome, value = yield from m.kernel_access(cpu, addr, write, args["value"], extable=True, how="bpf")
        if outcome == FIXUP:
            # R12, ex_handler_bpf() (arch/x86/net/bpf_jit_comp.c, arch/arm64/net/bpf_jit_comp.c):
            # report first (the address register may be the destination) the exact address
            # reg + off, attributed through the faulting (sub)program to its main program's
            # stream; then the load yields 0 / the store is dropped and the insn is skipped.
            m.k.bpf_prog_report_arena_violation(m, cpu, frames[-1].prog, write, addr - arena.kbase)
            return "fixup"
        return value
    finally:
        del cpu.stack[-n:]


#: Emulated call stacks a kernel-side access can run under (R15's stack walk).
STACKS = ("main", "main_sub", "sub_only", "none", "main_no_arena", "other_arena")
#: Where a kernel-side access lands.
WHERE = ("slot", "upper_guard", "lower_guard", "outside", "kfence")


def _stack(m: Machine, arena: Arena, kind: str) -> list[Frame]:
    prog = arena.prog
    if kind == "main":
        frames = [Frame("bpf_main", prog)]
    elif kind == "main_sub":
        frames = [Frame("bpf_main", prog), Frame("bpf_sub", BpfProg(f"{prog.name}.sub", arena, main=prog))]
    elif kind == "sub_only":
        frames = [Frame("bpf_sub", BpfProg(f"{prog.name}.sub", arena, main=prog))]
    elif kind == "none":
        frames = []
    elif kind == "main_no_arena":
        frames = [Frame("bpf_main", BpfProg("noarena.prog", None))]
    elif kind == "other_arena":
        frames = [Frame("bpf_main", m.handle("prog", (arena.index + 1) % len(m.handles["prog"])))]
    else:
        raise KeyError(kind)
    return [Frame("kernel"), *frames, Frame("kfunc")]


def _kernel_addr(m: Machine, arena: Arena, where: str, pgoff: int, word: int) -> int:
    if where == "slot":
        return arena.kaddr(arena.uaddr(pgoff)) + word * 8
    if where == "upper_guard":
        return arena.kbase + SZ_4G + (pgoff % (GUARD_SZ // 2 // PAGE_SIZE)) * PAGE_SIZE + word * 8
    if where == "lower_guard":
        return arena.kbase - GUARD_SZ // 2 + (pgoff % (GUARD_SZ // 2 // PAGE_SIZE)) * PAGE_SIZE
    if where == "kfence":
        return m.arch.kfence_pool[0] + (pgoff % 512) * PAGE_SIZE
    return arena.band + 0x200000000000 + pgoff * PAGE_SIZE


@holds_arena
def op_kernel_access(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """A kfunc or struct_ops callback dereferencing arena memory (R14, R15)."""
    frames = _stack(m, arena, args["stack"])
    if not all(f.prog is None or f.prog.loadable for f in frames):
        return NOT_LOADABLE
    addr = _kernel_addr(m, arena, args["where"], args["pgoff"], args["word"])
    n = _with_frames(cpu, frames)
    try:
        outcome, value = yield from m.kernel_access(
            cpu, addr, args["insn"] == "store", args["value"], prefetch=args["insn"] == "prefetch"
        )
        return value if outcome == "ok" else outcome
    finally:
        del cpu.stack[-n:]


@holds_arena
def op_destroy(m: Machine, cpu: Cpu, arena: Arena, args: dict[str, Any]) -> Steps:
    """Drop the last user reference (close the map fd); map_free runs when no op holds it."""
    arena.dying = True
    yield "bpf_map_put"
    return "put"


BOOL = Choice((True, False))
WORD = Int(0, 511)
VALUE = Int(0, 255, default=0xA5)

#: (op id, executor, argument domains, summary, rules, handle kind created, weight)
OPS: list[tuple[str, Any, dict[str, Any], str, tuple[str, ...], str | None, float]] = [
    (
        "arena.create",
        op_create,
        {
            "max_entries": Int(0, MAX_PAGES + 1, default=16),
            "flags": Choice(tuple(FLAGS)),
            "user_vm_start": Choice(
                ("fixed", "mmap", "fixed_unaligned", "fixed_crossing_4g", "fixed_below_4g")
            ),
        },
        "create an arena map",
        ("R1",),
        "arena",
        0.2,
    ),
    ("arena.mmap", op_mmap, {"arena": ARENA}, "mmap the arena in user space", ("R1", "R11"), None, 1.0),
    ("arena.munmap", op_munmap, {"arena": ARENA}, "unmap the arena from user space", ("R19",), None, 0.2),
    (
        "arena.alloc",
        op_alloc,
        {
            "arena": ARENA,
            "addr": Choice(("any", "fixed", "misaligned")),
            "pgoff": PGOFF,
            "page_cnt": PAGE_CNT,
            "node": Choice((-1, 0, 7)),
            "flags": Choice((0, 1)),
            "sleepable": BOOL,
        },
        "bpf_arena_alloc_pages",
        ("R1", "R2", "R3", "R4", "R5", "R20"),
        None,
        1.0,
    ),
    (
        "arena.free",
        op_free,
        {"arena": ARENA, "pgoff": PGOFF, "page_cnt": PAGE_CNT, "sleepable": BOOL},
        "bpf_arena_free_pages",
        ("R6", "R7", "R8", "R9"),
        None,
        1.0,
    ),
    (
        "arena.free_worker",
        op_free_worker,
        {"arena": ARENA},
        "run the deferred-free worker",
        ("R8",),
        None,
        1.0,
    ),
    (
        "arena.reserve",
        op_reserve,
        {"arena": ARENA, "pgoff": PGOFF, "page_cnt": PAGE_CNT, "addr": Choice(("fixed", "misaligned"))},
        "bpf_arena_reserve_pages",
        ("R10",),
        None,
        1.0,
    ),
    (
        "arena.mem_usage",
        op_mem_usage,
        {"arena": ARENA},
        "read the arena's memory usage (nr_pages)",
        ("R20",),
        None,
        0.2,
    ),
    (
        "arena.user_access",
        op_user_access,
        {"arena": ARENA, "pgoff": PGOFF, "word": WORD, "write": BOOL, "value": VALUE},
        "user-space load/store",
        ("R11",),
        None,
        1.0,
    ),
    (
        "arena.prog_access",
        op_prog_access,
        {
            "arena": ARENA,
            "pgoff": PGOFF,
            "off": Int(0, PAGE_SIZE - 1),
            "write": BOOL,
            "value": VALUE,
            "ctx": Choice(PROG_CTX),
        },
        "BPF program load/store",
        ("R12", "R13"),
        None,
        1.0,
    ),
    (
        "arena.kernel_access",
        op_kernel_access,
        {
            "arena": ARENA,
            "where": Choice(WHERE),
            "pgoff": PGOFF,
            "word": WORD,
            "insn": Choice(("load", "store", "prefetch")),
            "stack": Choice(STACKS),
            "value": VALUE,
        },
        "kernel-side (kfunc) load/store",
        ("R14", "R15"),
        None,
        1.0,
    ),
    ("arena.destroy", op_destroy, {"arena": ARENA}, "drop the map reference; map_free", ("R19",), None, 0.05),
]

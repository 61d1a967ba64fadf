"""kernel/sched/ext/arena.c: the scheduler's kernel-side sub-allocator over its arena's pages
(R24-R26), each entry point a named, replaceable primitive.

Chunks enter the gen_pool at their *kernel* addresses (``kbase + (u32)uaddr``): the kernel
writes through them directly and converts to the arena (BPF) form only when it hands a pointer
to the program (``scx_kaddr_to_arena``). Pages only ever enter the pool; they return to the
arena when the arena map itself is destroyed (R26), so a BPF program that frees them with
``bpf_arena_free_pages`` pulls memory out from under the kernel (the R27 hazard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzzkit_arena.arena import Arena, clear_lo32
from fuzzkit_arena.kernel import NUMA_NO_NODE

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, Cpu, Machine, Steps
from fuzzkit_scx.bitmap import set_bit_ranges
from fuzzkit_scx.genalloc import ENOMEM, Chunk, GenPool

if TYPE_CHECKING:
    from fuzzkit_scx.sched import ScxSched

EINVAL = -22
#: 8-byte minimum sub-allocation (R23).
SCX_ARENA_MIN_ORDER = 3
#: Pages per growth, at least (R25).
SCX_ARENA_GROW_PAGES = 4
U32 = 0xFFFFFFFF

#: m.state keys: per CPU, whether its last kernel-side arena allocation got pages (read by
#: the I16 check of ``scx.alloc``); per arena, the kernel address ranges such allocations
#: returned (read by the I17 chunk check).
GROWTH = "scx.growth"
CLAIMS = "scx.claims"


# -- the arena's kernel API (R5), with the record the oracles read ----------------------------------


def bpf_arena_alloc_pages_sleepable(
    m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int, node: int
) -> Steps:
    """The sleepable allocation for kernel callers: arena_alloc_pages(..., sleepable=true)."""
    p: int = yield from m.k.arena_alloc_pages(m, cpu, arena, uaddr, page_cnt, node, True)
    m.state.setdefault(GROWTH, {})[cpu.id] = bool(p)
    if p:
        lo = arena.kbase + (p & U32)
        m.state.setdefault(CLAIMS, {}).setdefault(arena.index, []).append((lo, lo + page_cnt * PAGE_SIZE))
    return p


def bpf_arena_free_pages_non_sleepable(
    m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int
) -> Steps:
    lo = arena.kbase + (uaddr & U32)
    claims = m.state.get(CLAIMS, {}).get(arena.index, [])
    if (lo, lo + page_cnt * PAGE_SIZE) in claims:
        claims.remove((lo, lo + page_cnt * PAGE_SIZE))
    result = yield from m.k.arena_free_pages(m, cpu, arena, uaddr, page_cnt, False)
    return result


# -- address conversion (I18) --------------------------------------------------------------------------


def scx_arena_to_kaddr(m: Machine, cpu: Cpu, sch: ScxSched, bpf_ptr: int) -> int:
    """internal.h: only the low 32 bits of an arena pointer count, as for the JIT."""
    return sch.arena_kern_base + (bpf_ptr & U32)


def scx_kaddr_to_arena(m: Machine, cpu: Cpu, sch: ScxSched, kern_va: int) -> int:
    """The arena (user) address of a kernel address in the band: the user range never
    crosses a 4 GiB boundary, so it is the upper half of ``user_vm_start`` plus the offset
    (inferred: BPF only uses the low 32 bits, which are exact either way)."""
    assert sch.arena is not None
    return clear_lo32(sch.arena.user_vm_start) + (kern_va - sch.arena_kern_base)


# -- the pool (R23-R26) ---------------------------------------------------------------------------------


def scx_arena_pool_init(m: Machine, cpu: Cpu, sch: ScxSched) -> int:
    if sch.arena is None:
        return 0
    sch.pool = m.k.gen_pool_create(m, cpu, SCX_ARENA_MIN_ORDER)
    return 0


def scx_arena_grow(m: Machine, cpu: Cpu, sch: ScxSched, page_cnt: int) -> Steps:
    """R24: claim ``page_cnt`` arena pages (best fit), add them to the pool at their kernel
    address; if the add fails, give the pages back. Returns 0 or an errno."""
    if sch.arena is None or sch.pool is None:
        return EINVAL
    arena = sch.arena
    p = yield from m.k.bpf_arena_alloc_pages_sleepable(m, cpu, arena, 0, page_cnt, NUMA_NO_NODE)
    if not p:
        return ENOMEM
    kern_vm_start = m.k.bpf_arena_map_kern_vm_start(m, cpu, arena)
    ret: int = yield from m.k.gen_pool_add(m, cpu, sch.pool, kern_vm_start + (p & U32), page_cnt * PAGE_SIZE)
    if ret:
        yield from m.k.bpf_arena_free_pages_non_sleepable(m, cpu, arena, p, page_cnt)
    return ret


def scx_arena_alloc(m: Machine, cpu: Cpu, sch: ScxSched, size: int) -> Steps:
    """R25: may sleep. Loop: allocate; on failure grow and try again. Another CPU can take the
    space a growth added before this CPU's retry, so one retry is not enough. Returns the
    kernel address or 0 (NULL) once a growth fails."""
    if sch.pool is None:
        return 0
    while True:
        kern_va: int = yield from m.k.gen_pool_alloc(m, cpu, sch.pool, size)
        if kern_va:
            return kern_va
        page_cnt = max(SCX_ARENA_GROW_PAGES, (size + PAGE_SIZE - 1) >> PAGE_SHIFT)
        if (yield from m.k.scx_arena_grow(m, cpu, sch, page_cnt)):
            return 0


def scx_arena_free(m: Machine, cpu: Cpu, sch: ScxSched, kern_va: int, size: int) -> Steps:
    if sch.pool is not None and kern_va:
        yield from m.k.gen_pool_free(m, cpu, sch.pool, kern_va, size)


def scx_arena_clear_chunk(m: Machine, cpu: Cpu, pool: GenPool, chunk: Chunk) -> Steps:
    """Free every run of granules still granted in ``chunk``."""
    order = pool.min_alloc_order
    for b, e in set_bit_ranges(chunk.bits, chunk.size >> order):
        yield from m.k.gen_pool_free(m, cpu, pool, chunk.start_addr + (b << order), (e - b) << order)


def scx_arena_pool_destroy(m: Machine, cpu: Cpu, sch: ScxSched) -> Steps:
    """R26: clear what is still granted, chunk by chunk, so gen_pool_destroy() does not BUG.
    The pages stay in the arena until the arena map is destroyed."""
    pool = sch.pool
    if pool is None:
        return
    for chunk in tuple(pool.chunks):  # gen_pool_for_each_chunk(pool, scx_arena_clear_chunk)
        yield from m.k.scx_arena_clear_chunk(m, cpu, pool, chunk)
    m.k.gen_pool_destroy(m, cpu, pool)
    sch.pool = None
    yield "gen_pool_destroy"

"""Seeded sched_ext variants (kernel/sched/ext_arena.c, lib/genalloc.c, the cmask helpers),
one flaw each; :mod:`fuzzkit_seeded.library` names the finding each must lead to."""

from __future__ import annotations

from fuzzkit_scx import cmask_layout
from fuzzkit_scx.arena_pool import SCX_ARENA_GROW_PAGES
from fuzzkit_scx.bitmap import bitmap_find_next_zero_area
from fuzzkit_scx.cmask_layout import CmaskCtx
from fuzzkit_scx.genalloc import GenPool, KernelBug
from fuzzkit_scx.sched import ScxSched

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, Cpu, Machine, Steps
from fuzzkit.variants import Replacement


def scx_arena_alloc_single_retry(m: Machine, cpu: Cpu, sch: ScxSched, size: int) -> Steps:
    """R25 with one retry after growing instead of a loop: another CPU can take the new
    chunk first (I16)."""
    if sch.pool is None:
        return 0
    kern_va: int = yield from m.k.gen_pool_alloc(m, cpu, sch.pool, size)
    if kern_va:
        return kern_va
    page_cnt = max(SCX_ARENA_GROW_PAGES, (size + PAGE_SIZE - 1) >> PAGE_SHIFT)
    if (yield from m.k.scx_arena_grow(m, cpu, sch, page_cnt)):
        return 0
    kern_va = yield from m.k.gen_pool_alloc(m, cpu, sch.pool, size)
    return kern_va


def gen_pool_alloc_unlocked_claim(m: Machine, cpu: Cpu, pool: GenPool, size: int) -> Steps:
    """First fit, then the bits set with a plain store: no cmpxchg notices a concurrent
    claim of the same granules (I17)."""
    order = pool.min_alloc_order
    nbits = (size + (1 << order) - 1) >> order
    for chunk in tuple(pool.chunks):
        end_bit = chunk.size >> order
        start = bitmap_find_next_zero_area(chunk.bits, end_bit, 0, nbits)
        yield "gen_pool_first_fit"
        if start < end_bit:
            chunk.bits |= ((1 << nbits) - 1) << start
            chunk.avail -= nbits << order
            yield "set bits"
            return chunk.start_addr + (start << order)
    return 0


def gen_pool_free_keeping_bits(m: Machine, cpu: Cpu, pool: GenPool, addr: int, size: int) -> Steps:
    """gen_pool_free that gives the bytes back to ``avail`` but leaves the granules' bits
    set: the pool's count and its bitmap disagree (I17)."""
    order = pool.min_alloc_order
    nbits = (size + (1 << order) - 1) >> order
    for chunk in tuple(pool.chunks):
        if chunk.start_addr <= addr <= chunk.end_addr:
            chunk.avail += nbits << order
            yield "gen_pool_free"
            return
    raise KernelBug("gen_pool_free of an address in no chunk")


def cmask_set_unchecked(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    """cmask_set without __cmask_contains(): any cid of the bits[] words is set, padding
    included (I18)."""
    base, nr = yield from cmask_layout.hdr_load(m, cpu, ctx, cm)
    i = cid // 64 - base // 64
    if i < cmask_layout.nr_words(nr):
        word = yield from cmask_layout.bits_load(m, cpu, ctx, cm, i)
        yield from cmask_layout.bits_store(m, cpu, ctx, cm, i, word | 1 << (cid & 63))
    return None


single_retry = Replacement("retry once after growing", {"scx_arena_alloc": scx_arena_alloc_single_retry})
unlocked_claim = Replacement(
    "claim bits with a plain store", {"gen_pool_alloc": gen_pool_alloc_unlocked_claim}
)
free_keeps_bits = Replacement("free leaves the bits set", {"gen_pool_free": gen_pool_free_keeping_bits})
cmask_unchecked = Replacement("no range check in cmask_set", {"cmask_set": cmask_set_unchecked})

"""A design variant as a plugin module: ``scx_arena_alloc`` retrying once after it grows the
pool, instead of looping (R25). Load it by module name, in this process or in the atheris
engine's child: ``fuzzkit fuzz -p variants.scx_single_retry --ops scx.alloc``.

With two CPUs it fails "although the arena had room": CPU 0 grows, CPU 1 takes the new chunk
before CPU 0's single retry."""

from __future__ import annotations

from typing import Any

from fuzzkit_scx.arena_pool import SCX_ARENA_GROW_PAGES
from fuzzkit_scx.sched import ScxSched

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, Cpu, Machine, Steps, hookimpl

REASON = "retry once after growing"


def scx_arena_alloc_single_retry(m: Machine, cpu: Cpu, sch: ScxSched, size: int) -> Steps:
    """Allocate; on failure grow once and try once more."""
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


@hookimpl
def fuzzkit_replace_primitives(replace: Any) -> None:
    replace("scx_arena_alloc", scx_arena_alloc_single_retry, reason=REASON)

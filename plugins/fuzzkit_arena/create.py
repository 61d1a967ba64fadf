"""Arena creation, kernel/bpf/arena.c arena_map_alloc(), as a replaceable primitive.

Outside the plugin's ``FUZZKIT_COVERAGE``, as it was while the op held it: its branches
validate arguments whose every value the op's domains already enumerate, so counting them
would only make atheris chase flag combinations.
"""

from __future__ import annotations

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, Cpu, Machine
from fuzzkit_arena.arena import (
    BPF_F_MMAPABLE,
    BPF_F_NO_USER_CONV,
    BPF_F_SEGV_ON_FAULT,
    GUARD_SZ,
    SZ_4G,
    Arena,
)
from fuzzkit_arena.reference import rt_set


def arena_map_alloc(
    m: Machine, cpu: Cpu, index: int, max_entries: int, flags: int, user_vm_start: int
) -> Arena | str:
    """kernel/bpf/arena.c arena_map_alloc(): the arena, or the errno name it fails with. One
    atomic step, taken by the op once the map is visible."""
    if (
        max_entries == 0
        or not flags & BPF_F_MMAPABLE
        or flags & ~(BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV)
    ):
        return "EINVAL"
    if user_vm_start & (PAGE_SIZE - 1):
        return "EINVAL"
    size = max_entries * PAGE_SIZE
    if size > SZ_4G:
        return "E2BIG"
    if user_vm_start and user_vm_start >> 32 != (user_vm_start + size - 1) >> 32:
        return "ERANGE"
    scratch = m.alloc_page(f"arena{index}:scratch", shared=True)
    if scratch is None:
        return "ENOMEM"
    arena = Arena(m, index, max_entries, flags, user_vm_start, scratch)
    if rt_set(m, arena, 0, max_entries):
        m.free_page(cpu, scratch)
        return "ENOMEM"
    # populate_pgtable_except_pte(): tables for [kbase, kbase + 4G + GUARD_SZ/2) only.
    lo = arena.kbase >> PAGE_SHIFT
    m.populate_tables(lo, lo + ((SZ_4G + GUARD_SZ // 2) >> PAGE_SHIFT))
    return arena

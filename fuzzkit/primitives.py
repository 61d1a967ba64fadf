"""The typed face of ``m.k``: every primitive and fault-path stage the core and the first-party
plugins register, with its signature.

``Machine.k`` is typed by :class:`Primitives`, so mypy rejects a misspelt primitive
(``m.k.ptep_get_and_clar``) or a call with the wrong arguments in plugin code. Parameters are
positional-only: primitives are called positionally, and a replacement may name its
parameters as it likes. Objects a subsystem defines (an arena, a gen_pool, a cmask context)
are ``Any`` here, since the core knows no subsystem; a plugin that registers primitives of
its own extends the Protocol and casts::

    class MyKernel(fuzzkit.Primitives, Protocol):
        def my_primitive(self, m: Machine, cpu: Cpu, x: int, /) -> Steps: ...

    k = cast(MyKernel, m.k)

``tests/core/test_primitives_typed.py`` keeps this list equal to what the plugins register.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fuzzkit.machine.arch import Fault
    from fuzzkit.machine.core import Cpu, Machine, Page, Steps


class Primitives(Protocol):
    """``m.k``: the run's resolved primitives, replacements applied."""

    def apply_range_clear_cb(self, m: Machine, cpu: Cpu, arena: Any, vpage: int, /) -> Steps:
        """R7/R9 atomic clear, scratch skipped"""

    def apply_range_set_cb(self, m: Machine, cpu: Cpu, arena: Any, vpage: int, page: Page, /) -> Steps:
        """R4: install a page into a slot (per revision)"""

    def apply_range_set_scratch_cb(self, m: Machine, cpu: Cpu, arena: Any, vpage: int, /) -> Steps:
        """R15 best-effort scratch install"""

    def apply_to_existing_page_range(self, m: Machine, lo: int, hi: int, /) -> list[int]:
        """walk of the present PTEs of a range (free and destroy, R7, R19)"""

    def arena_alloc_pages(
        self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, page_cnt: int, node: int, sleepable: bool, /
    ) -> Steps:
        """R1-R5 allocation"""

    def arena_free_pages(
        self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, page_cnt: int, sleepable: bool, /
    ) -> Steps:
        """R6-R9 free"""

    def arena_free_worker(self, m: Machine, cpu: Cpu, arena: Any, /) -> Steps:
        """R8 deferred-free worker"""

    def arena_in_recovery_band(self, m: Machine, arena: Any, addr: int, /) -> bool:
        """R15 band test: kbase up to 4 GiB plus the upper half-guard"""

    def arena_map_alloc(
        self, m: Machine, cpu: Cpu, index: int, max_entries: int, flags: int, user_vm_start: int, /
    ) -> Any:
        """arena creation: flags, size, scratch page"""

    def arena_map_free(self, m: Machine, cpu: Cpu, arena: Any, /) -> Steps:
        """R19 destroy"""

    def arena_reserve_pages(self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, page_cnt: int, /) -> Steps:
        """R10 reserve"""

    def arena_vm_fault(self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, /) -> Steps:
        """R11 user fault"""

    def bitmap_clear_ll(self, m: Machine, chunk: Any, start: int, nr: int, /) -> Steps:
        """R23 lock-free clear of a bit run, word by word"""

    def bitmap_set_ll(self, m: Machine, chunk: Any, start: int, nr: int, /) -> Steps:
        """R23 lock-free set of a bit run, word by word"""

    def bpf_arena_alloc_pages_sleepable(
        self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, page_cnt: int, node: int, /
    ) -> Steps:
        """R24 sleepable arena allocation for kernel callers"""

    def bpf_arena_free_pages_non_sleepable(
        self, m: Machine, cpu: Cpu, arena: Any, uaddr: int, page_cnt: int, /
    ) -> Steps:
        """R24 non-sleepable arena free (deferred to the worker)"""

    def bpf_arena_handle_page_fault(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Steps:
        """R15 scratch-page recovery of kernel faults in an arena"""

    def bpf_arena_map_kern_vm_start(self, m: Machine, cpu: Cpu, arena: Any, /) -> int:
        """R21 kernel address of arena offset 0 (kbase)"""

    def bpf_map_put(self, m: Machine, cpu: Cpu, arena: Any, /) -> Steps:
        """R19 drop an arena reference; the last frees it"""

    def bpf_prog_arena(self, m: Machine, cpu: Cpu, prog: Any, /) -> Any:
        """R21 prog->aux->arena or NULL"""

    def bpf_prog_find_from_stack(self, m: Machine, cpu: Cpu, /) -> Any:
        """R15 stack walk: first main program"""

    def bpf_prog_report_arena_violation(
        self, m: Machine, cpu: Cpu, prog: Any, write: bool, offset: int, /
    ) -> None:
        """R18 report to the main program's stderr stream"""

    def bpf_scx_reg_cid(self, m: Machine, cpu: Cpu, st_map: Any, /) -> Steps:
        """R22 exactly one arena, then enable"""

    def bpf_struct_ops_for_each_prog(
        self, m: Machine, cpu: Cpu, st_map: Any, cb: Callable[[Any], int], /
    ) -> int:
        """R21 visit each member program once; non-zero return stops"""

    def bpf_struct_ops_map_free(self, m: Machine, cpu: Cpu, st_map: Any, /) -> Steps:
        """R21 free a struct_ops map and its programs' arena references"""

    def cmask_clear(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, cid: int, /) -> Steps:
        """BPF cmask_clear (cmpxchg loop)"""

    def cmask_init(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, base: int, nr_cids: int, /) -> Steps:
        """BPF cmask_init"""

    def cmask_next_set(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, cid: int, /) -> Steps:
        """BPF cmask_next_set"""

    def cmask_op(self, m: Machine, cpu: Cpu, ctx: Any, dst: int, src: int, op: str, /) -> Steps:
        """BPF cmask_and/or/copy/andnot"""

    def cmask_set(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, cid: int, /) -> Steps:
        """BPF cmask_set (cmpxchg loop)"""

    def cmask_test(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, cid: int, /) -> Steps:
        """BPF cmask_test"""

    def cmask_weight(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, /) -> Steps:
        """BPF cmask_weight"""

    def exception_table_fixup(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Steps:
        """exception-table fixup"""

    def flush_tlb_before_set(self, m: Machine, cpu: Cpu, vpage: int, /) -> Steps:
        """break-before-make flush (arm64), no-op on x86"""

    def flush_tlb_kernel_range(self, m: Machine, cpu: Cpu, lo_vpage: int, hi_vpage: int, /) -> Steps:
        """kernel TLB flush on all CPUs (R7, R17)"""

    def gen_pool_add(self, m: Machine, cpu: Cpu, pool: Any, addr: int, size: int, /) -> Steps:
        """R23 add a chunk at the list head (can fail)"""

    def gen_pool_alloc(self, m: Machine, cpu: Cpu, pool: Any, size: int, /) -> Steps:
        """R23 lock-free search + per-word bitmap_set_ll"""

    def gen_pool_create(self, m: Machine, cpu: Cpu, min_alloc_order: int, /) -> Any:
        """R23 pool with 2^order byte granules"""

    def gen_pool_destroy(self, m: Machine, cpu: Cpu, pool: Any, /) -> None:
        """R23 BUG with outstanding allocations"""

    def gen_pool_first_fit(self, m: Machine, cpu: Cpu, bits: int, size: int, start: int, nr: int, /) -> int:
        """R23 first-fit bitmap search"""

    def gen_pool_free(self, m: Machine, cpu: Cpu, pool: Any, addr: int, size: int, /) -> Steps:
        """R23 clear granules; BUG on unknown/clear"""

    def is_range_tree_set(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: covered, FREE or unavailable?"""

    def kfence(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Steps:
        """KFENCE pool faults"""

    def prefetch_check(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Steps:
        """x86 is_prefetch(): ignore prefetch faults"""

    def ptep_get(self, m: Machine, cpu: Cpu, vpage: int, /) -> Steps:
        """READ_ONCE of a PTE"""

    def ptep_get_and_clear(self, m: Machine, cpu: Cpu, vpage: int, /) -> Steps:
        """atomic PTE exchange with 0 (R16)"""

    def ptep_try_set(self, m: Machine, cpu: Cpu, vpage: int, new: int, /) -> Steps:
        """strict-zero PTE cmpxchg (R16)"""

    def range_tree_clear(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: mark TAKEN"""

    def range_tree_find(self, m: Machine, arena: Any, n: int, /) -> int:
        """range tree: best fit (R2)"""

    def range_tree_set(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: mark FREE"""

    def range_tree_set_unavail(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: mark unavailable (R7, R11)"""

    def range_tree_make_avail(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: unavailable becomes FREE (R7)"""

    def range_tree_remove_unavail(self, m: Machine, arena: Any, pgoff: int, n: int, /) -> int:
        """range tree: unavailable becomes TAKEN (R11)"""

    def scx_arena_alloc(self, m: Machine, cpu: Cpu, sch: Any, size: int, /) -> Steps:
        """R25 allocate, growing in a loop"""

    def scx_arena_clear_chunk(self, m: Machine, cpu: Cpu, pool: Any, chunk: Any, /) -> Steps:
        """R26 free what a chunk still grants"""

    def scx_arena_free(self, m: Machine, cpu: Cpu, sch: Any, kern_va: int, size: int, /) -> Steps:
        """R23 gen_pool_free of a grant"""

    def scx_arena_grow(self, m: Machine, cpu: Cpu, sch: Any, page_cnt: int, /) -> Steps:
        """R24 arena pages into the pool at kernel address"""

    def scx_arena_pool_destroy(self, m: Machine, cpu: Cpu, sch: Any, /) -> Steps:
        """R26 clear chunks, then destroy"""

    def scx_arena_pool_init(self, m: Machine, cpu: Cpu, sch: Any, /) -> int:
        """gen_pool_create(order 3)"""

    def scx_arena_to_kaddr(self, m: Machine, cpu: Cpu, sch: Any, bpf_ptr: int, /) -> int:
        """I18 arena pointer to kernel address"""

    def scx_call_op_set_cmask(self, m: Machine, cpu: Cpu, sch: Any, cpumask: int, /) -> Steps:
        """R27 ops.set_cmask under the rq lock"""

    def scx_cmask_init(self, m: Machine, cpu: Cpu, ctx: Any, cm: int, base: int, nr_cids: int, /) -> Steps:
        """R27 kernel-side cmask init"""

    def scx_cpumask_to_cmask(self, m: Machine, cpu: Cpu, ctx: Any, cpumask: int, cm: int, /) -> Steps:
        """R27 kernel writes a cpumask as a cmask"""

    def scx_disable(self, m: Machine, cpu: Cpu, sch: Any, /) -> Steps:
        """R26 disable: scratch cmasks and pool go"""

    def scx_kaddr_to_arena(self, m: Machine, cpu: Cpu, sch: Any, kern_va: int, /) -> int:
        """I18 kernel address to arena pointer"""

    def scx_set_cmask_scratch_alloc(self, m: Machine, cpu: Cpu, sch: Any, /) -> Steps:
        """R27 per-CPU scratch cmasks"""

    def set_pte_at(self, m: Machine, cpu: Cpu, vpage: int, new: int, /) -> Steps:
        """plain PTE store"""

    def spurious_translation_fault(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Steps:
        """arm64: retry without report when the address translates now"""

    def zap_pages(self, m: Machine, cpu: Cpu, arena: Any, full_uaddr: int, n: int, /) -> Steps:
        """R7 remove a freed range from user mappings"""

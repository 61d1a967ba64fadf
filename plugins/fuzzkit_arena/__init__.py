"""fuzzkit subsystem plugin: BPF arena maps with direct kernel-side access.

Implements rules R1-R20 of the model (docs/model.md; modules: ``arena`` objects and address
arithmetic, ``range_tree``, ``kernel`` paths as named primitives, ``ops``) and registers
oracles for I1, I3-I9, I11-I13, I15, I16 and I19 (``invariants``, with I12's ``reference``
model). I2 and I14 are the core's; I10 is arm64's.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit_arena import create, invariants, kernel
from fuzzkit_arena.ops import OPS

hookimpl = pluggy.HookimplMarker("fuzzkit")

#: Modules whose branches are the kernel paths the atheris engine steers by: not the objects,
#: the ops or the oracles (with their reference model), which decide nothing about the mechanism.
FUZZKIT_COVERAGE = ("fuzzkit_arena.kernel", "fuzzkit_arena.range_tree")


@hookimpl
def fuzzkit_register_revisions(register: Any) -> None:
    # R4: the two versions of apply_range_set_cb().
    register("merged", summary="R4 as merged: -EBUSY over any non-none PTE, a scratched slot too")
    register("fixed", summary="R4 as fixed: replaces the scratch page with break-before-make")


@hookimpl
def fuzzkit_register_primitives(register: Any) -> None:
    k = kernel
    register("arena_map_alloc", create.arena_map_alloc, summary="arena creation: flags, size, scratch page")
    register(
        "arena_in_recovery_band",
        k.arena_in_recovery_band,
        summary="R15 band test: kbase up to 4 GiB plus the upper half-guard",
    )
    register(
        "bpf_prog_report_arena_violation",
        k.bpf_prog_report_arena_violation,
        summary="R18 report to the main program's stderr stream",
    )
    register(
        "apply_to_existing_page_range",
        k.apply_to_existing_page_range,
        summary="walk of the present PTEs of a range (free and destroy, R7, R19)",
    )
    register(
        "apply_range_set_cb",
        k.apply_range_set_cb_merged,
        revision="merged",
        summary="R4 merged: -EBUSY unless pte_none, then set_pte_at",
    )
    register(
        "apply_range_set_cb",
        k.apply_range_set_cb_fixed,
        revision="fixed",
        summary="R4 fixed: ptep_try_set loop replacing scratch with break-before-make",
    )
    register("apply_range_clear_cb", k.apply_range_clear_cb, summary="R7/R9 atomic clear, scratch skipped")
    register(
        "apply_range_set_scratch_cb", k.apply_range_set_scratch_cb, summary="R15 best-effort scratch install"
    )
    register(
        "bpf_prog_find_from_stack", k.bpf_prog_find_from_stack, summary="R15 stack walk: first main program"
    )
    register(
        "flush_tlb_before_set",
        k.flush_tlb_before_set,
        summary="break-before-make flush (arm64), no-op on x86",
    )
    register("is_range_tree_set", k.is_range_tree_set, summary="range tree: covered, FREE or unavailable?")
    register("range_tree_find", k.range_tree_find, summary="range tree: best fit (R2)")
    register("range_tree_clear", k.range_tree_clear, summary="range tree: mark TAKEN")
    register("range_tree_set", k.range_tree_set, summary="range tree: mark FREE")
    register(
        "range_tree_set_unavail", k.range_tree_set_unavail, summary="range tree: mark unavailable (R7, R11)"
    )
    register(
        "range_tree_make_avail", k.range_tree_make_avail, summary="range tree: unavailable becomes FREE (R7)"
    )
    register(
        "range_tree_remove_unavail",
        k.range_tree_remove_unavail,
        summary="range tree: unavailable becomes TAKEN (R11)",
    )
    register("arena_alloc_pages", k.arena_alloc_pages, summary="R1-R5 allocation")
    register("arena_free_pages", k.arena_free_pages, summary="R6-R9 free")
    register("arena_free_worker", k.arena_free_worker, summary="R8 deferred-free worker")
    register("arena_reserve_pages", k.arena_reserve_pages, summary="R10 reserve")
    register("arena_vm_fault", k.arena_vm_fault, summary="R11 user fault")
    register("arena_map_free", k.arena_map_free, summary="R19 destroy")
    register("zap_pages", k.zap_pages, summary="R7 remove a freed range from user mappings")


@hookimpl
def fuzzkit_register_fault_stages(register: Any) -> None:
    register(
        "bpf_arena_handle_page_fault",
        kernel.bpf_arena_handle_page_fault,
        summary="R15 scratch-page recovery of kernel faults in an arena",
    )


@hookimpl
def fuzzkit_register_injection_points(register: Any) -> None:
    register("arena_spin_lock", summary="raw_res_spin_lock_irqsave() fails (deadlock/timeout detection)")
    register("kmalloc_nolock", summary="the allocation's pages array cannot be allocated")
    register("range_tree_node_alloc", summary="a range-tree node cannot be allocated")
    register("free_span_alloc", summary="a deferred free span cannot be allocated (pages leak, R8)")
    register("stream_capacity", summary="a bpf_streams push is dropped (R18)")


@hookimpl
def fuzzkit_register_ops(register: Any) -> None:
    for op_id, executor, args, summary, rules, creates, weight in OPS:
        register(op_id, executor, args=args, summary=summary, rules=rules, creates=creates, weight=weight)


@hookimpl
def fuzzkit_register_invariants(register: Any) -> None:
    for spec_id, name, summary, on, ops in invariants.INVARIANTS:
        register(spec_id, name, summary=summary, on=on, ops=ops)

"""fuzzkit subsystem plugin: sched_ext's kernel-side use of its BPF arena.

Implements SPEC R22-R27 on top of the ``arena`` and ``struct_ops`` plugins:

* ``genalloc``: lib/genalloc.c, the 8-byte-granule first-fit pool with its BUGs (R23), over
  ``bitmap``, lib/bitmap.c's bit arithmetic;
* ``arena_pool``: kernel/sched/ext/arena.c, growing the pool from the arena at kernel
  addresses, the allocation loop, free and destroy (R24-R26);
* ``sched``: cid-form registration needing exactly one arena (R22), the per-CPU scratch
  cmasks and ``ops.set_cmask`` under the rq lock (R27);
* ``cmask``: the kernel's conversion into a struct scx_cmask and the BPF helpers, over
  ``cmask_layout``, the layout and word accessors;
* ``ops`` and ``invariants``: operations, and the oracles for I16 (the loop), I17, I18 and
  the R27 hazard.

Every kernel function above is a named primitive a variant plugin can replace.
"""

from __future__ import annotations

from typing import Any

import pluggy

from fuzzkit_scx import arena_pool, cmask, genalloc, invariants, sched
from fuzzkit_scx.ops import OPS

hookimpl = pluggy.HookimplMarker("fuzzkit")

#: Modules whose branches are the kernel paths the atheris engine steers by. ``cmask_layout``
#: and ``bitmap`` are left out on purpose: accessors and bit arithmetic that run on every
#: cmask access and allocation and decide nothing.
FUZZKIT_COVERAGE = (
    "fuzzkit_scx.genalloc",
    "fuzzkit_scx.arena_pool",
    "fuzzkit_scx.cmask",
    "fuzzkit_scx.sched",
)

#: (name, function, summary) of every primitive, by kernel file.
PRIMITIVES: list[tuple[str, Any, str]] = [
    ("gen_pool_create", genalloc.gen_pool_create, "R23 pool with 2^order byte granules"),
    ("gen_pool_add", genalloc.gen_pool_add, "R23 add a chunk at the list head (can fail)"),
    ("gen_pool_first_fit", genalloc.gen_pool_first_fit, "R23 first-fit bitmap search"),
    ("gen_pool_alloc", genalloc.gen_pool_alloc, "R23 lock-free search + per-word bitmap_set_ll"),
    ("gen_pool_free", genalloc.gen_pool_free, "R23 clear granules; BUG on unknown/clear"),
    ("gen_pool_destroy", genalloc.gen_pool_destroy, "R23 BUG with outstanding allocations"),
    ("scx_arena_pool_init", arena_pool.scx_arena_pool_init, "gen_pool_create(order 3)"),
    ("scx_arena_grow", arena_pool.scx_arena_grow, "R24 arena pages into the pool at kernel address"),
    ("scx_arena_alloc", arena_pool.scx_arena_alloc, "R25 allocate, growing in a loop"),
    ("scx_arena_free", arena_pool.scx_arena_free, "R23 gen_pool_free of a grant"),
    ("scx_arena_pool_destroy", arena_pool.scx_arena_pool_destroy, "R26 clear chunks, then destroy"),
    ("scx_arena_to_kaddr", arena_pool.scx_arena_to_kaddr, "I18 arena pointer to kernel address"),
    ("scx_kaddr_to_arena", arena_pool.scx_kaddr_to_arena, "I18 kernel address to arena pointer"),
    ("bpf_scx_reg_cid", sched.bpf_scx_reg_cid, "R22 exactly one arena, then enable"),
    ("scx_cmask_init", cmask.scx_cmask_init, "R27 kernel-side cmask init"),
    ("scx_cpumask_to_cmask", cmask.scx_cpumask_to_cmask, "R27 kernel writes a cpumask as a cmask"),
    ("cmask_init", cmask.cmask_init, "BPF cmask_init"),
    ("cmask_set", cmask.cmask_set, "BPF cmask_set (cmpxchg loop)"),
    ("cmask_clear", cmask.cmask_clear, "BPF cmask_clear (cmpxchg loop)"),
    ("cmask_test", cmask.cmask_test, "BPF cmask_test"),
    ("cmask_op", cmask.cmask_op, "BPF cmask_and/or/copy/andnot"),
    ("cmask_next_set", cmask.cmask_next_set, "BPF cmask_next_set"),
    ("cmask_weight", cmask.cmask_weight, "BPF cmask_weight"),
    ("bitmap_set_ll", genalloc.bitmap_set_ll, "R23 lock-free set of a bit run, word by word"),
    ("bitmap_clear_ll", genalloc.bitmap_clear_ll, "R23 lock-free clear of a bit run, word by word"),
    (
        "bpf_arena_alloc_pages_sleepable",
        arena_pool.bpf_arena_alloc_pages_sleepable,
        "R24 sleepable arena allocation for kernel callers",
    ),
    (
        "bpf_arena_free_pages_non_sleepable",
        arena_pool.bpf_arena_free_pages_non_sleepable,
        "R24 non-sleepable arena free (deferred to the worker)",
    ),
    ("scx_arena_clear_chunk", arena_pool.scx_arena_clear_chunk, "R26 free what a chunk still grants"),
    ("scx_set_cmask_scratch_alloc", sched.scx_set_cmask_scratch_alloc, "R27 per-CPU scratch cmasks"),
    ("scx_disable", sched.scx_disable, "R26 disable: scratch cmasks and pool go"),
    ("scx_call_op_set_cmask", sched.scx_call_op_set_cmask, "R27 ops.set_cmask under the rq lock"),
]


@hookimpl
def fuzzkit_register_primitives(register: Any) -> None:
    for name, fn, summary in PRIMITIVES:
        register(name, fn, summary=summary)


@hookimpl
def fuzzkit_register_injection_points(register: Any) -> None:
    register("gen_pool_add", summary="gen_pool_add() cannot allocate its chunk (the pages go back, R24)")


@hookimpl
def fuzzkit_register_ops(register: Any) -> None:
    for op_id, executor, args, summary, rules, creates, weight in OPS:
        register(op_id, executor, args=args, summary=summary, rules=rules, creates=creates, weight=weight)


@hookimpl
def fuzzkit_register_invariants(register: Any) -> None:
    for spec_id, name, summary, on, ops in invariants.INVARIANTS:
        register(spec_id, name, summary=summary, on=on, ops=ops)

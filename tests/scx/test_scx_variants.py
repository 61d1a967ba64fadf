"""Design variants of the sched_ext arena code, asked the way a user asks fuzzkit: an
in-process plugin replaces one named primitive. The real code stays clean where the variant
breaks R25, I17 or I18, so each oracle is seen firing."""

from __future__ import annotations

from pathlib import Path

from fuzzkit_scx import cmask_layout
from fuzzkit_scx.arena_pool import SCX_ARENA_GROW_PAGES, U32
from fuzzkit_scx.cmask_layout import CmaskCtx
from fuzzkit_scx.sched import ScxSched
from fuzzkit_seeded.scx import gen_pool_alloc_unlocked_claim
from helpers import Op, program, run
from scx_helpers import REG, alloc, preempted, the_arena, the_sched, variant
from variants import scx_single_retry as retry

from fuzzkit import PAGE_SIZE, Cpu, Machine, RunResult, Steps
from fuzzkit.explore import explore
from fuzzkit.program import load
from fuzzkit.runner import Session

EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"
RACE: list[Op] = [*REG, alloc(16 * 1024), alloc(16 * 1024, cpu=1)]


def assert_finding(r: RunResult, title: str) -> None:
    assert r.finding is not None, f"expected '{title}', the run was clean"
    assert r.finding.title == title


# -- R25: a single retry instead of the loop ---------------------------------------------------------


def single_retry() -> Session:
    """The variant module's replacement (tests/variants/scx_single_retry.py), in-process."""
    return variant(retry.REASON, scx_arena_alloc=retry.scx_arena_alloc_single_retry)


def test_R25_single_retry_fails_although_the_arena_had_room_where_the_loop_does_not(session: Session) -> None:
    # CPU 0 grows; CPU 1 takes the new chunk before CPU 0's retry.
    loop = preempted(session, RACE, call=3, after="gen_pool_add", to=1, cpus=2)
    assert loop.finding is None and loop.results[3] and loop.results[4]
    retry = preempted(single_retry(), RACE, call=3, after="gen_pool_add", to=1, cpus=2)
    assert_finding(retry, "I16 scx_arena_alloc failed although the arena had room in scx.alloc (x86, fixed)")
    assert retry.results[3] == 0 and retry.results[4], "CPU 0's allocation failed, CPU 1's got the space"
    assert retry.finding is not None and retry.finding.replaced == (("scx_arena_alloc", "variant"),)
    arena = the_arena(retry)
    assert arena.nr_pages == 8 and arena.rt.find(SCX_ARENA_GROW_PAGES) >= 0, "8 of 16 pages still free"
    assert not retry.injected


def test_R25_explore_finds_the_single_retry_failure_and_replays_it(session: Session) -> None:
    assert explore(session, program(RACE, cpus=2), max_switches=2).found is None
    e = explore(single_retry(), program(RACE, cpus=2), max_switches=2)
    assert e.found is not None and e.found.finding is not None
    assert e.found.finding.title.startswith("I16 scx_arena_alloc failed although the arena had room")
    replay = run(single_retry(), RACE, cpus=2, switches=e.found.switches)
    assert replay.finding == e.found.finding


def test_R25_grow_race_example_is_clean_with_the_loop_and_a_finding_with_one_retry(session: Session) -> None:
    prog = load(EXAMPLES / "scx_pool_grow_race.json")
    r = session.run(prog)
    assert r.finding is None
    pool = the_sched(r).pool
    assert pool is not None and len(pool.chunks) == 3, "CPU 0 grew twice"
    assert r.results[4] == pool.chunks[1].start_addr, "CPU 1 took CPU 0's first growth"
    r = single_retry().run(prog)
    assert r.finding is not None and r.finding.spec_id == "I16" and r.results[3] == 0


# -- I17 ------------------------------------------------------------------------------------------------


def test_I17_fires_on_overlapping_grants_from_an_unlocked_bitmap_claim(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(64), alloc(64, cpu=1)]
    assert explore(session, program(ops, cpus=2), max_switches=2).found is None
    racy = variant("claim bits with a plain store", gen_pool_alloc=gen_pool_alloc_unlocked_claim)
    e = explore(racy, program(ops, cpus=2), max_switches=2)
    assert e.found is not None and e.found.finding is not None
    assert e.found.finding.title == "I17 overlapping gen_pool grants in scx.alloc (x86, fixed)"
    assert e.found.results[3] == e.found.results[4]


def scx_arena_pool_destroy_without_clearing(m: Machine, cpu: Cpu, sch: ScxSched) -> Steps:
    """Destroy the pool directly, forgetting the outstanding grants."""
    assert sch.pool is not None
    m.k.gen_pool_destroy(m, cpu, sch.pool)
    sch.pool = None
    yield "gen_pool_destroy"


def test_I17_fires_on_the_BUG_of_destroying_a_pool_with_outstanding_grants(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(64), (0, "scx.unreg", {"sched": 0})]
    assert run(session, ops).finding is None, "R26: the real destroy clears the chunks first"
    r = run(variant("skip clearing", scx_arena_pool_destroy=scx_arena_pool_destroy_without_clearing), ops)
    assert_finding(r, "I17 BUG: gen_pool_destroy with outstanding allocations in scx.unreg (x86, fixed)")
    assert r.results[4] == "BUG: gen_pool_destroy with outstanding allocations"


def scx_arena_free_wrong_size(m: Machine, cpu: Cpu, sch: ScxSched, kern_va: int, size: int) -> Steps:
    """Free twice the granted size: the second half was never granted."""
    assert sch.pool is not None
    yield from m.k.gen_pool_free(m, cpu, sch.pool, kern_va, 2 * size)


def test_I17_fires_on_the_BUG_of_freeing_granules_that_are_free(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(64), ("scx.free", {"sched": 0, "grant": 0})]
    assert run(session, ops).finding is None
    r = run(variant("free with the wrong size", scx_arena_free=scx_arena_free_wrong_size), ops)
    assert_finding(r, "I17 BUG: gen_pool_free of granules already free in scx.free (x86, fixed)")


def scx_arena_grow_pages_as_double(m: Machine, cpu: Cpu, sch: ScxSched, page_cnt: int) -> Steps:
    """Add the chunk with twice its size: pages counted in the wrong unit."""
    assert sch.arena is not None and sch.pool is not None
    from fuzzkit_scx.arena_pool import bpf_arena_alloc_pages_sleepable

    p = yield from bpf_arena_alloc_pages_sleepable(m, cpu, sch.arena, 0, page_cnt, -1)
    if not p:
        return -12
    ret: int = yield from m.k.gen_pool_add(
        m, cpu, sch.pool, sch.arena.kbase + (p & U32), 2 * page_cnt * PAGE_SIZE
    )
    return ret


def test_I17_fires_on_a_chunk_larger_than_the_arena_allocation(session: Session) -> None:
    r = run(variant("chunk twice the pages", scx_arena_grow=scx_arena_grow_pages_as_double), REG)
    assert_finding(
        r, "I17 gen_pool chunk outside the arena pages the kernel allocated in scx.reg_cid (x86, fixed)"
    )


# -- I18 ------------------------------------------------------------------------------------------------

MMAPPED: list[Op] = [
    (0, "arena.create", {"max_entries": 16, "user_vm_start": "mmap"}),
    (0, "arena.mmap", {"arena": 0}),
    (0, "struct_ops.load", {"arena": 0}),
    (0, "scx.reg_cid", {"map": 0}),
    (0, "scx.set_cmask", {"sched": 0, "cpumask": 1}),
]


def scx_kaddr_to_arena_keeping_low_bits(m: Machine, cpu: Cpu, sch: ScxSched, kern_va: int) -> int:
    """user_vm_start + offset: right only while user_vm_start is 4 GiB aligned."""
    assert sch.arena is not None
    return sch.arena.user_vm_start + (kern_va - sch.arena_kern_base)


def test_I18_fires_when_the_address_conversion_does_not_round_trip(session: Session) -> None:
    r = run(session, MMAPPED)
    assert r.finding is None and r.results[4] == 1
    assert the_arena(r).user_vm_start & U32, "mmap picked a start with non-zero low bits"
    r = run(variant("forget clear_lo32", scx_kaddr_to_arena=scx_kaddr_to_arena_keeping_low_bits), MMAPPED)
    assert_finding(r, "I18 kernel/arena address conversion does not round-trip in scx.set_cmask (x86, fixed)")


def cmask_weight_one_word_too_many(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int) -> Steps:
    _, nr = yield from cmask_layout.hdr_load(m, cpu, ctx, cm)
    count = 0
    for i in range(cmask_layout.nr_words(nr) + 1):
        count += (yield from cmask_layout.bits_load(m, cpu, ctx, cm, i)).bit_count()
    return count


def test_I18_fires_when_a_helper_reads_past_NR_WORDS(session: Session) -> None:
    ops: list[Op] = [*REG, (0, "scx.set_cmask", {"sched": 0})]
    assert run(session, ops).finding is None
    r = run(variant("<= NR_WORDS", cmask_weight=cmask_weight_one_word_too_many), ops)
    assert_finding(r, "I18 cmask access at or past NR_WORDS(nr_cids) in scx.set_cmask (x86, fixed)")


def cmask_set_unchecked(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    """cmask_set without __cmask_contains(): any cid of the bits[] words is set."""
    base, nr = yield from cmask_layout.hdr_load(m, cpu, ctx, cm)
    i = cid // 64 - base // 64
    if i < cmask_layout.nr_words(nr):
        word = yield from cmask_layout.bits_load(m, cpu, ctx, cm, i)
        yield from cmask_layout.bits_store(m, cpu, ctx, cm, i, word | 1 << (cid & 63))
    return None


def test_I18_fires_when_a_helper_sets_a_padding_bit(session: Session) -> None:
    ops: list[Op] = [
        ("arena.create", {}),
        ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 5}),
        ("scx.cmask_init", {"arena": 0, "pgoff": 5, "slot": 0, "base": 60, "nr_cids": 8}),
        ("scx.cmask_set", {"arena": 0, "pgoff": 5, "slot": 0, "cid": 70}),
    ]
    assert run(session, ops).finding is None
    r = run(variant("no range check", cmask_set=cmask_set_unchecked), ops)
    assert_finding(r, "I18 cmask helper set a cmask padding bit in scx.cmask_set (x86, fixed)")


def scx_cpumask_to_cmask_whole_word(m: Machine, cpu: Cpu, ctx: CmaskCtx, cpumask: int, cm: int) -> Steps:
    """Store the cpumask word as it is, bits past num_possible_cpus() included."""
    yield from m.k.scx_cmask_init(m, cpu, ctx, cm, 0, len(m.cpus))
    yield from cmask_layout.bits_store(m, cpu, ctx, cm, 0, cpumask | 1 << 63)


def test_I18_fires_when_the_kernel_writes_padding(session: Session) -> None:
    ops: list[Op] = [*REG, (0, "scx.set_cmask", {"sched": 0})]
    r = run(variant("unmasked store", scx_cpumask_to_cmask=scx_cpumask_to_cmask_whole_word), ops)
    assert_finding(r, "I18 kernel set a cmask padding bit in scx.set_cmask (x86, fixed)")

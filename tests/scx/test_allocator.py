"""The sched_ext arena allocator: genalloc (R23), growing from the arena at kernel addresses
(R24), the allocation loop under concurrency (R25), pool destroy (R26), and the injected
failures on the way."""

from __future__ import annotations

import pytest
from fuzzkit_scx import genalloc
from fuzzkit_scx.arena_pool import SCX_ARENA_MIN_ORDER
from fuzzkit_scx.bitmap import bitmap_find_next_zero_area, set_bit_ranges
from fuzzkit_scx.genalloc import GenPool, KernelBug
from helpers import ARCHES, Op, drive, program, run, slot_state
from hypothesis import given
from hypothesis import strategies as st
from scx_helpers import REG, alloc, preempted, the_arena, the_sched

from fuzzkit import PAGE_SIZE, Machine
from fuzzkit.explore import explore
from fuzzkit.runner import Session

BASE = 0xFFFFC90000008000


def pool_machine(session: Session) -> Machine:
    return run(session, [("arena.create", {})]).machine


def new_pool(m: Machine, *chunks: int) -> GenPool:
    """A pool with chunks of the given page counts, added in order (the last is the head)."""
    pool = genalloc.gen_pool_create(m, m.cpus[0], SCX_ARENA_MIN_ORDER)
    addr = BASE
    for pages in chunks:
        assert drive(genalloc.gen_pool_add(m, m.cpus[0], pool, addr, pages * PAGE_SIZE)) == 0
        addr += pages * PAGE_SIZE
    return pool


def galloc(m: Machine, pool: GenPool, size: int) -> int:
    addr: int = drive(m.k.gen_pool_alloc(m, m.cpus[0], pool, size))
    return addr


def gfree(m: Machine, pool: GenPool, addr: int, size: int) -> None:
    drive(m.k.gen_pool_free(m, m.cpus[0], pool, addr, size))


# -- R23: genalloc ----------------------------------------------------------------------------------


def test_R23_sizes_round_up_to_the_8_byte_granule(session: Session) -> None:
    m = pool_machine(session)
    pool = new_pool(m, 1)
    assert [galloc(m, pool, n) - BASE for n in (1, 8, 9, 3)] == [0, 8, 16, 32]
    assert pool.chunks[0].avail == PAGE_SIZE - 40


def test_R23_size_zero_and_no_fit_return_zero(session: Session) -> None:
    m = pool_machine(session)
    pool = new_pool(m, 1)
    assert galloc(m, pool, 0) == 0
    assert galloc(m, pool, PAGE_SIZE + 1) == 0
    assert galloc(m, pool, PAGE_SIZE) == BASE and galloc(m, pool, 8) == 0


def test_R23_first_fit_within_a_chunk_and_the_newest_chunk_first(session: Session) -> None:
    m = pool_machine(session)
    pool = new_pool(m, 1, 1)  # chunk at BASE, then the head chunk at BASE + 4K
    head = BASE + PAGE_SIZE
    a, b, c = (galloc(m, pool, 64) for _ in range(3))
    assert (a, b, c) == (head, head + 64, head + 128)
    gfree(m, pool, a, 64)
    gfree(m, pool, b, 64)
    assert galloc(m, pool, 24) == head, "first fit: the lowest hole that fits"
    assert galloc(m, pool, 128) == head + 192, "the 104-byte hole left is too small"
    # 3880 bytes are available in the head chunk, but no run of 3840: the next chunk.
    assert galloc(m, pool, PAGE_SIZE - 256) == BASE


@pytest.mark.parametrize(
    ("addr", "size", "says"),
    [
        (BASE + 2 * PAGE_SIZE, 8, "address in no chunk"),
        (BASE + 64, 8, "already free"),
        (BASE + PAGE_SIZE - 8, 16, "past the end"),
    ],
)
def test_R23_bad_free_is_a_bug(session: Session, addr: int, size: int, says: str) -> None:
    m = pool_machine(session)
    pool = new_pool(m, 1)
    galloc(m, pool, 64)
    galloc(m, pool, PAGE_SIZE - 64)
    gfree(m, pool, BASE + 64, PAGE_SIZE - 64)
    with pytest.raises(KernelBug, match=says):
        gfree(m, pool, addr, size)


def test_R23_destroy_with_outstanding_grants_is_a_bug_and_without_is_not(session: Session) -> None:
    m = pool_machine(session)
    pool = new_pool(m, 1, 1)
    addr = galloc(m, pool, 8)
    with pytest.raises(KernelBug, match="outstanding allocations"):
        genalloc.gen_pool_destroy(m, m.cpus[0], pool)
    pool = new_pool(m, 1, 1)
    gfree(m, pool, galloc(m, pool, 8), 8)
    genalloc.gen_pool_destroy(m, m.cpus[0], pool)
    assert pool.destroyed and addr


def _reference_first_fit(bits: int, size: int, start: int, nr: int) -> int | None:
    for index in range(start, size - nr + 1):
        if not (bits >> index) & ((1 << nr) - 1):
            return index
    return None


@given(
    bits=st.integers(0, (1 << 96) - 1),
    start=st.integers(0, 95),
    nr=st.integers(1, 40),
)
def test_R23_first_fit_search_matches_a_plain_scan(bits: int, start: int, nr: int) -> None:
    found = bitmap_find_next_zero_area(bits, 96, start, nr)
    expected = _reference_first_fit(bits, 96, start, nr)
    assert found == expected if expected is not None else found > 96 - nr


@given(bits=st.integers(0, (1 << 130) - 1))
def test_R23_set_bit_ranges_cover_exactly_the_set_bits(bits: int) -> None:
    rebuilt = 0
    for b, e in set_bit_ranges(bits, 130):
        assert b < e
        rebuilt |= ((1 << (e - b)) - 1) << b
    assert rebuilt == bits


def test_R23_concurrent_claim_of_the_same_run_retries_the_search(session: Session) -> None:
    # CPU 0 finds granule 0 free, CPU 1 claims it before CPU 0's bitmap_set_ll: CPU 0's
    # cmpxchg sees the bit, gives back nothing and searches again.
    ops: list[Op] = [*REG, alloc(8), alloc(8, cpu=1)]
    r = preempted(session, ops, call=3, after="gen_pool_first_fit", to=1, cpus=2)
    assert r.finding is None
    mine, theirs = r.results[3], r.results[4]
    assert mine and theirs and mine != theirs
    labels = [t.label for t in r.trace or [] if t.cpu == 0 and t.call == 3]
    assert labels.count("gen_pool_first_fit") == 2 and "set_bits_ll busy" in labels


# -- R24: growing the pool from the arena -------------------------------------------------------


@pytest.mark.parametrize("user_vm_start", ["fixed", "mmap"])
def test_R24_grow_adds_arena_pages_at_their_kernel_address(session: Session, user_vm_start: str) -> None:
    ops: list[Op] = [
        ("arena.create", {"max_entries": 16, "user_vm_start": user_vm_start}),
        ("arena.mmap", {"arena": 0}),
        ("struct_ops.load", {"arena": 0}),
        ("scx.reg_cid", {"map": 0}),
    ]
    r = run(session, ops)
    assert r.finding is None and r.results[3] == 0
    arena, pool = the_arena(r), the_sched(r).pool
    assert pool is not None and len(pool.chunks) == 1
    chunk = pool.chunks[0]
    # Best fit put the 4 pages at offset 0: kbase + (u32)(user address of offset 0).
    assert chunk.start_addr == arena.kaddr(arena.uaddr(0))
    assert chunk.size == 4 * PAGE_SIZE
    assert [slot_state(r, 0, p) for p in range(5)] == ["REAL"] * 4 + ["EMPTY"]
    assert arena.nr_pages == 4
    # The per-CPU scratch cmask is the first grant of that chunk.
    assert the_sched(r).scratch == [chunk.start_addr]


def test_R24_growth_is_at_least_four_pages_and_covers_large_requests(session: Session) -> None:
    r = run(session, [*REG, alloc(4 * PAGE_SIZE + 1)])
    pool = the_sched(r).pool
    assert pool is not None and [c.size // PAGE_SIZE for c in pool.chunks] == [5, 4]
    assert r.results[3] == pool.chunks[0].start_addr


def test_R24_gen_pool_add_failure_gives_the_pages_back(session: Session) -> None:
    r = run(
        session, [*REG, alloc(16 * 1024), ("arena.free_worker", {"arena": 0})], inject=[("gen_pool_add", 2)]
    )
    assert r.finding is None, "the failure is injected: no I16"
    assert r.results[3] == 0
    pool = the_sched(r).pool
    assert pool is not None and len(pool.chunks) == 1
    # bpf_arena_free_pages_non_sleepable(): queued, then freed by the worker.
    assert r.results[4] == 1
    assert [slot_state(r, 0, p) for p in range(4, 8)] == ["EMPTY"] * 4
    assert the_arena(r).nr_pages == 4 and the_arena(r).rt.is_set(4, 4) == 0


def test_R24_page_allocation_failure_in_grow_fails_the_allocation(session: Session) -> None:
    # alloc_page #1 is the scratch page, #2-#5 the registration's growth: #6 is this growth's.
    r = run(session, [*REG, alloc(16 * 1024)], inject=[("alloc_page", 6)])
    assert r.finding is None and r.results[3] == 0
    pool = the_sched(r).pool
    assert pool is not None and len(pool.chunks) == 1 and pool.chunks[0].avail < 4 * PAGE_SIZE
    assert the_arena(r).nr_pages == 4 and the_arena(r).rt.is_set(4, 12) == 0, "R3: rolled back"


def test_R24_registration_fails_cleanly_when_the_arena_has_no_room(session: Session) -> None:
    ops: list[Op] = [
        ("arena.create", {"max_entries": 3}),
        ("struct_ops.load", {"arena": 0}),
        ("scx.reg_cid", {"map": 0}),
        ("scx.reg_cid", {"map": 0}),
    ]
    r = run(session, ops)
    assert r.finding is None and r.results[2] == "ENOMEM" and r.results[3] == "ENOMEM"
    assert the_arena(r).nr_pages == 0


# -- R25: the allocation loop ---------------------------------------------------------------------


def test_R25_alloc_loops_when_another_cpu_consumes_grown_space(session: Session) -> None:
    # CPU 0 grows the pool by 4 pages for a 16 KiB allocation; before its retry CPU 1 takes
    # the whole new chunk. CPU 0 must grow again, not give up.
    ops: list[Op] = [*REG, alloc(16 * 1024), alloc(16 * 1024, cpu=1)]
    r = preempted(session, ops, call=3, after="gen_pool_add", to=1, cpus=2)
    assert r.finding is None
    pool = the_sched(r).pool
    assert pool is not None and len(pool.chunks) == 3
    newest, grown_first = pool.chunks[0], pool.chunks[1]
    assert r.results[4] == grown_first.start_addr, "CPU 1 consumed CPU 0's growth"
    assert r.results[3] == newest.start_addr, "CPU 0 grew a second time and got it"
    labels = [t.label for t in r.trace or [] if t.cpu == 0 and t.call == 3]
    assert labels.count("gen_pool_add") == 2


@pytest.mark.parametrize("arch", ARCHES)
def test_R25_real_loop_is_clean_in_every_two_cpu_schedule(session: Session, arch: str) -> None:
    ops: list[Op] = [*REG, alloc(16 * 1024), alloc(16 * 1024, cpu=1)]
    e = explore(session, program(ops, arch=arch, cpus=2), max_switches=2)
    assert e.exhaustive and e.found is None and e.runs > 100


def test_R25_growth_fails_only_when_the_arena_is_full(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(16 * 1024), alloc(16 * 1024), alloc(16 * 1024), alloc(16 * 1024)]
    r = run(session, ops)
    assert r.finding is None
    assert [bool(r.results[i]) for i in range(3, 7)] == [True, True, True, False]
    assert the_arena(r).nr_pages == 16


# -- R26: pool destroy ------------------------------------------------------------------------------


def test_R26_destroy_clears_outstanding_grants_and_keeps_the_pages(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(64), alloc(16 * 1024), alloc(8), ("scx.free", {"sched": 0, "grant": 2})]
    r = run(session, [*ops, ("scx.unreg", {"sched": 0})])
    assert r.finding is None and r.results[7] == 0
    sch = the_sched(r)
    assert sch.dead and sch.pool is None
    assert the_arena(r).nr_pages == 8 and [slot_state(r, 0, p) for p in range(8)] == ["REAL"] * 8
    # Only map destroy returns them.
    tail: list[Op] = [("struct_ops.unload", {"map": 0}), ("arena.destroy", {"arena": 0})]
    r = run(session, [*ops, ("scx.unreg", {"sched": 0}), *tail])
    assert r.finding is None and the_arena(r).destroyed
    assert all(p.freed for p in r.machine.pages.values() if p.owner == "arena0")


def test_R26_unreg_waits_for_an_allocation_in_flight(session: Session) -> None:
    ops: list[Op] = [*REG, alloc(16 * 1024), (1, "scx.unreg", {"sched": 0})]
    r = preempted(session, ops, call=3, after="gen_pool_add", to=1, cpus=2)
    assert r.finding is None
    assert r.results[4] == "deferred" and r.results[3]
    sch = the_sched(r)
    assert sch.dead and sch.pool is None, "the allocation, last out, destroyed the pool"
    assert r.machine.state["scx.root"] is None


def test_R23_freed_grant_is_reused(session: Session) -> None:
    r = run(session, [*REG, alloc(40), alloc(40), ("scx.free", {"sched": 0, "grant": 0}), alloc(40)])
    assert r.finding is None
    assert r.results[5] == r.results[3] != r.results[4]
    assert r.results[5] == the_sched(r).grants[1][0]


@pytest.mark.parametrize(
    "ops",
    [
        [*REG, alloc(8), alloc(8, cpu=1)],
        [*REG, alloc(64), ("scx.free", {"sched": 0, "grant": 0}), alloc(64, cpu=1)],
        [
            *REG,
            alloc(64),
            (1, "scx.free", {"sched": 0, "grant": 0}),
            alloc(4096),
            (1, "scx.unreg", {"sched": 0}),
        ],
    ],
    ids=["alloc-alloc", "free-alloc", "free-alloc-unreg"],
)
def test_I17_real_allocator_is_clean_in_every_two_cpu_schedule(session: Session, ops: list[Op]) -> None:
    e = explore(session, program(ops, cpus=2), max_switches=3)
    assert e.exhaustive and e.found is None and e.runs > 40

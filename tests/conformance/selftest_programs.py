"""The kernel's own arena selftests as fuzzkit programs, each with the outcome the selftest
asserts and where it comes from.

Each :class:`Scenario` is one selftest program (tools/testing/selftests/bpf/progs/...)
rewritten as ops: the BPF program's loads and stores are ``arena.prog_access`` (JITed,
exception-table protected), the kfuncs it calls are ``arena.alloc``/``free``/``reserve``
and ``arena.kernel_access`` (a kfunc dereferencing arena memory). Where the selftest's
arena has globals in its first page, the scenario allocates that page first, as libbpf's
loader does. ``expect`` maps an op's index to the result the selftest checks; a callable
takes the arena (addresses depend on where it was placed). ``reports`` lists the stderr
stream's lines the selftest matches, in order, as (access, address).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fuzzkit_arena.arena import MAX_PAGES, MMAP_BASE, Arena, clear_lo32
from helpers import ARCHES, REVISIONS, Op, slot_state

from fuzzkit import PAGE_SIZE, RunResult

Expected = int | str | Callable[[Arena], int]

PROGS = "tools/testing/selftests/bpf/progs/"


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    ops: list[Op]
    expect: dict[int, Expected]
    reports: tuple[tuple[str, Callable[[Arena], int]], ...] = ()
    arches: tuple[str, ...] = ARCHES
    revisions: tuple[str, ...] = REVISIONS
    #: Steps that differ from the selftest's own program, and why.
    note: str = ""
    #: Further checks of the finished run: (what the selftest relies on, predicate).
    checks: tuple[tuple[str, Callable[[RunResult], bool]], ...] = field(default=())


# -- op builders ---------------------------------------------------------------------------------


def create(max_entries: int, user_vm_start: str = "fixed") -> Op:
    return ("arena.create", {"max_entries": max_entries, "user_vm_start": user_vm_start})


MMAP: Op = ("arena.mmap", {"arena": 0})


def alloc(page_cnt: int = 1, *, at: int | None = None) -> Op:
    where = {"addr": "any"} if at is None else {"addr": "fixed", "pgoff": at}
    return ("arena.alloc", {"arena": 0, **where, "page_cnt": page_cnt})


def free(pgoff: int, page_cnt: int = 1) -> Op:
    return ("arena.free", {"arena": 0, "pgoff": pgoff, "page_cnt": page_cnt})


def reserve(pgoff: int, page_cnt: int) -> Op:
    return ("arena.reserve", {"arena": 0, "pgoff": pgoff, "page_cnt": page_cnt})


def store(pgoff: int, value: int, off: int = 0, ctx: str = "main") -> Op:
    return (
        "arena.prog_access",
        {"arena": 0, "pgoff": pgoff, "off": off, "write": True, "value": value, "ctx": ctx},
    )


def load(pgoff: int, off: int = 0, ctx: str = "main") -> Op:
    return ("arena.prog_access", {"arena": 0, "pgoff": pgoff, "off": off, "write": False, "ctx": ctx})


def kfunc_load(pgoff: int) -> Op:
    return ("arena.kernel_access", {"arena": 0, "pgoff": pgoff, "insn": "load", "stack": "main"})


def kfunc_store(pgoff: int, value: int) -> Op:
    return (
        "arena.kernel_access",
        {"arena": 0, "pgoff": pgoff, "insn": "store", "stack": "main", "value": value},
    )


MEM_USAGE: Op = ("arena.mem_usage", {"arena": 0})


def at(pgoff: int) -> Callable[[Arena], int]:
    """The user address of slot ``pgoff`` (what an allocation there returns)."""
    return lambda a: a.uaddr(pgoff)


#: One page below slot 0: the page offset whose user address wraps the low 32 bits there.
BELOW = MAX_PAGES - 1
#: A load that faults returns "fixup": the BPF register reads 0 (R12).
FIXUP = "fixup"


# -- verifier_arena.c: a 2-page arena ending at a 4 GiB boundary ------------------------------------

VA = PROGS + "verifier_arena.c"
#: map_extra (1 << 44 | ~0u - 2 pages + 1): the arena's two pages are the last below 4 GiB.
VA_ARENA = create(2, "fixed_below_4g")

VERIFIER_ARENA = [
    Scenario(
        "basic_alloc1",
        VA + ": basic_alloc1",
        [
            VA_ARENA,
            alloc(),  # 1 page1
            store(0, 1),
            alloc(),  # 3 page2
            store(1, 2),
            alloc(),  # 5 no_page
            load(0),
            load(1),
            free(1),  # 8
            load(0),
            load(1),  # 10: use-after-free reads 0
            alloc(),  # 11 page3
            store(1, 3),
            load(0),
        ],
        {1: at(0), 3: at(1), 5: 0, 6: 1, 7: 2, 8: "freed", 9: 1, 10: FIXUP, 11: at(1), 13: 1},
        reports=(("READ", at(1)),),
    ),
    Scenario(
        "basic_alloc2",
        VA + ": basic_alloc2",
        [
            VA_ARENA,
            alloc(2),  # 1 page1, page2 = page1 + 1
            store(0, 1),
            store(1, 2),
            store(2, 3),  # page3: past the arena, the low 32 bits wrap to 0
            store(BELOW, 4),  # page4 = page1 - PAGE_SIZE
            load(0),
            load(1),
            load(2),
            load(BELOW),
            free(0, 2),  # 10
            load(0),
            load(1),
            load(2),
            load(BELOW),
        ],
        {1: at(0), 6: 1, 7: 2, 8: FIXUP, 9: FIXUP, 10: "freed", 11: FIXUP, 12: FIXUP, 13: FIXUP, 14: FIXUP},
        reports=(
            ("WRITE", lambda a: clear_lo32(a.user_vm_start)),
            ("WRITE", lambda a: a.user_vm_start - PAGE_SIZE),
            ("READ", lambda a: clear_lo32(a.user_vm_start)),
            ("READ", lambda a: a.user_vm_start - PAGE_SIZE),
            ("READ", at(0)),
            ("READ", at(1)),
            ("READ", lambda a: clear_lo32(a.user_vm_start)),
            ("READ", lambda a: a.user_vm_start - PAGE_SIZE),
        ),
        note="page3 (slot 2) is user_vm_start + 2 pages = the 4 GiB boundary: its low 32 bits are 0.",
    ),
    Scenario(
        "basic_alloc3",
        VA + ": basic_alloc3",
        [VA_ARENA, alloc(2)],
        {1: at(0)},
    ),
    Scenario(
        "basic_reserve1",
        VA + ": basic_reserve1",
        [VA_ARENA, alloc(), reserve(1, 1), alloc(at=1), alloc()],
        {1: at(0), 2: 0, 3: 0, 4: 0},
    ),
    Scenario(
        "basic_reserve2",
        VA + ": basic_reserve2",
        [VA_ARENA, reserve(0, 1), alloc(at=0)],
        {1: 0, 2: 0},
    ),
    Scenario(
        "reserve_twice",
        VA + ": reserve_twice",
        [VA_ARENA, reserve(0, 1), reserve(0, 1)],
        {1: 0, 2: -16},
        note="kernel/bpf/arena.c arena_reserve_pages(): a reserved page is not FREE, so -EBUSY.",
    ),
    Scenario(
        "reserve_invalid_region",
        VA + ": reserve_invalid_region",
        # NULL has the low 32 bits of user_vm_start + 2 pages (the 4 GiB boundary): slot 2.
        [VA_ARENA, reserve(2, 3), reserve(0, 3), reserve(0, 4096)],
        {1: -22, 2: -22, 3: -22},
    ),
]

# -- verifier_arena_large.c: a 4 GiB arena placed by mmap -------------------------------------------

VAL = PROGS + "verifier_arena_large.c"
#: The skeleton mmaps the arena; the globals occupy its first page (slot 0).
VAL_ARENA: list[Op] = [create(MAX_PAGES, "mmap"), MMAP, alloc(at=0)]
PAGE_CNT = 8

VERIFIER_ARENA_LARGE = [
    Scenario(
        "big_alloc1",
        VAL + ": big_alloc1",
        [
            *VAL_ARENA,
            alloc(),  # 3 page1 = base (slot 1)
            store(1, 1),
            alloc(at=1 + MAX_PAGES - 2),  # 5 page2 = base + ARENA_SIZE - 2 pages: the last slot
            store(MAX_PAGES - 1, 2),
            alloc(at=1 + MAX_PAGES - 1),  # 7 no_page: wraps to slot 0, the globals
            load(1),
            load(MAX_PAGES - 1),
            free(1),  # 10
            load(MAX_PAGES - 1),
            load(1),  # 12: use-after-free reads 0
            alloc(),  # 13 page3 == page1
            store(1, 3),
            load(MAX_PAGES - 1),
            load(2),  # page1 + PAGE_SIZE
            load(0),  # page1 - PAGE_SIZE: the globals page, REAL
            load(MAX_PAGES),  # page2 + PAGE_SIZE: wraps to slot 0
            load(MAX_PAGES - 2),  # page2 - PAGE_SIZE
        ],
        {
            3: at(1),
            5: at(MAX_PAGES - 1),
            7: 0,
            8: 1,
            9: 2,
            11: 2,
            12: FIXUP,
            13: at(1),
            15: 2,
            16: FIXUP,
            17: 0,
            18: 0,
            19: FIXUP,
        },
        reports=(("READ", at(1)), ("READ", at(2)), ("READ", at(MAX_PAGES - 2))),
    ),
    Scenario(
        "access_reserved",
        VAL + ": access_reserved",
        [*VAL_ARENA, reserve(16384, 4), store(16384, 0x5A), *(load(16384 + i) for i in range(4))],
        {3: 0, 4: FIXUP, 5: FIXUP, 6: FIXUP, 7: FIXUP, 8: FIXUP},
        reports=(("WRITE", at(16384)), *(("READ", at(16384 + i)) for i in range(4))),
        note="Reserved pages behave as unallocated ones: the store is dropped, loads read 0.",
    ),
    Scenario(
        "request_partially_reserved",
        VAL + ": request_partially_reserved",
        [*VAL_ARENA, reserve(4096 + 3, 4), alloc(5, at=4096)],
        {3: 0, 4: 0},
    ),
    Scenario(
        "free_reserved",
        VAL + ": free_reserved",
        [*VAL_ARENA, alloc(2, at=32768), reserve(32770, 2), free(32769, 2), alloc(2, at=32769)],
        {3: at(32768), 4: 0, 5: "freed", 6: at(32769)},
    ),
    Scenario(
        "big_alloc2",
        VAL + ": big_alloc2",
        [
            *VAL_ARENA,
            alloc(),  # 3 base (slot 1)
            free(1),
            *(alloc() for _ in range(PAGE_CNT)),  # 5..12: sequential from base
            *(free(1 + i) for i in range(0, PAGE_CNT, 2)),  # 13..16: the even pages
            *(alloc() for _ in range(PAGE_CNT // 2)),  # 17..20: into the gaps
            alloc(),  # 21: above the first PAGE_CNT pages
        ],
        {
            3: at(1),
            **{5 + i: at(1 + i) for i in range(PAGE_CNT)},
            # Best fit among equal one-page gaps takes the newest (R2): the last freed first.
            **{17 + i: at(1 + PAGE_CNT - 2 - 2 * i) for i in range(PAGE_CNT // 2)},
            21: at(1 + PAGE_CNT),
        },
        note=f"{PAGE_CNT} pages instead of 100; the pair-freeing pass is left out.",
    ),
    Scenario(
        "big_alloc3",
        VAL + ": big_alloc3",
        [
            *VAL_ARENA,
            alloc(2051),  # 3: more than one kmalloc_nolock() batch of 1024 pointers
            *(store(1 + i, 123) for i in (0, 1023, 1024, 2048, 2050)),
            *(load(1 + i) for i in (0, 1023, 1024, 2048, 2050)),
            MEM_USAGE,  # 14
            free(1, 1025),
            MEM_USAGE,  # 16
        ],
        {
            3: at(1),
            **{9 + k: 123 for k in range(5)},
            14: (1 + 2051) * PAGE_SIZE,
            15: "freed",
            16: 1027 * PAGE_SIZE,
        },
        note="Five of the 2051 pages are written and read back; memory usage (R20) counts the globals page.",
    ),
]


# -- arena_kfunc.c: kfuncs taking arena pointers --------------------------------------------------------

AK = PROGS + "arena_kfunc.c"
#: Two pages; arena_pad, a global, occupies page 0.
AK_ARENA: list[Op] = [create(2, "mmap"), MMAP, alloc(at=0)]

ARENA_KFUNC = [
    Scenario(
        "arena_arg_forms",
        AK + ": arena_arg_forms",
        # bpf_kfunc_arena_arg_test() returns *val and increments it: a kernel load and store.
        [*AK_ARENA, alloc(), store(1, 41), kfunc_load(1), kfunc_store(1, 42), load(1)],
        {3: at(1), 5: 41, 7: 42},
    ),
    Scenario(
        "arena_arg_unpopulated",
        AK + ": arena_arg_unpopulated",
        # val + PAGE_SIZE is past the 2-page arena but inside its band: recovered (R15).
        [*AK_ARENA, alloc(), kfunc_load(2), free(1)],
        {3: at(1), 4: 0, 5: "freed"},
        reports=(("READ", at(2)),),
        checks=(("the scratch page backs the unpopulated page", lambda r: slot_state(r, 0, 2) == "SCRATCH"),),
    ),
]


# -- arena_stream.c: what the stderr stream says -----------------------------------------------------------

AS = PROGS + "arena_stream.c"
AS_ARENA: list[Op] = [create(1, "mmap"), MMAP]
#: An arena pointer whose low 32 bits are 0xdeadbeef, as the subprogram and the timer callback
#: store through: the page offset that wraps the mmap-placed arena's low 32 bits to 0xdeadb000,
#: plus byte 0xeef.
DEADBEEF_PGOFF = ((0xDEADB000 - MMAP_BASE) & 0xFFFFFFFF) // PAGE_SIZE


def deadbeef(a: Arena) -> int:
    return clear_lo32(a.user_vm_start) + 0xDEADBEEF


ARENA_STREAM = [
    Scenario(
        "stream_arena_write_fault",
        AS + ": stream_arena_write_fault",
        # *(u32 *)(user_vm_start + 0x7fff) = 1: page 7 of a 1-page arena, byte 0xfff.
        [*AS_ARENA, store(7, 1, off=0xFFF)],
        {2: FIXUP},
        reports=(("WRITE", lambda a: a.user_vm_start + 0x7FFF),),
    ),
    Scenario(
        "stream_arena_read_fault",
        AS + ": stream_arena_read_fault",
        [*AS_ARENA, load(7, off=0xFFF)],
        {2: FIXUP},
        reports=(("READ", lambda a: a.user_vm_start + 0x7FFF),),
    ),
    Scenario(
        "stream_arena_subprog_fault",
        AS + ": stream_arena_subprog_fault",
        [*AS_ARENA, store(DEADBEEF_PGOFF, 1, off=0xEEF, ctx="subprog")],
        {2: FIXUP},
        reports=(("WRITE", deadbeef),),
        note="The subprogram's fault is reported to its main program's stream.",
    ),
    Scenario(
        "stream_arena_callback_fault",
        AS + ": stream_arena_callback_fault",
        [*AS_ARENA, store(DEADBEEF_PGOFF, 1, off=0xEEF, ctx="timer_cb")],
        {2: FIXUP},
        reports=(("WRITE", deadbeef),),
        note="A bpf_timer callback runs with no frame of its main program below; its fault is "
        "still reported to the main program's stream (aux->main_prog_aux).",
    ),
]

SCENARIOS: list[Scenario] = [*VERIFIER_ARENA, *VERIFIER_ARENA_LARGE, *ARENA_KFUNC, *ARENA_STREAM]

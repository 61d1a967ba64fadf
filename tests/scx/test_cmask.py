"""struct scx_cmask in arena memory (R27): the layout, the BPF-side helpers, the kernel's
set_cmask under the rq lock, and the hazard of the scheduler freeing the page the kernel
writes to. The real code keeps I18 in all of it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from fuzzkit_scx import cmask_layout
from fuzzkit_scx.cmask import CMASK_MAX_WORDS
from fuzzkit_scx.cmask_layout import CmaskCtx, nr_words, padding_mask
from helpers import ARCHES, Op, run, slot_state
from scx_helpers import REG, kword, the_arena, the_sched, variant

from fuzzkit import Cpu, Machine, Steps
from fuzzkit.cli import main as fuzzkit_main
from fuzzkit.program import load
from fuzzkit.runner import Session

EXAMPLES = Path(__file__).resolve().parents[2] / "corpora" / "examples"

#: An arena with page 5 allocated: cmasks live at (page 5, word slot).
ARENA: list[Op] = [
    ("arena.create", {"max_entries": 16}),
    ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 5}),
]


def at(slot: int = 0, **args: Any) -> dict[str, Any]:
    return {"arena": 0, "pgoff": 5, "slot": slot, **args}


def cmask_words(r: Any, slot: int, n: int) -> list[int]:
    """Words 0.. of the cmask at (page 5, slot), read from memory."""
    arena = the_arena(r)
    k = arena.kaddr(arena.uaddr(5)) + slot * 8
    return [kword(r, k + 8 * i) for i in range(n)]


# -- layout -----------------------------------------------------------------------------------------


def test_R27_nr_words_covers_the_active_range_plus_head_misalignment() -> None:
    assert [nr_words(n) for n in (0, 1, 64, 65, 128, 8192)] == [1, 2, 2, 3, 3, 129]
    assert nr_words(0xFFFFFFFF) == 0x4000000 + 1, "computed in u64: the +63 does not wrap"
    assert nr_words(8192) == CMASK_MAX_WORDS


def test_R27_padding_is_everything_outside_base_to_base_plus_nr_cids_on_the_64_cid_grid() -> None:
    # base 60, 8 cids: cids 60..63 in word 0, 64..67 in word 1, word 2 all tail padding.
    assert padding_mask(60, 8, 0) == (1 << 60) - 1
    assert padding_mask(60, 8, 1) == ~0xF & ((1 << 64) - 1)
    assert padding_mask(60, 8, 2) == (1 << 64) - 1
    assert padding_mask(128, 64, 0) == 0, "a word-aligned base has no head padding"


def test_R27_cmask_init_writes_header_and_zeroes_nr_words(session: Session) -> None:
    ops = [*ARENA, ("arena.prog_access", {"arena": 0, "pgoff": 5, "off": 32, "write": True, "value": 0xFF})]
    r = run(session, [*ops, ("scx.cmask_init", at(base=60, nr_cids=8))])
    assert r.finding is None
    # word 0: base | nr_cids << 32, word 1: alloc_words, then bits[0..NR_WORDS(8)).
    assert cmask_words(r, 0, 5) == [60 | 8 << 32, 2, 0, 0, 0xFF]


def test_R27_bits_sit_on_the_global_64_cid_grid(session: Session) -> None:
    r = run(
        session,
        [
            *ARENA,
            ("scx.cmask_init", at(base=60, nr_cids=8)),
            ("scx.cmask_set", at(cid=61)),
            ("scx.cmask_set", at(cid=65)),
            ("scx.cmask_set", at(cid=68)),  # outside [60, 68): ignored
            ("scx.cmask_set", at(cid=59)),
        ],
    )
    assert r.finding is None
    bits = cmask_words(r, 0, 4)[2:]
    assert bits == [1 << 61, 1 << 1], "cid 65 is bit 1 of bits[1], whatever the base"


def test_R27_set_clear_test_next_set_weight(session: Session) -> None:
    ops: list[Op] = [
        *ARENA,
        ("scx.cmask_init", at(base=60, nr_cids=70)),
        *(("scx.cmask_set", at(cid=c)) for c in (61, 100, 129)),
        ("scx.cmask_test", at(cid=100)),
        ("scx.cmask_test", at(cid=101)),
        ("scx.cmask_weight", at()),
        ("scx.cmask_next_set", at(cid=0)),
        ("scx.cmask_next_set", at(cid=62)),
        ("scx.cmask_next_set", at(cid=101)),
        ("scx.cmask_clear", at(cid=100)),
        ("scx.cmask_next_set", at(cid=62)),
        ("scx.cmask_weight", at()),
        ("scx.cmask_next_set", at(cid=130)),
    ]
    r = run(session, ops)
    assert r.finding is None
    got = [r.results[i] for i in range(6, 16)]
    assert got == [True, False, 3, 61, 100, 129, None, 129, 2, 130]


def test_R27_next_set_returns_the_end_when_nothing_is_set(session: Session) -> None:
    r = run(session, [*ARENA, ("scx.cmask_init", at(base=3, nr_cids=5)), ("scx.cmask_next_set", at(cid=0))])
    assert r.results[3] == 8


@pytest.mark.parametrize(
    ("op", "expected"), [("and", [10, 61]), ("or", [10, 61, 62, 65]), ("copy", [10, 61, 65])]
)
def test_R27_and_or_copy_only_touch_the_intersection(session: Session, op: str, expected: list[int]) -> None:
    dst, src = at(0), at(16)
    ops: list[Op] = [
        *ARENA,
        ("scx.cmask_init", {**dst, "base": 0, "nr_cids": 128}),
        *(("scx.cmask_set", {**dst, "cid": c}) for c in (10, 61, 62)),
        ("scx.cmask_init", {**src, "base": 60, "nr_cids": 8}),
        *(("scx.cmask_set", {**src, "cid": c}) for c in (61, 65)),
        (f"scx.cmask_{op}", {**dst, "src_pgoff": 5, "src_slot": 16}),
        *(("scx.cmask_test", {**dst, "cid": c}) for c in range(128)),
    ]
    r = run(session, ops)
    assert r.finding is None
    first = len(ops) - 128
    assert [c for c in range(128) if r.results[first + c]] == expected


def test_R12_helpers_on_an_unallocated_cmask_read_zero_and_report(session: Session) -> None:
    r = run(
        session,
        [
            ("arena.create", {}),
            ("scx.cmask_init", {"arena": 0, "pgoff": 9, "slot": 0, "base": 0, "nr_cids": 8}),
            ("scx.cmask_set", {"arena": 0, "pgoff": 9, "slot": 0, "cid": 3}),
            ("scx.cmask_weight", {"arena": 0, "pgoff": 9, "slot": 0}),
        ],
    )
    assert r.finding is None and r.results[3] == 0
    assert slot_state(r, 0, 9) == "EMPTY", "R12: a BPF access never changes the PTE"
    lines = the_arena(r).prog.stream.lines
    assert lines and all("unmapped address 0x7e0000009000" in line for line in lines)


def test_I18_real_helpers_keep_padding_zero_across_bases_and_sizes(session: Session) -> None:
    for base, nr in itertools.product((0, 1, 63, 64, 100), (0, 1, 63, 64, 65, 130)):
        ops: list[Op] = [
            *ARENA,
            ("scx.cmask_init", at(0, base=base, nr_cids=nr)),
            ("scx.cmask_init", at(32, base=0, nr_cids=256)),
            *(("scx.cmask_set", at(32, cid=c)) for c in (0, 63, 64, 100, 191, 255)),
            *(("scx.cmask_set", at(0, cid=c)) for c in (base - 1, base, base + nr - 1, base + nr, 300)),
            ("scx.cmask_or", at(0, src_pgoff=5, src_slot=32)),
            ("scx.cmask_clear", at(0, cid=base)),
            ("scx.cmask_copy", at(0, src_pgoff=5, src_slot=32)),
        ]
        r = run(session, [op for op in ops if op[1].get("cid", 0) >= 0])
        assert r.finding is None, (base, nr, r.finding)
        words = cmask_words(r, 0, 2 + nr_words(nr))
        assert words[0] == base | nr << 32 and words[1] == nr_words(nr)
        for i, w in enumerate(words[2:]):
            assert w & padding_mask(base, nr, i) == 0, (base, nr, i)


def plain_set(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    """__cmask_set(): a plain read-modify-write, racy between CPUs."""
    base, nr = yield from cmask_layout.hdr_load(m, cpu, ctx, cm)
    if base <= cid < base + nr:
        i = cid // 64 - base // 64
        word = yield from cmask_layout.bits_load(m, cpu, ctx, cm, i)
        yield from cmask_layout.bits_store(m, cpu, ctx, cm, i, word | 1 << (cid & 63))
    return None


def both_bits_in_every_interleaving(session: Session) -> list[tuple[int, int]]:
    """Run CPU 1's cmask_set(5) inside CPU 0's cmask_set(3) at every point and for every
    length; return the (preempt after, run for) schedules that lost a bit."""
    ops: list[Op] = [*ARENA, ("scx.cmask_init", at(base=0, nr_cids=64)), (0, "scx.cmask_set", at(cid=3))]
    ops.append((1, "scx.cmask_set", at(cid=5)))
    plain = run(session, ops, cpus=2, trace=True)
    mine = [t.step for t in plain.trace or [] if t.call == 3]
    theirs = len([t for t in plain.trace or [] if t.call == 4])
    lost = []
    for after, length in itertools.product(range(len(mine)), range(1, theirs + 1)):
        first = mine[0] + after
        r = run(session, ops, cpus=2, switches=[(first, 1), (first + length, 0)])
        if cmask_words(r, 0, 3)[2] != 1 << 3 | 1 << 5:
            lost.append((after, length))
    return lost


def test_R27_cmask_set_is_atomic_between_cpus(session: Session) -> None:
    assert both_bits_in_every_interleaving(session) == []
    racy = variant("__cmask_set instead of the cmpxchg loop", cmask_set=plain_set)
    assert both_bits_in_every_interleaving(racy), "the plain read-modify-write loses a bit"


# -- set_cmask (R27) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R27_set_cmask_builds_the_per_cpu_cmask_and_hands_the_arena_address(
    session: Session, arch: str
) -> None:
    ops: list[Op] = [
        *REG,
        (1, "scx.set_cmask", {"sched": 0, "cpumask": 0b10}),
        (0, "scx.set_cmask", {"sched": 0}),
    ]
    r = run(session, ops, arch=arch, cpus=2, trace=True)
    assert r.finding is None
    assert r.results[3] == 1 and r.results[4] == 1, "the program read back one cid"
    sch, arena = the_sched(r), the_arena(r)
    for cpu, mask in ((0, 0b01), (1, 0b10)):
        k = sch.scratch[cpu]
        assert arena.kbase <= k < arena.kbase + (1 << 32), "a kernel address in the arena band"
        assert [kword(r, k + 8 * i) for i in range(4)] == [0 | 2 << 32, 2, mask, 0]
    assert sch.scratch[0] != sch.scratch[1]
    # The rq lock is held around the kernel's stores and the program's reads.
    labels = [t.label for t in r.trace or [] if t.call == 3]
    assert labels[0] == "lock rq1.lock" and "store" in labels and "load" in labels
    m = r.machine
    uaddr = m.k.scx_kaddr_to_arena(m, m.cpus[1], sch, sch.scratch[1])
    assert arena.user_vm_start <= uaddr < arena.user_vm_end
    assert m.k.scx_arena_to_kaddr(m, m.cpus[1], sch, uaddr) == sch.scratch[1]


@pytest.mark.parametrize(("layout", "expected"), [("A,-", 1), ("-,A", None), ("_,A", "no-op")])
def test_R27_set_cmask_runs_the_member_program(session: Session, layout: str, expected: Any) -> None:
    # "-,A": the member has no arena and cannot dereference the cmask; "_,A": no set_cmask
    # member, so the kernel does not build the cmask at all.
    ops: list[Op] = [
        ("arena.create", {}),
        ("struct_ops.load", {"arena": 0, "layout": layout}),
        ("scx.reg_cid", {"map": 0}),
        ("scx.set_cmask", {"sched": 0}),
    ]
    r = run(session, ops, trace=True)
    assert r.finding is None and r.results[3] == expected
    stores = [t for t in r.trace or [] if t.call == 3 and t.label == "store"]
    assert bool(stores) == (expected != "no-op")


SCHEDULER_FREES_THE_PAGE: list[Op] = [
    *REG,
    ("arena.free", {"arena": 0, "pgoff": 0, "page_cnt": 4}),
    ("scx.set_cmask", {"sched": 0, "cpumask": 1}),
]


@pytest.mark.parametrize("arch", ARCHES)
def test_R27_hazard_set_cmask_after_the_scheduler_freed_the_page_oopses(session: Session, arch: str) -> None:
    r = run(session, SCHEDULER_FREES_THE_PAGE, arch=arch, trace=True)
    f = r.finding
    assert f is not None and f.spec_id == "R27" and f.op == "scx.set_cmask"
    assert f.title == (
        "R27 kernel write to freed arena page oopsed, no BPF program on the stack"
        f" in scx.set_cmask ({arch}, fixed)"
    )
    assert r.results[4] == "oops" and slot_state(r, 0, 0) == "EMPTY"
    notes = [n for t in r.trace or [] if t.call == 4 for n in t.notes]
    assert any(n.startswith(f"fault {the_sched(r).scratch[0]:#x}") and n.endswith(": oops") for n in notes)


def test_R27_hazard_needs_the_free(session: Session) -> None:
    r = run(
        session, [*REG, ("arena.free", {"arena": 0, "pgoff": 4, "page_cnt": 4}), SCHEDULER_FREES_THE_PAGE[-1]]
    )
    assert r.finding is None and r.results[4] == 1


def test_R27_hazard_example_replays_the_finding(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / "scx_set_cmask_after_free.json"
    r = session.run(load(path))
    assert r.finding is not None and r.finding.spec_id == "R27"
    assert fuzzkit_main(["replay", "--no-trace", str(path)]) == 1
    assert "FINDING: R27 kernel write to freed arena page oopsed" in capsys.readouterr().out

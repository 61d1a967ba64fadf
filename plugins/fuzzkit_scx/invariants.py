"""sched_ext's oracles: I17 (gen_pool), I18 (cmask), I16 for the allocation loop, and the
R27 hazard. All run when an ``scx.*`` operation completes and look only at what it did.

The R27 check is not a broken invariant of the model: the kernel store into a pool page the
scheduler freed faults with no BPF program on the stack, and I6 says that fault is not
recoverable, so the kernel oopses. That is the hazard R27 asks the fuzzer to reach, and it
is reported under R27's id.
"""

from __future__ import annotations

from typing import Any

from fuzzkit import Call, Cpu, Machine, Violation
from fuzzkit_scx.arena_pool import CLAIMS, GROWTH
from fuzzkit_scx.cmask_layout import CMASK_LOG, cmask_size, nr_words, padding_mask
from fuzzkit_scx.genalloc import Chunk
from fuzzkit_scx.sched import ScxSched

#: m.state key: chunks already checked against the arena claims.
CHECKED = "scx.checked_chunks"

HELPER_OPS = tuple(
    f"scx.cmask_{h}" for h in ("init", "set", "clear", "test", "next_set", "weight", "and", "or", "copy")
)
SCHED_OPS = ("scx.reg_cid", "scx.alloc", "scx.free", "scx.set_cmask", "scx.unreg")


def _sched(m: Machine, call: Call, result: Any) -> ScxSched | None:
    if call.spec.id == "scx.reg_cid":
        return m.handle("sched", result) if isinstance(result, int) and not isinstance(result, bool) else None
    sch: ScxSched | None = m.handle("sched", call.args["sched"])
    return sch


# -- I17 -------------------------------------------------------------------------------------------------


def i17_no_bug(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """Every ``scx`` program is a well-formed free/destroy sequence: a BUG is a finding."""
    if isinstance(result, str) and result.startswith("BUG: "):
        raise Violation("I17", result)


def i17_grants(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """A new grant overlaps no other outstanding one and lies inside a chunk of the pool.
    Outstanding grants are the scheduler's own records: a free takes its grant off them
    before it clears a bit, so a concurrent allocation of the space is no overlap."""
    op = call.spec.id
    if not (op == "scx.reg_cid" or (op == "scx.alloc" and isinstance(result, int) and result)):
        return  # no new grant to judge
    sch = _sched(m, call, result)
    if sch is None or sch.dead or sch.pool is None:
        return
    size = (cmask_size(len(m.cpus)) + 7) & ~7
    outstanding = [(k, k + size) for k in sch.scratch]
    outstanding += [(k, k + ((n + 7) & ~7)) for k, n in sch.grants]
    if op == "scx.alloc":
        new = [(result, result + ((call.args["size"] + 7) & ~7))]
    else:
        new = outstanding[: len(sch.scratch)]
    # Plain loops rather than sum()/any() over generator expressions: this runs after every
    # allocation, and a generator costs a frame per grant and chunk.
    chunks = sch.pool.chunks
    for lo, hi in new:
        overlapping = 0
        for a, b in outstanding:
            if a < hi and lo < b:
                overlapping += 1
        if overlapping > 1:  # the grant itself is among the outstanding ones
            raise Violation("I17", "overlapping gen_pool grants")
        for c in chunks:
            if c.start_addr <= lo and hi - 1 <= c.end_addr:
                break
        else:
            raise Violation("I17", "gen_pool grant outside every chunk")


def i17_chunks(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """Every chunk lies inside pages a kernel-side arena allocation returned, at their kernel
    addresses (R24)."""
    sch = _sched(m, call, result)
    if sch is None or sch.pool is None or sch.arena is None:
        return
    checked: set[Chunk] = m.state.setdefault(CHECKED, set())
    claims = m.state.get(CLAIMS, {}).get(sch.arena.index, [])
    for chunk in sch.pool.chunks:
        if chunk in checked:
            continue
        for lo, hi in claims:
            if lo <= chunk.start_addr and chunk.end_addr < hi:
                break
        else:
            raise Violation("I17", "gen_pool chunk outside the arena pages the kernel allocated")
        checked.add(chunk)


# -- I16: the allocation loop (R25) ------------------------------------------------------------------


def i16_alloc_gave_up_with_room(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """``scx_arena_alloc`` may return NULL only when a growth failed. NULL with no injected
    failure while its last growth got pages (or with no growth tried) means it gave up
    although the arena had room: another CPU took what it grew and it did not loop."""
    if result != 0 or len(m.injected) != cpu.injected_at_start:
        return
    sch = _sched(m, call, result)
    if sch is None or sch.dead:
        return
    if m.state.get(GROWTH, {}).get(cpu.id) is not False:
        raise Violation("I16", "scx_arena_alloc failed although the arena had room")


# -- I18 ------------------------------------------------------------------------------------------------


def i18_cmask(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    """Judge what the operation did to cmasks: no word at or past NR_WORDS(nr_cids) touched,
    no padding bit turned on, and the kernel address handed over as an arena address converts
    back to itself."""
    logs = m.state.get(CMASK_LOG)
    log = logs.pop(cpu.id, None) if logs is not None else None
    if not log:
        return
    # cm -> (base, nr_cids, NR_WORDS(nr_cids)) of its last header access.
    known: dict[int, tuple[int, int, int]] = {}
    for entry in log:
        kind = entry[0]
        if kind == "hdr":
            known[entry[1]] = (entry[2], entry[3], nr_words(entry[3]))
            continue
        if kind == "addr":
            _, sch, kern_va, uaddr = entry
            if m.k.scx_arena_to_kaddr(m, cpu, sch, uaddr) != kern_va:
                raise Violation("I18", "kernel/arena address conversion does not round-trip")
            continue
        header = known.get(entry[1])
        if header is None:
            continue
        base, nr, words = header
        index = entry[2]
        if index >= words:
            raise Violation("I18", "cmask access at or past NR_WORDS(nr_cids)")
        if kind == "load":
            continue
        # Only bits this store turns on count: a BPF program may scribble over its own
        # arena memory, pool pages included, and a read-modify-write keeps what it found.
        turned_on = entry[4] & ~entry[3]
        if turned_on and turned_on & padding_mask(base, nr, index):
            who = "kernel" if kind == "kstore" else "cmask helper"
            raise Violation("I18", f"{who} set a cmask padding bit")


# -- the R27 hazard --------------------------------------------------------------------------------------


def r27_kernel_oops(m: Machine, cpu: Cpu, call: Call, result: Any) -> None:
    if result == "oops":
        raise Violation("R27", "kernel write to freed arena page oopsed, no BPF program on the stack")


#: (spec id, name, summary, events, ops the op_done check needs)
INVARIANTS: list[tuple[str, str, str, dict[str, Any], tuple[str, ...]]] = [
    ("I17", "no_bug", "no BUG on a well-formed free/destroy sequence", {"op_done": i17_no_bug}, SCHED_OPS),
    (
        "I17",
        "grants",
        "gen_pool grants never overlap and lie inside a chunk",
        {"op_done": i17_grants},
        ("scx.reg_cid", "scx.alloc"),
    ),
    (
        "I17",
        "chunks",
        "chunks lie inside kernel-side arena allocations, at kernel addresses",
        {"op_done": i17_chunks},
        ("scx.reg_cid", "scx.alloc"),
    ),
    (
        "I16",
        "scx_alloc_loop",
        "scx_arena_alloc fails only when the arena cannot grow",
        {"op_done": i16_alloc_gave_up_with_room},
        ("scx.alloc",),
    ),
    (
        "I18",
        "cmask",
        "cmask padding stays zero, no access past NR_WORDS, addresses round-trip",
        {"op_done": i18_cmask},
        ("scx.reg_cid", "scx.set_cmask", *HELPER_OPS),
    ),
    (
        "R27",
        "set_cmask_oops",
        "the kernel's cmask store to a page the scheduler freed (an oops) is reported",
        {"op_done": r27_kernel_oops},
        ("scx.reg_cid", "scx.set_cmask"),
    ),
]

"""struct scx_cmask in arena memory: the kernel's conversion from a cpumask (R27) and the
BPF-side helpers of tools/sched_ext/include/scx/cid.bpf.h, each a named primitive.

Layout (little-endian on x86 and arm64; memory is modelled in 8-byte words)::

    word 0        base (u32) | nr_cids (u32) << 32
    word 1        alloc_words (u32), then 4 bytes of padding before the u64 array
    word 2 + i    bits[i]

``bits`` sit on a global 64-cid grid: ``bits[0]`` holds cids ``[base & ~63, (base & ~63) +
64)``, so two cmasks with different bases still combine word by word. ``NR_WORDS(n) =
(n + 63) / 64 + 1`` covers a head misaligned by up to 63 cids. Bits outside ``[base, base +
nr_cids)`` in those words are head and tail padding and stay zero (I18). Arithmetic is u32,
as in the C code, and every loop is bounded by ``CMASK_MAX_WORDS`` like ``bpf_for``.

Every access goes through :class:`CmaskCtx`: a BPF helper's loads and stores are JITed arena
accesses (exception table, R12/R13), the kernel's are plain kernel accesses whose fault goes
down the arch fault path with no BPF program on the stack (R27: an oops). The context also
records what each access touched, for the I18 oracle to judge after the operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fuzzkit_arena.arena import Arena, BpfProg
from fuzzkit_arena.kernel import report_arena_violation

from fuzzkit import FIXUP, PAGE_SHIFT, PAGE_SIZE, Cpu, Machine, Steps

U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
#: Storage cap of helper loops: NR_CPUS 8192 plus one word of head misalignment.
CMASK_MAX_WORDS = 129
#: cmpxchg attempts before cmask_set/clear give up with scx_bpf_error().
CMASK_CAS_TRIES = 1 << 23
#: Byte offset of bits[0] (u64 alignment after three u32 fields).
BITS_OFFSET = 16


def nr_words(nr_cids: int) -> int:
    """CMASK_NR_WORDS(): computed in u64 so the +63 does not wrap, then cast to u32."""
    return ((nr_cids + 63) // 64 + 1) & U32


def cmask_size(nr_cids: int) -> int:
    """struct_size(cmask, bits, NR_WORDS(nr_cids))."""
    return BITS_OFFSET + 8 * nr_words(nr_cids)


def genmask(h: int, lo: int) -> int:
    return (U64 << lo) & (U64 >> (63 - h))


def padding_mask(base: int, nr_cids: int, index: int) -> int:
    """Bits of ``bits[index]`` outside the active range ``[base, base + nr_cids)``."""
    lo = max(base & 63, 64 * index)
    hi = min((base & 63) + nr_cids, 64 * index + 64)
    active = genmask(hi - 1 - 64 * index, lo - 64 * index) if hi > lo else 0
    return U64 & ~active


class Oops(Exception):
    """A kernel access ended in an oops (or arm64 die): the task is gone."""


@dataclass
class CmaskCtx:
    """How one operation reaches cmasks in ``arena``: as BPF program ``prog`` or, with
    ``prog`` None, as the kernel. ``log`` records header knowledge and bits accesses:
    ``("hdr", cm, base, nr_cids)``, ``("load", cm, i)``, ``("store", cm, i, old, new)``
    (``"kstore"`` for the kernel's), ``("addr", sched, kern_va, arena_addr)``."""

    arena: Arena
    prog: BpfProg | None
    log: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def kbase(self) -> int:
        return self.arena.kbase

    def kaddr(self, ptr: int) -> int:
        """Where an access to ``ptr`` lands: the kernel dereferences its kernel addresses
        directly; BPF code reaches an arena pointer at ``kbase + (u32)ptr``."""
        return ptr if self.prog is None else self.kbase + (ptr & U32)


def peek(m: Machine, cpu: Cpu, ctx: CmaskCtx, ptr: int) -> int:
    """The word at ``ptr`` as this CPU would read it now, without an access (no events, no
    TLB fill): what a store is about to overwrite."""
    vpage = ctx.kaddr(ptr) >> PAGE_SHIFT
    page = cpu.tlb.get(vpage) or m.page_of(m.ptes.get(vpage, 0))
    return page.data.get((ptr & 0xFFF) >> 3, 0) if page is not None else 0


def access(m: Machine, cpu: Cpu, ctx: CmaskCtx, ptr: int, write: bool, value: int = 0) -> Steps:
    """One word at ``ptr``: a JITed BPF access (R12: an empty slot is reported, reads 0,
    drops the store) or a kernel access (a fault it cannot recover is an :class:`Oops`)."""
    addr = ctx.kaddr(ptr)
    if ctx.prog is None:
        outcome, v = yield from m.kernel_access(cpu, addr, write, value)
        if outcome != "ok":
            raise Oops(outcome)
        return v
    outcome, v = yield from m.kernel_access(cpu, addr, write, value, extable=True, how="bpf")
    if outcome == FIXUP:
        report_arena_violation(m, cpu, ctx.prog, write, (addr & ~(PAGE_SIZE - 1)) - ctx.kbase)
    return v


def hdr_load(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int) -> Steps:
    """(base, nr_cids)."""
    v = yield from access(m, cpu, ctx, cm, False)
    base, nr = v & U32, (v >> 32) & U32
    ctx.log.append(("hdr", cm, base, nr))
    return base, nr


def hdr_store(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, base: int, nr_cids: int) -> Steps:
    yield from access(m, cpu, ctx, cm, True, base | nr_cids << 32)
    ctx.log.append(("hdr", cm, base, nr_cids))
    yield from access(m, cpu, ctx, cm + 8, True, nr_words(nr_cids))


def bits_load(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, i: int) -> Steps:
    i &= U32
    ctx.log.append(("load", cm, i))
    v: int = yield from access(m, cpu, ctx, cm + BITS_OFFSET + 8 * i, False)
    return v


def bits_store(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, i: int, value: int) -> Steps:
    i &= U32
    ptr = cm + BITS_OFFSET + 8 * i
    ctx.log.append(("kstore" if ctx.prog is None else "store", cm, i, peek(m, cpu, ctx, ptr), value))
    yield from access(m, cpu, ctx, ptr, True, value)


def bits_cmpxchg(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, i: int, old: int, new: int) -> Steps:
    """__sync_val_compare_and_swap on bits[i]: one atomic step when the slot translates; else
    the access takes the fault path like a load and the cmpxchg is retried or, fixed up,
    skipped (returning 0)."""
    i &= U32
    addr = ctx.kaddr(cm + BITS_OFFSET + 8 * i)
    vpage = addr >> PAGE_SHIFT
    while True:
        page = m.translate(cpu, vpage)
        if page is not None:
            cur = m.touch(cpu, page, vpage, addr, False, 0, "bpf")
            if cur == old:
                ctx.log.append(("store", cm, i, cur, new))
                m.touch(cpu, page, vpage, addr, True, new, "bpf")
            else:
                ctx.log.append(("load", cm, i))
            yield "cmpxchg"
            return cur
        outcome, _ = yield from m.kernel_access(cpu, addr, False, extable=True, how="bpf")
        if outcome == FIXUP:
            assert ctx.prog is not None
            report_arena_violation(m, cpu, ctx.prog, True, (addr & ~(PAGE_SIZE - 1)) - ctx.kbase)
            return 0


# -- the kernel side (R27) --------------------------------------------------------------------------


def scx_cmask_init(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, base: int, nr_cids: int) -> Steps:
    """Header, then every word of bits[] zeroed."""
    yield from hdr_store(m, cpu, ctx, cm, base, nr_cids)
    for i in range(nr_words(nr_cids)):
        yield from bits_store(m, cpu, ctx, cm, i, 0)


def scx_cpumask_to_cmask(m: Machine, cpu: Cpu, ctx: CmaskCtx, cpumask: int, cm: int) -> Steps:
    """Initialize ``cm`` to the full cid space ``[0, num_possible_cpus())`` and set the bit of
    each cid whose CPU is in ``cpumask`` (cid = cpu: the default mapping of a flat machine).
    The sets are plain read-modify-writes: the rq lock makes the per-CPU cmask exclusive."""
    nr = len(m.cpus)
    yield from m.k.scx_cmask_init(m, cpu, ctx, cm, 0, nr)
    for cid in range(nr):
        if cpumask >> cid & 1:
            word = yield from bits_load(m, cpu, ctx, cm, cid // 64)
            yield from bits_store(m, cpu, ctx, cm, cid // 64, word | 1 << (cid & 63))


# -- the BPF side (cid.bpf.h) ------------------------------------------------------------------------


def _contains(base: int, nr: int, cid: int) -> bool:
    return base <= cid < ((base + nr) & U32)


def cmask_init(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, base: int, nr_cids: int) -> Steps:
    """Tight storage: alloc_words = NR_WORDS(nr_cids), all of bits[] zeroed."""
    yield from hdr_store(m, cpu, ctx, cm, base, nr_cids)
    for i in range(min(nr_words(nr_cids), CMASK_MAX_WORDS)):
        yield from bits_store(m, cpu, ctx, cm, i, 0)


def cmask_test(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    base, nr = yield from hdr_load(m, cpu, ctx, cm)
    if not _contains(base, nr, cid):
        return False
    word = yield from bits_load(m, cpu, ctx, cm, cid // 64 - base // 64)
    return bool(word >> (cid & 63) & 1)


def _update_bit(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int, set_it: bool) -> Steps:
    """The cmpxchg loop of cmask_set/cmask_clear (the x86 JIT has no fetch-or/and on arena
    pointers). Returns whether it gave up (scx_bpf_error)."""
    base, nr = yield from hdr_load(m, cpu, ctx, cm)
    if not _contains(base, nr, cid):
        return False
    i, bit = cid // 64 - base // 64, 1 << (cid & 63)
    for _ in range(CMASK_CAS_TRIES):
        old = yield from bits_load(m, cpu, ctx, cm, i)
        if bool(old & bit) == set_it:
            return False
        new = old | bit if set_it else old & ~bit
        if (yield from bits_cmpxchg(m, cpu, ctx, cm, i, old, new)) == old:
            return False
    return True


def cmask_set(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    gave_up = yield from _update_bit(m, cpu, ctx, cm, cid, True)
    return "scx_bpf_error" if gave_up else None


def cmask_clear(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    gave_up = yield from _update_bit(m, cpu, ctx, cm, cid, False)
    return "scx_bpf_error" if gave_up else None


def cmask_op(m: Machine, cpu: Cpu, ctx: CmaskCtx, dst: int, src: int, op: str) -> Steps:
    """and / or / copy / andnot of ``src`` into ``dst``, only over the intersection of their
    ranges; dst bits outside it keep their values (cmask_copy does not clear them)."""
    d_base, d_nr = yield from hdr_load(m, cpu, ctx, dst)
    s_base, s_nr = yield from hdr_load(m, cpu, ctx, src)
    lo = max(d_base, s_base)
    hi = min((d_base + d_nr) & U32, (s_base + s_nr) & U32)
    if lo >= hi:
        return None
    lo_word, hi_word = lo // 64, (hi - 1) // 64
    for i in range(CMASK_MAX_WORDS):
        w = lo_word + i
        if w > hi_word:
            break
        mask = U64
        if w == lo_word:
            mask &= genmask(63, lo & 63)
        if w == hi_word:
            mask &= genmask((hi - 1) & 63, 0)
        di, si = w - d_base // 64, w - s_base // 64
        dv = yield from bits_load(m, cpu, ctx, dst, di)
        sv = yield from bits_load(m, cpu, ctx, src, si)
        rv = {"and": dv & sv, "or": dv | sv, "andnot": dv & ~sv & U64, "copy": sv}[op]
        yield from bits_store(m, cpu, ctx, dst, di, (dv & ~mask) | (rv & mask))
    return None


def cmask_next_set(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, cid: int) -> Steps:
    """The smallest set cid in ``[cid, base + nr_cids)``, else ``base + nr_cids``."""
    base, nr = yield from hdr_load(m, cpu, ctx, cm)
    end = (base + nr) & U32
    wbase = base // 64
    last_wi = (((end - 1) & U32) // 64 - wbase) & U32
    cid = max(cid, base)
    if cid >= end:
        return end
    start_wi, start_bit = cid // 64 - wbase, cid & 63
    for i in range(CMASK_MAX_WORDS):
        wi = start_wi + i
        if wi > last_wi:
            break
        word = yield from bits_load(m, cpu, ctx, cm, wi)
        if i == 0:
            word &= genmask(63, start_bit)
        if word:
            found = ((wbase + wi) * 64 + (word & -word).bit_length() - 1) & U32
            return end if found >= end else found
    return end


def cmask_weight(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int) -> Steps:
    """Popcount of every word up to NR_WORDS: correct because padding bits are zero (I18)."""
    _, nr = yield from hdr_load(m, cpu, ctx, cm)
    count = 0
    for i in range(min(nr_words(nr), CMASK_MAX_WORDS)):
        count += (yield from bits_load(m, cpu, ctx, cm, i)).bit_count()
    return count

"""struct scx_cmask routines: the kernel's conversion from a cpumask (R27) and the BPF-side
helpers of tools/sched_ext/include/scx/cid.bpf.h, each a named primitive.

The layout, the address arithmetic and the word accessors live in
:mod:`fuzzkit_scx.cmask_layout`, outside atheris's coverage; the decisions are here. Every loop
is bounded by ``CMASK_MAX_WORDS`` like ``bpf_for``.
"""

from __future__ import annotations

from fuzzkit import Cpu, Machine, Steps
from fuzzkit_scx.cmask_layout import (
    U32,
    U64,
    CmaskCtx,
    bits_cmpxchg,
    bits_load,
    bits_store,
    bits_weight,
    bits_zero,
    genmask,
    hdr_load,
    hdr_store,
    nr_words,
)

#: Storage cap of helper loops: NR_CPUS 8192 plus one word of head misalignment.
CMASK_MAX_WORDS = 129
#: cmpxchg attempts before cmask_set/clear give up with scx_bpf_error().
CMASK_CAS_TRIES = 1 << 23


# -- the kernel side (R27) --------------------------------------------------------------------------


def scx_cmask_init(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, base: int, nr_cids: int) -> Steps:
    """Header, then every word of bits[] zeroed."""
    yield from hdr_store(m, cpu, ctx, cm, base, nr_cids)
    yield from bits_zero(m, cpu, ctx, cm, nr_words(nr_cids))


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
    yield from bits_zero(m, cpu, ctx, cm, min(nr_words(nr_cids), CMASK_MAX_WORDS))


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
    return (yield from bits_weight(m, cpu, ctx, cm, min(nr_words(nr), CMASK_MAX_WORDS)))

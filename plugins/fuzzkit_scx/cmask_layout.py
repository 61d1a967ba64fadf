"""struct scx_cmask in arena memory: its layout, the address arithmetic and the word accessors
every cmask routine goes through.

Layout (little-endian on x86 and arm64; memory is modelled in 8-byte words)::

    word 0        base (u32) | nr_cids (u32) << 32
    word 1        alloc_words (u32), then 4 bytes of padding before the u64 array
    word 2 + i    bits[i]

``bits`` sit on a global 64-cid grid: ``bits[0]`` holds cids ``[base & ~63, (base & ~63) +
64)``, so two cmasks with different bases still combine word by word. ``NR_WORDS(n) =
(n + 63) / 64 + 1`` covers a head misaligned by up to 63 cids. Bits outside ``[base, base +
nr_cids)`` in those words are head and tail padding and stay zero (I18). Arithmetic is u32,
as in the C code.

Every access goes through :class:`CmaskCtx`: a BPF helper's loads and stores are JITed arena
accesses (exception table, R12/R13), the kernel's are plain kernel accesses whose fault goes
down the arch fault path with no BPF program on the stack (R27: an oops). The context also
records what each access touched, for the I18 oracle to judge after the operation.

This module is deliberately not in the plugin's ``FUZZKIT_COVERAGE``, as the kernel builds
hot helpers with ``KCOV_INSTRUMENT := n``: it decides nothing about the mechanism (the
decisions are the callers' in :mod:`fuzzkit_scx.cmask` and the fault path's), yet every
emulated cmask access runs through it, and atheris would pay for its branches, and for each
of its generator frames, on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fuzzkit_arena.arena import Arena, BpfProg

from fuzzkit import FIXUP, PAGE_SHIFT, PAGE_SIZE, Cpu, Machine, Steps

U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
#: m.state key: the I18 record of the operation each CPU runs, by CPU id.
CMASK_LOG = "scx.cmask_log"
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


@dataclass(slots=True)
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
        return ptr if self.prog is None else self.arena.kbase + (ptr & U32)


def cmask_log(m: Machine, cpu: Cpu) -> list[tuple[Any, ...]]:
    """A fresh I18 record for the operation this CPU runs (a context's ``log``)."""
    log: list[tuple[Any, ...]] = []
    logs = m.state.get(CMASK_LOG)
    if logs is None:
        logs = m.state[CMASK_LOG] = {}
    logs[cpu.id] = log
    return log


def peek(m: Machine, cpu: Cpu, ctx: CmaskCtx, ptr: int) -> int:
    """The word at ``ptr`` as this CPU would read it now, without an access (no events, no
    TLB fill): what a store is about to overwrite."""
    vpage = (ptr if ctx.prog is None else ctx.arena.kbase + (ptr & U32)) >> PAGE_SHIFT  # kaddr()
    page = cpu.tlb.get(vpage) or m.page_of(m.ptes.get(vpage, 0))
    return page.data.get((ptr & 0xFFF) >> 3, 0) if page is not None else 0


def access(m: Machine, cpu: Cpu, ctx: CmaskCtx, ptr: int, write: bool, value: int = 0) -> Steps:
    """One word at ``ptr``: a JITed BPF access (R12: an empty slot is reported, reads 0,
    drops the store) or a kernel access (a fault it cannot recover is an :class:`Oops`)."""
    prog = ctx.prog
    if prog is None:
        outcome, v = yield from m.kernel_access(cpu, ptr, write, value)
        if outcome != "ok":
            raise Oops(outcome)
        return v
    kbase = ctx.arena.kbase
    addr = kbase + (ptr & U32)
    outcome, v = yield from m.kernel_access(cpu, addr, write, value, extable=True, how="bpf")
    if outcome == FIXUP:
        m.k.bpf_prog_report_arena_violation(m, cpu, prog, write, (addr & ~(PAGE_SIZE - 1)) - kbase)
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


# bits_load and bits_store log, then hand back the access itself rather than delegating to it
# from a generator of their own: a caller's ``yield from`` runs the same steps, with one frame
# fewer to resume on each of them.


def bits_load(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, i: int) -> Steps:
    """The steps of loading bits[i]; they return its value."""
    i &= U32
    ctx.log.append(("load", cm, i))
    return access(m, cpu, ctx, cm + BITS_OFFSET + 8 * i, False)


def bits_store(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, i: int, value: int) -> Steps:
    """The steps of storing ``value`` into bits[i]."""
    i &= U32
    ptr = cm + BITS_OFFSET + 8 * i
    ctx.log.append(("kstore" if ctx.prog is None else "store", cm, i, peek(m, cpu, ctx, ptr), value))
    return access(m, cpu, ctx, ptr, True, value)


def bits_zero(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, n: int) -> Steps:
    """Store 0 into bits[0..n), one word per step. How many words is the caller's decision."""
    for i in range(n):
        yield from bits_store(m, cpu, ctx, cm, i, 0)


def bits_weight(m: Machine, cpu: Cpu, ctx: CmaskCtx, cm: int, n: int) -> Steps:
    """The number of bits set in bits[0..n), one load per word and step."""
    count = 0
    for i in range(n):
        count += (yield from bits_load(m, cpu, ctx, cm, i)).bit_count()
    return count


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
            m.k.bpf_prog_report_arena_violation(m, cpu, ctx.prog, True, (addr & ~(PAGE_SIZE - 1)) - ctx.kbase)
            return 0

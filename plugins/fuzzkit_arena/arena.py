"""Arena maps, BPF programs and their stderr streams: the objects arena operations act on.

Address arithmetic (docs/model.md, section 1): an arena owns a kernel band of 4 GiB + GUARD_SZ; its
``kbase`` sits GUARD_SZ/2 into the band. Slot ``pgoff`` is user address
``user_vm_start + pgoff * PAGE_SIZE`` and kernel address ``kbase + (u32)user address``; the
user range never crosses a 4 GiB boundary, so the low 32 bits are contiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, Cpu, Frame, Machine, Mutex, Page
from fuzzkit_arena.range_tree import RangeTree
from fuzzkit_arena.reference import ReferenceRanges

SZ_4G = 1 << 32
GUARD_SZ = 64 << 10
#: Kernel VM reserved per arena.
KERN_VM_SZ = SZ_4G + GUARD_SZ
MAX_PAGES = SZ_4G >> PAGE_SHIFT

BPF_F_MMAPABLE = 1 << 10
BPF_F_SEGV_ON_FAULT = 1 << 15
BPF_F_NO_USER_CONV = 1 << 16

#: Where mmap(NULL) places the first arena (low 32 bits deliberately non-zero, as in the
#: kernel's own example 7f7d26200000, so the u32 truncation is exercised).
MMAP_BASE = 0x7F7D26200000

#: Capacity of a program's stderr stream in bytes (R18): BPF_STREAM_MAX_CAPACITY,
#: include/linux/bpf.h.
STREAM_CAPACITY = 100000


def clear_lo32(value: int) -> int:
    return value & ~0xFFFFFFFF


def bpf_map_alloc_pages(m: Machine, cpu: Cpu, owner: str, page_cnt: int) -> list[Page]:
    """kernel/bpf/syscall.c: ``page_cnt`` pages for ``owner``, or none at all: a failure part
    way gives back the partial batch itself. A helper the arena calls, not an arena path, so
    it sits here, outside atheris's coverage: the arena's branch on the result is the
    decision."""
    pages: list[Page] = []
    for _ in range(page_cnt):
        page = m.alloc_page(owner)
        if page is None:
            for p in pages:
                m.free_page(cpu, p)
            return []
        pages.append(page)
    return pages


def violation_text(write: bool, arena: Arena | None, offset: int, stack: Sequence[Frame]) -> str:
    """R18's report line: the access, the address rebased to the user view of ``arena`` (the
    main program's; 0 without one) and the call chain, innermost first. Here rather than in
    the kernel module: formatting is no path through the mechanism, and atheris would count
    every frame of the chain as a branch."""
    addr = (clear_lo32(arena.user_vm_start) if arena is not None else 0) + offset
    chain = " <- ".join([f.prog.name if f.prog is not None else f.kind for f in reversed(stack)])
    return f"ERROR: Arena {'WRITE' if write else 'READ'} access at unmapped address {addr:#x} [{chain}]"


@dataclass(slots=True)
class Stream:
    """A program's BPF_STDERR stream (kernel/bpf/stream.c) with bounded capacity.

    R18: capacity counts bytes, as bpf_stream_consume_capacity() does: a staged report
    (its line and its stack dump, one element) is refused when the bytes held already reach
    the capacity or would with it. Nothing reads the stream, so bytes are never released."""

    capacity: int = STREAM_CAPACITY
    lines: list[str] = field(default_factory=list)
    dropped: int = 0
    #: Bytes held (the kernel's stream->capacity counter).
    used: int = 0
    #: Every push attempt, delivered or not, as (cpu, text): the I7 oracle reads it.
    attempts: list[tuple[int, str]] = field(default_factory=list)

    def push(self, m: Machine, cpu: int, text: str) -> bool:
        self.attempts.append((cpu, text))
        size = len(text) + 1  # the report's newline
        if self.used >= self.capacity or self.used + size >= self.capacity or m.inject("stream_capacity"):
            self.dropped += 1
            m.note(f"stream full, dropped: {text}")
            return False
        self.used += size
        self.lines.append(text)
        if m.trace is not None:  # formatted only for a trace: a push is on the fault path
            m.note(f"stream: {text}")
        return True


@dataclass(slots=True)
class BpfProg:
    """A loaded BPF program. Subprograms share their main program's aux (arena, stream)."""

    name: str
    arena: Arena | None
    main: BpfProg | None = None
    stream: Stream = field(default_factory=Stream)

    @property
    def is_main(self) -> bool:
        return self.main is None

    def main_prog(self) -> BpfProg:
        return self if self.main is None else self.main

    @property
    def loadable(self) -> bool:
        """Whether the verifier lets this program load: one that uses an arena whose user
        address is not set yet is refused (kernel/bpf/verifier.c, "arena's user address must
        be set via map_extra or mmap()"). The address never changes once set, so no program
        of an arena created without a fixed ``user_vm_start`` runs before its first mmap."""
        return self.arena is None or self.arena.user_vm_start != 0


#: An op that would run a program the verifier refuses (:attr:`BpfProg.loadable`).
NOT_LOADABLE = "EINVAL: arena's user address must be set via map_extra or mmap()"


class Arena:
    """A BPF_MAP_TYPE_ARENA map."""

    def __init__(
        self, m: Machine, index: int, max_entries: int, flags: int, user_vm_start: int, scratch: Page
    ) -> None:
        self.index = index
        self.name = f"arena{index}"
        self.max_entries = max_entries
        self.flags = flags
        #: 0 until fixed at creation (map_extra) or picked by the first mmap.
        self.user_vm_start = user_vm_start
        self.user_vm_end = user_vm_start + max_entries * PAGE_SIZE if user_vm_start else 0
        self.band = m.arch.kernel_vm_base + index * KERN_VM_SZ
        self.kbase = self.band + GUARD_SZ // 2
        self.scratch = scratch
        self.scratch_pte = m.arch.mk_pte(scratch.pfn)
        self.rt = RangeTree()
        self.ref = ReferenceRanges()
        #: arena->spinlock (alloc, free, reserve, user faults) and arena->lock (vma list).
        self.spinlock = Mutex(f"{self.name}.spinlock")
        self.lock = Mutex(f"{self.name}.lock")
        #: Memory usage: real pages mapped (R20).
        self.nr_pages = 0
        #: REAL PTEs counted by the I13 oracle from the PTE writes themselves.
        self.real_ptes = 0
        #: Deferred free spans (uaddr32, page_cnt, release_only) for the worker, oldest
        #: first (R8); a release-only span has been torn down and waits to become FREE.
        self.free_spans: list[tuple[int, int, bool]] = []
        #: Each unavailable range (pgoff, page_cnt) and what ends it: a lock owned by the
        #: CPU that will, unowned once that is left to the worker (R7, R8, R11).
        self.holds: dict[tuple[int, int], Mutex] = {}
        #: Live user VMAs (mmap count).
        self.vmas = 0
        #: CPUs currently inside an operation on this arena.
        self.users = 0
        #: The last reference was dropped: new operations see no arena (bpf_map_put).
        self.dying = False
        self.destroyed = False
        #: map_free refused while mapped: the arena is leaked (R19).
        self.leaked = False
        #: Pages intentionally leaked until destroy (R8: span allocation failed).
        self.leaked_spans = 0
        #: Last best-fit claim per CPU, with the call that made it: (call, (page_cnt, pgoff
        #: found, the reference's answer)), read by I12 and I16 when that call returns.
        self.last_fit: dict[int, tuple[Any, tuple[int, int, int]]] = {}
        #: The main program using this arena, whose stream gets reports.
        self.prog = BpfProg(f"{self.name}.prog", self)

    # -- addresses -------------------------------------------------------------------------

    @property
    def page_cnt_max(self) -> int:
        return (self.user_vm_end - self.user_vm_start) >> PAGE_SHIFT

    def uaddr(self, pgoff: int) -> int:
        return self.user_vm_start + pgoff * PAGE_SIZE

    def kaddr(self, uaddr: int) -> int:
        return self.kbase + (uaddr & 0xFFFFFFFF)

    def vpage(self, pgoff: int) -> int:
        return self.kaddr(self.uaddr(pgoff)) >> PAGE_SHIFT

    def compute_pgoff(self, uaddr: int) -> int:
        return ((uaddr - (self.user_vm_start & 0xFFFFFFFF)) & 0xFFFFFFFF) >> PAGE_SHIFT

    def in_recovery_band(self, addr: int) -> bool:
        """R15: the 4 GiB band plus the upper half-guard; the lower half-guard is excluded.
        The band the oracles hold the fault handler to, whatever a variant's
        ``arena_in_recovery_band`` says."""
        return self.kbase <= addr & ~(PAGE_SIZE - 1) < self.kbase + SZ_4G + GUARD_SZ // 2

    def rebased(self, kaddr: int) -> int:
        """The address a report shows: the user view of a kernel arena address (R18)."""
        return clear_lo32(self.user_vm_start) + (kaddr - self.kbase)

"""lib/genalloc.c: the general-purpose special-memory pool sched_ext sub-allocates arena
pages with (R23).

Some facts about genalloc the model keeps:

* A pool is a list of chunks. Each chunk covers ``[start_addr, end_addr]`` (end inclusive)
  with a bitmap of ``1 << min_alloc_order`` byte granules and an ``avail`` byte count.
  ``gen_pool_add`` puts a new chunk at the *head* of the list (``list_add_rcu``), and
  allocation walks the list from the head, so the newest chunk is tried first.
* Allocation takes no lock. It skips chunks whose ``avail`` is too small, finds a free run
  with the pool's algorithm (first fit: ``bitmap_find_next_zero_area``), then claims it with
  ``bitmap_set_ll``, one cmpxchg per bitmap word. A word that already has one of the bits set
  means another CPU claimed part of the run between the search and the set: the bits set so
  far are cleared again and the search restarts. Each word update is an atomic step here, so
  that window is reachable.
* ``gen_pool_free`` of an address in no chunk, of a range past the chunk's end, or of bits
  already clear is a ``BUG()``, and so is ``gen_pool_destroy`` of a chunk with bits still set.
  The model raises :class:`KernelBug`, which stops the operation like the kernel stops the
  task; the I17 oracle turns it into a finding.

Bitmaps are Python ints (bit ``i`` is granule ``i``); the 64-bit word structure only matters
for the per-word atomic steps. The bit arithmetic itself is lib/bitmap.c's, in
:mod:`fuzzkit_scx.bitmap`.
"""

from __future__ import annotations

from fuzzkit import Cpu, Machine, Mutex, Steps
from fuzzkit_scx.bitmap import bitmap_find_next_zero_area, word_masks

ENOMEM = -12


class KernelBug(Exception):
    """BUG(): the kernel stops the task. The message names the check, never an address, so
    findings built from it deduplicate."""


class Chunk:
    __slots__ = ("avail", "bits", "end_addr", "start_addr")

    def __init__(self, start_addr: int, size: int) -> None:
        self.start_addr = start_addr
        self.end_addr = start_addr + size - 1
        self.bits = 0
        self.avail = size

    @property
    def size(self) -> int:
        return self.end_addr - self.start_addr + 1


class GenPool:
    def __init__(self, min_alloc_order: int) -> None:
        self.min_alloc_order = min_alloc_order
        #: Kernel list order: the newest chunk first.
        self.chunks: list[Chunk] = []
        #: pool->lock, taken by gen_pool_add only.
        self.lock = Mutex("gen_pool.lock")
        self.destroyed = False


def gen_pool_create(m: Machine, cpu: Cpu, min_alloc_order: int) -> GenPool:
    return GenPool(min_alloc_order)


def gen_pool_add(m: Machine, cpu: Cpu, pool: GenPool, addr: int, size: int) -> Steps:
    """gen_pool_add_owner(): the chunk and its bitmap come from vzalloc(), which can fail
    (injection point ``gen_pool_add``). Returns 0 or -ENOMEM."""
    if m.inject("gen_pool_add"):
        return ENOMEM
    chunk = Chunk(addr, size)
    yield from m.mutex_lock(cpu, pool.lock)
    pool.chunks.insert(0, chunk)  # list_add_rcu: at the head
    m.mutex_unlock(cpu, pool.lock)
    yield "gen_pool_add"
    return 0


def gen_pool_first_fit(m: Machine, cpu: Cpu, bits: int, size: int, start: int, nr: int) -> int:
    """The pool's default algorithm (genpool_algo_t)."""
    return bitmap_find_next_zero_area(bits, size, start, nr)


def bitmap_set_ll(m: Machine, chunk: Chunk, start: int, nr: int) -> Steps:
    """Set the bits word by word, each with a cmpxchg that refuses (-EBUSY) when one of its
    bits is already set. Returns how many bits were left unset (0: all set)."""
    left = nr
    for mask in word_masks(start, nr):
        if chunk.bits & mask:
            yield "set_bits_ll busy"
            return left
        chunk.bits |= mask
        left -= mask.bit_count()
        yield "set_bits_ll"
    return 0


def bitmap_clear_ll(m: Machine, chunk: Chunk, start: int, nr: int) -> Steps:
    """Clear the bits word by word; a word with one of them already clear stops it (-EBUSY).
    Returns how many bits were left uncleared."""
    left = nr
    for mask in word_masks(start, nr):
        if chunk.bits & mask != mask:
            yield "clear_bits_ll busy"
            return left
        chunk.bits &= ~mask
        left -= mask.bit_count()
        yield "clear_bits_ll"
    return 0


def gen_pool_alloc(m: Machine, cpu: Cpu, pool: GenPool, size: int) -> Steps:
    """gen_pool_alloc_algo_owner() with first fit. Returns the address or 0."""
    if size == 0:
        return 0
    order = pool.min_alloc_order
    nbits = (size + (1 << order) - 1) >> order
    # list_for_each_entry_rcu: a walk that started before a concurrent add misses the new head.
    for chunk in tuple(pool.chunks):
        if size > chunk.avail:
            continue
        end_bit = chunk.size >> order
        start_bit = 0
        while True:
            start_bit = m.k.gen_pool_first_fit(m, cpu, chunk.bits, end_bit, start_bit, nbits)
            yield "gen_pool_first_fit"
            if start_bit >= end_bit:
                break
            remain = yield from m.k.bitmap_set_ll(m, chunk, start_bit, nbits)
            if not remain:
                chunk.avail -= nbits << order
                return chunk.start_addr + (start_bit << order)
            # Another CPU took part of the run: give back what was set, search again.
            if (yield from m.k.bitmap_clear_ll(m, chunk, start_bit, nbits - remain)):
                raise KernelBug("BUG_ON(remain) in gen_pool_alloc")
    return 0


def gen_pool_free(m: Machine, cpu: Cpu, pool: GenPool, addr: int, size: int) -> Steps:
    """gen_pool_free_owner(): BUG on an address in no chunk, a range past the chunk's end, or
    bits already clear."""
    order = pool.min_alloc_order
    nbits = (size + (1 << order) - 1) >> order
    for chunk in tuple(pool.chunks):
        if chunk.start_addr <= addr <= chunk.end_addr:
            if addr + size - 1 > chunk.end_addr:
                raise KernelBug("gen_pool_free past the end of its chunk")
            start_bit = (addr - chunk.start_addr) >> order
            if (yield from m.k.bitmap_clear_ll(m, chunk, start_bit, nbits)):
                raise KernelBug("gen_pool_free of granules already free")
            chunk.avail += nbits << order
            return
    raise KernelBug("gen_pool_free of an address in no chunk")


def gen_pool_destroy(m: Machine, cpu: Cpu, pool: GenPool) -> None:
    """Each chunk leaves the list and is freed; one with a bit still set is a BUG."""
    while pool.chunks:
        chunk = pool.chunks.pop(0)
        if chunk.bits:
            raise KernelBug("gen_pool_destroy with outstanding allocations")
    pool.destroyed = True

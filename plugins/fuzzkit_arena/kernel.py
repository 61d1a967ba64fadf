"""The arena's kernel paths (kernel/bpf/arena.c), each a named, replaceable primitive.

Locking, as in the kernel: ``arena->spinlock`` (a resilient spinlock whose acquisition can
fail, injection point ``arena_spin_lock``) is held across the whole of an allocation (claim,
page allocation, PTE installation), across the range-tree update and PTE clearing of a free
(and again, after the flush, to make the range FREE), and across a user fault's lookup (and
again, once the page is mapped, to let the slot go). Between those a range is UNAVAILABLE in
the range tree (R7, R11). The kernel-fault scratch installer takes no lock: it is the one
writer that races with the lock holders, and only through ``ptep_try_set`` against
``ptep_get_and_clear`` (R17). That is why those two must be atomic.

Every function takes ``(m, cpu, ...)``; generator functions yield a label after each atomic
step (DESIGN principle 3).
"""

from __future__ import annotations

from fuzzkit import PAGE_SHIFT, PAGE_SIZE, RETRY, Cpu, Fault, Machine, Mutex, Page, Steps
from fuzzkit_arena.arena import (
    BPF_F_SEGV_ON_FAULT,
    Arena,
    BpfProg,
    bpf_map_alloc_pages,
    clear_lo32,
    violation_text,
)
from fuzzkit_arena.range_tree import EAGAIN, ENOMEM
from fuzzkit_arena.reference import rt_clear, rt_make_avail, rt_remove_unavail, rt_set, rt_set_unavail

EBUSY = -16
EINVAL = -22
NUMA_NO_NODE = -1
#: Emulated machines have one NUMA node.
NR_NODES = 1
#: Pages per batch of arena_alloc_pages(): KMALLOC_MAX_CACHE_SIZE (two pages) divided by
#: sizeof(struct page *), the largest pages array kmalloc_nolock() can serve.
KMALLOC_BATCH = 2 * PAGE_SIZE // 8
#: Outcome of a user fault that could not take the lock or found the slot unavailable: the
#: access is retried.
VM_FAULT_RETRY = "retry"
#: Outcome of a user fault that could not hold its slot (a range-tree node allocation
#: failed): pagefault_out_of_memory(), after which the access is retried.
VM_FAULT_OOM = "oom"


def arena_spin_lock(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
    """raw_res_spin_lock_irqsave(): waits for the holder, but may also fail (deadlock or
    timeout detection), which callers must handle."""
    if m.inject("arena_spin_lock"):
        yield "spin_lock failed"
        return False
    yield from m.mutex_lock(cpu, arena.spinlock)
    return True


# -- range tree (R2, R10) ------------------------------------------------------------------------


def is_range_tree_set(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    """0 when range-tree nodes, FREE or UNAVAILABLE, cover the range."""
    return arena.rt.is_set(pgoff, n)


def range_tree_find(m: Machine, arena: Arena, n: int) -> int:
    return arena.rt.find(n)


def range_tree_clear(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    return arena.rt.clear(m, pgoff, n)


def range_tree_set(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    """range_tree_set_avail()."""
    return arena.rt.set(m, pgoff, n)


def range_tree_set_unavail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    return arena.rt.set_unavail(m, pgoff, n)


def range_tree_make_avail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    return arena.rt.make_avail(pgoff, n)


def range_tree_remove_unavail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    return arena.rt.remove_unavail(pgoff, n)


# -- PTE callbacks (R4, R7, R15) ---------------------------------------------------------------


def apply_range_set_cb_merged(m: Machine, cpu: Cpu, arena: Arena, vpage: int, page: Page) -> Steps:
    """R4 ``merged``: a none check, then a plain store. A scratch PTE is not none: -EBUSY."""
    old = yield from m.k.ptep_get(m, cpu, vpage)
    if not m.arch.pte_none(old):
        return EBUSY
    yield from m.k.set_pte_at(m, cpu, vpage, m.arch.mk_pte(page.pfn))
    return 0


def apply_range_set_cb_fixed(m: Machine, cpu: Cpu, arena: Arena, vpage: int, page: Page) -> Steps:
    """R4 ``fixed``: install atomically into a zero slot; if the scratch page is there, clear
    it and break-before-make, then try again. Modelled exactly as written: when ``pte_none``
    says "none" but the strict-zero cmpxchg fails (x86 stray A/D bits, R16) this loops."""
    k = m.k
    new = m.arch.mk_pte(page.pfn)
    while not (yield from k.ptep_try_set(m, cpu, vpage, new)):
        old = yield from k.ptep_get(m, cpu, vpage)
        if m.arch.pte_none(old):
            continue
        if m.page_of(old) is not arena.scratch:
            m.note("WARN_ON_ONCE: slot holds a page that is not the scratch page")
            return EBUSY
        yield from k.ptep_get_and_clear(m, cpu, vpage)
        yield from k.flush_tlb_before_set(m, cpu, vpage)
    return 0


def flush_tlb_before_set(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    """Break-before-make TLB invalidation: a flush where the arch requires it (arm64), a
    no-op elsewhere (x86, R17)."""
    if m.arch.break_before_make:
        yield from m.k.flush_tlb_kernel_range(m, cpu, vpage, vpage + 1)


def apply_range_clear_cb(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """R7/R9: atomically clear a PTE; return the real page to free, or None (empty, or the
    scratch page, which is skipped: it must survive until destroy)."""
    old = yield from m.k.ptep_get_and_clear(m, cpu, vpage)
    if m.arch.pte_none(old) or not m.arch.pte_present(old):
        return None
    page = m.page_of(old)
    if page is arena.scratch:
        return None
    return page


def apply_range_set_scratch_cb(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """R15: best-effort install of the scratch page into an empty PTE. The result of
    ``ptep_try_set`` is ignored: losing means someone else installed a valid entry."""
    old = yield from m.k.ptep_get(m, cpu, vpage)
    if not m.arch.pte_none(old):
        return
    yield from m.k.ptep_try_set(m, cpu, vpage, arena.scratch_pte)


def bpf_prog_find_from_stack(m: Machine, cpu: Cpu) -> BpfProg | None:
    """The stack walk of R15 (kernel/bpf/core.c, find_from_stack_cb()): the innermost BPF
    frame, subprogram or not, stands for its main program (``aux->main_prog_aux``), so a
    callback the kernel runs with no frame of its main program below (a bpf_timer callback)
    is attributed to that main program."""
    for frame in reversed(cpu.stack):
        if frame.prog is not None:
            prog: BpfProg = frame.prog.main_prog()
            return prog
    return None


def bpf_prog_report_arena_violation(m: Machine, cpu: Cpu, prog: BpfProg, write: bool, offset: int) -> None:
    """R18 (kernel/bpf/core.c): report to the main program's stderr stream with the rebased
    address."""
    main = prog.main_prog()
    main.stream.push(m, cpu.id, violation_text(write, main.arena, offset, cpu.stack))


def arena_in_recovery_band(m: Machine, arena: Arena, addr: int) -> bool:
    """R15, the range test of bpf_arena_handle_page_fault() (kernel/bpf/arena.c). A primitive
    so that a variant can move the band; the oracles keep checking R15's band."""
    return arena.in_recovery_band(addr)


def bpf_arena_handle_page_fault(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """R15, the arch fault hook. Takes no lock: the fault may nest inside the lock holder."""
    k = m.k
    prog = k.bpf_prog_find_from_stack(m, cpu)
    if prog is None:
        return None
    arena = prog.main_prog().arena
    if arena is None:
        return None
    page_addr = fault.addr & ~(PAGE_SIZE - 1)
    if not k.arena_in_recovery_band(m, arena, page_addr):
        return None
    yield from k.apply_range_set_scratch_cb(m, cpu, arena, page_addr >> PAGE_SHIFT)
    k.bpf_prog_report_arena_violation(m, cpu, prog, fault.write, page_addr - arena.kbase)
    return RETRY


# -- walking existing PTEs ---------------------------------------------------------------------


def apply_to_existing_page_range(m: Machine, lo: int, hi: int) -> list[int]:
    """apply_to_existing_page_range(): the non-none PTEs in ``[lo, hi)``, in address order.
    Sparse on purpose: a 1M-page range costs what is mapped, not its size."""
    if hi - lo <= len(m.ptes):
        found = [v for v in range(lo, hi) if v in m.ptes]
    else:
        found = sorted(v for v in m.ptes if lo <= v < hi)
    return [v for v in found if not m.arch.pte_none(m.ptes[v])]


def clear_range(m: Machine, cpu: Cpu, arena: Arena, lo: int, n: int) -> Steps:
    """Clear every present PTE of ``[lo, lo+n)`` and return the real pages to free."""
    pages = []
    for vpage in m.k.apply_to_existing_page_range(m, lo, lo + n):
        page = yield from m.k.apply_range_clear_cb(m, cpu, arena, vpage)
        if page is not None:
            pages.append(page)
            arena.nr_pages -= 1
    return pages


def zap_pages(m: Machine, cpu: Cpu, arena: Arena, full_uaddr: int, n: int) -> Steps:
    """Remove the range from user mappings (under arena->lock, as zap_pages does)."""
    yield from m.mutex_lock(cpu, arena.lock)
    m.user_zap(full_uaddr >> PAGE_SHIFT, (full_uaddr >> PAGE_SHIFT) + n)
    m.mutex_unlock(cpu, arena.lock)
    yield "zap_pages"


def free_collected(m: Machine, cpu: Cpu, pages: list[Page]) -> Steps:
    for page in pages:
        m.free_page(cpu, page)
    if pages:
        yield "__free_page"


# -- allocation (R1-R5) ---------------------------------------------------------------------------


def arena_alloc_pages(
    m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int, node: int, sleepable: bool
) -> Steps:
    """Returns the user address of the first page, or 0 (NULL) with no state change."""
    k = m.k
    page_cnt_max = arena.page_cnt_max
    if node != NUMA_NO_NODE and not 0 <= node < NR_NODES:
        return 0
    if page_cnt > page_cnt_max:
        return 0
    pgoff = 0
    if uaddr:
        if uaddr & (PAGE_SIZE - 1):
            return 0
        pgoff = arena.compute_pgoff(uaddr)
        if pgoff > page_cnt_max - page_cnt:
            return 0
    if m.inject("kmalloc_nolock"):  # the pages array
        return 0
    if not (yield from arena_spin_lock(m, cpu, arena)):
        return 0
    if uaddr:
        ret = k.is_range_tree_set(m, arena, pgoff, page_cnt)
        if ret == 0:
            ret = rt_clear(m, arena, pgoff, page_cnt)
    else:
        ret = pgoff = k.range_tree_find(m, arena, page_cnt)
        arena.last_fit[cpu.id] = (cpu.call, (page_cnt, pgoff, arena.ref.best_fit(page_cnt)))
        if pgoff >= 0:
            ret = rt_clear(m, arena, pgoff, page_cnt)
    yield "range_tree_clear"
    if ret:
        m.mutex_unlock(cpu, arena.spinlock)
        return 0
    uaddr32 = (arena.user_vm_start + pgoff * PAGE_SIZE) & 0xFFFFFFFF
    first = (arena.kbase + uaddr32) >> PAGE_SHIFT
    mapped = 0
    # Pages come in batches of at most KMALLOC_BATCH (the pages array is capped so that
    # kmalloc_nolock() can succeed), each mapped before the next is allocated: a failed
    # batch leaves the earlier ones mapped, to be rolled back below.
    failed = False
    while mapped < page_cnt and not failed:
        pages = bpf_map_alloc_pages(m, cpu, arena.name, min(page_cnt - mapped, KMALLOC_BATCH))
        failed = not pages
        for i, page in enumerate(pages):
            if (yield from k.apply_range_set_cb(m, cpu, arena, first + mapped, page)):
                for p in pages[i:]:
                    m.free_page(cpu, p)
                failed = True
                break
            mapped += 1
            arena.nr_pages += 1
    if not failed:
        m.mutex_unlock(cpu, arena.spinlock)
        return clear_lo32(arena.user_vm_start) + uaddr32
    # R3: restore the range tree for what was not mapped, free the mapped prefix.
    rt_set(m, arena, pgoff + mapped, page_cnt - mapped)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "alloc rollback"
    if mapped:
        yield from k.arena_free_pages(m, cpu, arena, uaddr32, mapped, sleepable)
    return 0


# -- free (R6-R9) ----------------------------------------------------------------------------------


def _withhold(m: Machine, cpu: Cpu, arena: Arena, pgoff: int, n: int) -> int:
    """range_tree_set_unavail() of ``[pgoff, pgoff+n)``, recording this CPU as the one that
    will end the unavailable state (for :func:`_wait_unavailable`)."""
    ret = rt_set_unavail(m, arena, pgoff, n)
    if ret == 0:
        hold = arena.holds[(pgoff, n)] = Mutex(f"{arena.name}.unavail[{pgoff}+{n}]")
        hold.owner = cpu.id
    return ret


def _end_hold(m: Machine, arena: Arena, pgoff: int, n: int, *, avail: bool) -> None:
    """range_tree_make_avail() (``avail``) or range_tree_remove_unavail(), each WARNing on
    failure as its callers in arena.c do; whoever waits on the range may go on."""
    ret = (rt_make_avail if avail else rt_remove_unavail)(m, arena, pgoff, n)
    if ret:
        m.note(f"WARN_ON_ONCE: range_tree_{'make_avail' if avail else 'remove_unavail'} returned {ret}")
    hold = arena.holds.pop((pgoff, n), None)
    if hold is not None:
        hold.owner = None


def _orphan_hold(arena: Arena, pgoff: int, n: int) -> None:
    """The CPU that withheld the range leaves its release to the worker."""
    hold = arena.holds.get((pgoff, n))
    if hold is not None:
        hold.owner = None


def _wait_unavailable(m: Machine, cpu: Cpu, arena: Arena, pgoff: int) -> Steps:
    """R11, VM_FAULT_RETRY on an unavailable slot: the kernel retries the fault until the
    range's holder ends that state. Modelled as a sleep on the holder, so that a schedule
    which never preempts the faulting CPU is not a livelock here; a range whose release was
    left to the worker is released by the work item running meanwhile (schedule_work())."""
    for (lo, n), hold in list(arena.holds.items()):
        if lo <= pgoff < lo + n:
            if hold.owner is None:
                yield from m.k.arena_free_worker(m, cpu, arena)
            else:
                yield from m.mutex_lock(cpu, hold)
                m.mutex_unlock(cpu, hold)
            return


def _defer_free(m: Machine, arena: Arena, uaddr: int, page_cnt: int, *, release_only: bool) -> Steps:
    """R8, arena_free_pages()'s ``defer:`` label: queue the span for the worker. When the
    span cannot be allocated, a range not yet torn down keeps its pages until destroy; a
    release-only one stays unavailable until destroy."""
    if m.inject("free_span_alloc"):
        if release_only:
            m.note(f"free span allocation failed: {page_cnt} pages stay unavailable until destroy (R8)")
        else:
            arena.leaked_spans += page_cnt
            m.note(f"free span allocation failed: {page_cnt} pages leak until destroy (R8)")
        return "leaked"
    arena.free_spans.append((uaddr, page_cnt, release_only))
    yield "queue free span"
    return "deferred"


def _unmap_and_free(
    m: Machine, cpu: Cpu, arena: Arena, full_uaddr: int, page_cnt: int, pages: list[Page]
) -> Steps:
    """arena_free_pages() after the unlock: zap user mappings (all at once for more than one
    page; for one page only when user space may map it, ``page_ref_count() > 1``), then
    free the collected pages."""
    if page_cnt > 1:
        yield from m.k.zap_pages(m, cpu, arena, full_uaddr, page_cnt)
    for page in pages:
        if page_cnt == 1 and page.umaps:
            yield from m.k.zap_pages(m, cpu, arena, full_uaddr, 1)
        m.free_page(cpu, page)
    if pages:
        yield "__free_page"


def arena_free_pages(m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int, sleepable: bool) -> Steps:
    """Returns "freed", "deferred", "leaked" (span allocation failed, R8), "busy" (part of
    the range is unavailable, held by a user fault or by another free: this free is
    dropped, R7) or "noop"."""
    uaddr = (uaddr & 0xFFFFFFFF) & ~(PAGE_SIZE - 1)
    full_uaddr = clear_lo32(arena.user_vm_start) + uaddr
    # R6, kernel/bpf/arena.c (kernel-patches/bpf 0b79959d) arena_free_pages(): a range
    # starting below user_vm_start is ignored; only the end is clamped to the VMA.
    if full_uaddr < arena.user_vm_start:
        return "noop"
    uaddr_end = min(arena.user_vm_end, full_uaddr + (page_cnt << PAGE_SHIFT))
    if full_uaddr >= uaddr_end:
        return "noop"
    page_cnt = (uaddr_end - full_uaddr) >> PAGE_SHIFT
    pgoff = arena.compute_pgoff(uaddr)
    if not sleepable or not (yield from arena_spin_lock(m, cpu, arena)):
        return (yield from _defer_free(m, arena, uaddr, page_cnt, release_only=False))
    # R7, kernel/bpf/arena.c (kernel-patches/bpf 0b79959d) arena_free_pages(): the range is
    # unavailable, neither FREE nor claimable, from here until its TLB flush is done.
    ret = _withhold(m, cpu, arena, pgoff, page_cnt)
    if ret:
        m.mutex_unlock(cpu, arena.spinlock)
        yield "range_tree_set_unavail failed"
        if ret == ENOMEM:
            return (yield from _defer_free(m, arena, uaddr, page_cnt, release_only=False))
        if ret != EAGAIN:
            m.note(f"WARN_ON_ONCE: range_tree_set_unavail returned {ret}")
        # -EAGAIN: a user fault mapping a page of the range, or another free of it, holds
        # part of it; this free is dropped and its caller is not told.
        return "busy"
    yield "range_tree_set_unavail"
    kpage = (arena.kbase + uaddr) >> PAGE_SHIFT
    pages = yield from clear_range(m, cpu, arena, kpage, page_cnt)
    m.mutex_unlock(cpu, arena.spinlock)
    # R7: the lock is dropped before the flush; the range stays unavailable meanwhile, so
    # no other CPU can claim it or fault a page into it while TLBs hold the old one.
    yield "spin_unlock"
    yield from m.k.flush_tlb_kernel_range(m, cpu, kpage, kpage + page_cnt)
    yield from _unmap_and_free(m, cpu, arena, full_uaddr, page_cnt, pages)
    if not (yield from arena_spin_lock(m, cpu, arena)):
        # The pages are gone; making the range FREE is left to the worker.
        _orphan_hold(arena, pgoff, page_cnt)
        yield from _defer_free(m, arena, uaddr, page_cnt, release_only=True)
        return "freed"
    _end_hold(m, arena, pgoff, page_cnt, avail=True)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "range_tree_make_avail"
    return "freed"


def arena_free_worker(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
    """R8's worker (kernel/bpf/arena.c, kernel-patches/bpf 0b79959d, arena_free_worker()):
    under one lock hold, release-only spans become FREE and the others are withheld and
    torn down (PTEs cleared); after the unlock each torn-down span is flushed and zapped,
    the pages freed, and under the lock again the spans become FREE. ``llist_del_all()``
    hands the spans over newest first, and each ``__llist_add`` onto a local list reverses
    the order again."""
    if not arena.free_spans:
        return 0
    if not (yield from arena_spin_lock(m, cpu, arena)):
        return 0  # schedule_work() again: the spans stay queued
    spans, arena.free_spans = arena.free_spans[::-1], []
    pages: list[Page] = []
    teardown: list[tuple[int, int]] = []
    for uaddr, page_cnt, release_only in spans:
        pgoff = arena.compute_pgoff(uaddr)
        if release_only:
            _end_hold(m, arena, pgoff, page_cnt, avail=True)
            yield "range_tree_make_avail"
            continue
        ret = _withhold(m, cpu, arena, pgoff, page_cnt)
        if ret:
            if ret == ENOMEM:
                arena.leaked_spans += page_cnt
                m.note(f"range tree node allocation failed: {page_cnt} pages leak until destroy (R8)")
            elif ret != EAGAIN:
                m.note(f"WARN_ON_ONCE: range_tree_set_unavail returned {ret}")
            yield "range_tree_set_unavail failed"
            continue
        yield "range_tree_set_unavail"
        kpage = (arena.kbase + uaddr) >> PAGE_SHIFT
        pages += yield from clear_range(m, cpu, arena, kpage, page_cnt)
        teardown.insert(0, (uaddr, page_cnt))
    m.mutex_unlock(cpu, arena.spinlock)
    yield "spin_unlock"
    released: list[tuple[int, int]] = []
    for uaddr, page_cnt in teardown:
        kpage = (arena.kbase + uaddr) >> PAGE_SHIFT
        yield from m.k.flush_tlb_kernel_range(m, cpu, kpage, kpage + page_cnt)
        yield from m.k.zap_pages(m, cpu, arena, clear_lo32(arena.user_vm_start) + uaddr, page_cnt)
        released.insert(0, (uaddr, page_cnt))
    yield from free_collected(m, cpu, pages)
    if not released:
        return len(spans)
    if not (yield from arena_spin_lock(m, cpu, arena)):
        for uaddr, page_cnt in released:
            _orphan_hold(arena, arena.compute_pgoff(uaddr), page_cnt)
            arena.free_spans.append((uaddr, page_cnt, True))
        return len(spans)  # schedule_work() again
    for uaddr, page_cnt in released:
        _end_hold(m, arena, arena.compute_pgoff(uaddr), page_cnt, avail=True)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "range_tree_make_avail"
    return len(spans)


# -- reserve (R10) ---------------------------------------------------------------------------------


def arena_reserve_pages(m: Machine, cpu: Cpu, arena: Arena, uaddr: int, page_cnt: int) -> Steps:
    if page_cnt == 0 or uaddr & (PAGE_SIZE - 1):
        return 0
    pgoff = arena.compute_pgoff(uaddr)
    if pgoff + page_cnt > arena.page_cnt_max:
        return EINVAL
    if not (yield from arena_spin_lock(m, cpu, arena)):
        return EBUSY
    ret = EBUSY if m.k.is_range_tree_set(m, arena, pgoff, page_cnt) else rt_clear(m, arena, pgoff, page_cnt)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "range_tree_clear"
    return ret


# -- user faults (R11) -----------------------------------------------------------------------------


def arena_vm_fault(m: Machine, cpu: Cpu, arena: Arena, uaddr: int) -> Steps:
    """Returns the page now mapped at ``uaddr``, None for SIGSEGV, VM_FAULT_RETRY or
    VM_FAULT_OOM (kernel/bpf/arena.c, kernel-patches/bpf 0b79959d, arena_vm_fault())."""
    if not (yield from arena_spin_lock(m, cpu, arena)):
        return VM_FAULT_RETRY
    vpage = arena.kaddr(uaddr) >> PAGE_SHIFT
    pgoff = (uaddr - arena.user_vm_start) >> PAGE_SHIFT
    page = m.page_of((yield from m.k.ptep_get(m, cpu, vpage)))
    if page is arena.scratch or (page is None and arena.flags & BPF_F_SEGV_ON_FAULT):
        # A kernel fault scratched this slot: never lazily allocate over it.
        m.mutex_unlock(cpu, arena.spinlock)
        yield "arena_vm_fault"
        return None
    if page is None:
        ret = rt_clear(m, arena, pgoff, 1)
        if ret == 0:
            page = m.alloc_page(arena.name)
            if page is not None and (yield from m.k.apply_range_set_cb(m, cpu, arena, vpage, page)):
                m.free_page(cpu, page)
                page = None
            if page is None:
                rt_set(m, arena, pgoff, 1)
            else:
                arena.nr_pages += 1
        if page is None:
            m.mutex_unlock(cpu, arena.spinlock)
            yield "arena_vm_fault"
            if ret == EAGAIN:  # the slot is being freed: retry once that is done
                yield from _wait_unavailable(m, cpu, arena, pgoff)
                return VM_FAULT_RETRY
            return None
    # R11: the slot is held unavailable while its user PTE is installed without the lock,
    # so a free of it meanwhile is refused (-EAGAIN) instead of freeing the page under the
    # mapping being made.
    ret = _withhold(m, cpu, arena, pgoff, 1)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "arena_vm_fault"
    if ret == EAGAIN:  # another CPU holds the slot
        yield from _wait_unavailable(m, cpu, arena, pgoff)
        return VM_FAULT_RETRY
    if ret:
        return VM_FAULT_OOM
    mapped: Page | None = page
    if not arena.vmas:
        # munmap() ran while this fault waited (the kernel's mmap_lock orders them): no VMA
        # is left to map into. A lazily allocated page stays in the arena.
        mapped = None
    elif uaddr >> PAGE_SHIFT not in m.user_ptes:
        # vmf_insert_page(); a CPU that lost the race to map the same user page leaves the
        # mapping that won, as insert_page() finds the PTE taken.
        m.user_map(uaddr >> PAGE_SHIFT, page)
    yield "vmf_insert_page"
    while not (yield from arena_spin_lock(m, cpu, arena)):
        pass  # cond_resched() and try again
    _end_hold(m, arena, pgoff, 1, avail=False)
    m.mutex_unlock(cpu, arena.spinlock)
    yield "range_tree_remove_unavail"
    return mapped


# -- destroy (R19) ---------------------------------------------------------------------------------


def arena_map_free(m: Machine, cpu: Cpu, arena: Arena) -> Steps:
    """Runs when the last reference goes. Refused (WARN, leak) while user VMAs exist."""
    if arena.vmas:
        arena.leaked = arena.destroyed = True
        m.note("WARN_ON_ONCE: arena freed while user VMAs exist; leaked")
        yield "map_free refused"
        return "refused"
    while arena.free_spans:  # irq_work_sync() + flush_work()
        yield from m.k.arena_free_worker(m, cpu, arena)
    lo = arena.kbase >> PAGE_SHIFT
    hi = lo + ((1 << 32) + (32 << 10) >> PAGE_SHIFT)
    vpages = m.k.apply_to_existing_page_range(m, lo, hi)
    pages = [p for p in (m.page_of(m.ptes[v]) for v in vpages) if p is not None and p is not arena.scratch]
    # existing_page_cb frees pages while their PTEs are still set and free_vm_area() then
    # tears the tables down; nothing can reach the band any more, so clearing first (what
    # free_vm_area does) keeps the I2 bookkeeping exact without changing what is observable.
    for v in vpages:
        m.set_pte(cpu, v, 0)
    # R20: freeing the pages uncharges them; nr_pages follows the PTEs torn down with them.
    arena.nr_pages -= len(pages)
    m.tlb_flush(cpu, lo, hi)
    yield "free_vm_area"
    for page in pages:
        m.free_page(cpu, page)
    m.free_page(cpu, arena.scratch)
    arena.destroyed = True
    yield "free scratch"
    return "destroyed"

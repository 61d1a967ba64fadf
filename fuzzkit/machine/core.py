"""The emulated machine: CPUs, physical pages, the kernel page table, per-CPU TLBs, locks,
the kernel fault path and the scheduler that interleaves the CPUs' operations.

Some facts the model rests on:

* Operations are generators. An executor performs one access to shared state (a PTE read, a
  cmpxchg, a range-tree update, a TLB flush) and then ``yield``s a short label naming it, so
  every yield is a scheduling point and each step of the trace is one atomic access
  (DESIGN principle 3). Code between two yields runs atomically with respect to other CPUs.
* Raw PTEs are ints in a sparse dict keyed by kernel virtual page number; absent means 0.
  Only touched slots cost memory, so a 4 GiB arena is cheap. Page-table *leaves* exist for
  populated bands only (tracked per PMD, 512 PTEs); writing a PTE elsewhere would allocate a
  table, which is forbidden in fault context (R14, I14).
* A TLB entry caches the *page* a translation led to, per CPU, until a flush removes it. So a
  CPU can keep using a page whose PTE was cleared, exactly the window the kernel's
  clear -> flush -> free order (R7) closes. Invalid entries are never cached.
* Pages carry reference counts the oracles read (PTEs, user mappings, TLB entries), kept
  inline here because every access needs them; the checks themselves are registered
  invariants observing events (DESIGN principle 6).
* Every PTE and TLB entry remembers the step and call that wrote it (:class:`Cause`), so a
  check that finds a broken state after the fact (an access through a stale translation)
  names the step that broke it rather than the op that happened to trip over it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from fuzzkit.errors import PluginFailure
from fuzzkit.machine import guard
from fuzzkit.machine.arch import (
    OOPS,
    PAGE_SHIFT,
    RETRY,
    Arch,
    Fault,
)
from fuzzkit.machine.blame import blame
from fuzzkit.machine.choices import ChoiceSource

if TYPE_CHECKING:
    from fuzzkit.primitives import Primitives
    from fuzzkit.registry import Kernel, OpSpec

#: An executor or primitive that may yield: returns its result through StopIteration.
Steps = Generator[str, None, Any]

#: PTEs per page-table leaf: tables exist at this granularity.
PTRS_PER_PTE = 512


@dataclass(frozen=True)
class Cause:
    """The step that created a state a check later found broken: ``what`` it wrote ("pte"
    for a kernel PTE, "tlb" for a cached translation) at kernel virtual page ``vpage``, in
    call ``call`` (op ``op``) on ``cpu``."""

    what: str
    step: int
    cpu: int
    call: int
    op: str
    vpage: int

    @classmethod
    def of(cls, what: str, written: tuple[int, int, Call | None], vpage: int) -> Cause:
        """The cause ``written``, a ``(step, cpu, call)`` record such as
        :attr:`Machine.pte_written` keeps, names. A check that may need a cause later keeps
        the record and makes the cause then: building one costs more than the write."""
        step, cpu, call = written
        return cls(what, step, cpu, call.index if call else -1, call.spec.id if call else "-", vpage)

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "step": self.step,
            "cpu": self.cpu,
            "call": self.call,
            "op": self.op,
            "addr": self.vpage << PAGE_SHIFT,
        }


class Violation(Exception):
    """Raised by an invariant check (or by the machine) when a SPEC invariant is broken.
    The run stops at the first one and turns it into a :class:`Finding`.

    ``message`` goes into the finding's title, which is the dedup key, so it names the kind
    of breakage only; specifics (page counts, offsets, pfns, owners, CPUs) go into
    ``detail``. A check that detects a broken state after the fact passes the ``cause`` that
    created it (:meth:`Machine.pte_cause`, :meth:`Machine.tlb_cause`): the title then keys on
    the cause, not on the op that tripped over the state."""

    def __init__(self, spec_id: str, message: str, detail: str = "", cause: Cause | None = None) -> None:
        super().__init__(f"{spec_id} {message}" + (f" ({detail})" if detail else ""))
        self.spec_id = spec_id
        self.message = message
        self.detail = detail
        self.cause = cause


@dataclass(frozen=True)
class Finding:
    """A violated invariant, as a run reports it. ``title`` is the dedup key."""

    spec_id: str
    message: str
    op: str
    call: int
    cpu: int
    step: int
    arch: str
    revision: str
    #: Primitives a plugin replaced in this run, with the replacing plugin.
    replaced: tuple[tuple[str, str], ...] = ()
    #: Specifics of this occurrence, kept out of the title.
    detail: str = ""
    #: The step that created the broken state, for a check that detects it after the fact.
    cause: Cause | None = None

    @property
    def title(self) -> str:
        """The dedup key: named after the op that created the broken state when the check
        knows it, else after the op the check fired in."""
        op = self.cause.op if self.cause is not None else self.op
        return f"{self.spec_id} {self.message} in {op} ({self.arch}, {self.revision})"

    @property
    def seen_title(self) -> str:
        """The title after the op the check fired in (the op that tripped over the state)."""
        return f"{self.spec_id} {self.message} in {self.op} ({self.arch}, {self.revision})"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "spec_id": self.spec_id,
            "message": self.message,
            "op": self.op,
            "call": self.call,
            "cpu": self.cpu,
            "step": self.step,
            "arch": self.arch,
            "revision": self.revision,
            "replaced": [{"primitive": n, "plugin": p} for n, p in self.replaced],
            "detail": self.detail,
            "cause": self.cause.to_json() if self.cause is not None else None,
        }


class Page:
    """A physical page frame. Frames are never reused (pfns grow), so a freed page stays
    recognisable as freed for the rest of the run."""

    __slots__ = ("data", "freed", "kmaps", "owner", "pfn", "shared", "tlb_refs", "umaps")

    def __init__(self, pfn: int, owner: str, shared: bool) -> None:
        self.pfn = pfn
        #: Who allocated it, for messages ("arena0", "arena0:scratch").
        self.owner = owner
        #: May back several PTEs at once (the scratch page, R13); others may not (I2).
        self.shared = shared
        self.freed = False
        #: Kernel PTEs, user mappings and TLB entries currently pointing here.
        self.kmaps = 0
        self.umaps = 0
        self.tlb_refs = 0
        #: Contents as 8-byte words, lazily: an absent word reads 0.
        self.data: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<page {self.pfn:#x} {self.owner}{' freed' if self.freed else ''}>"


class Mutex:
    """A sleeping lock. A CPU waiting for it is not runnable until it is released."""

    __slots__ = ("name", "owner")

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: int | None = None


@dataclass(slots=True)
class Frame:
    """One frame of a CPU's emulated call stack, searched by the arena fault handler's stack
    walk (R15). ``kind`` is "kernel", "bpf_main", "bpf_sub" or "kfunc"; ``prog`` is the BPF
    program object of a bpf frame."""

    kind: str
    prog: Any = None


@dataclass(slots=True)
class Call:
    """One operation of a program, resolved against the op table."""

    index: int
    cpu: int
    spec: OpSpec
    args: dict[str, Any]


@dataclass(slots=True, eq=False)
class Cpu:
    """One emulated CPU. Compared by identity, as it is one object per run: the scheduler
    asks ``cpu in runnable`` on every step with a choice."""

    id: int
    queue: deque[Call] = field(default_factory=deque)
    gen: Steps | None = None
    call: Call | None = None
    op_steps: int = 0
    #: The lock this CPU sleeps on, if any.
    waiting: Mutex | None = None
    stack: list[Frame] = field(default_factory=list)
    #: The fault being handled (innermost), or None: PTE writes made while it is set come
    #: from a fault handler (I8, I14).
    fault: Fault | None = None
    #: How many injected failures had fired when the current op started.
    injected_at_start: int = 0
    #: Cached translations: kernel virtual page -> page.
    tlb: dict[int, Page] = field(default_factory=dict)
    #: When each cached translation was filled: kernel virtual page -> (step, call).
    tlb_filled: dict[int, tuple[int, Call | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceStep:
    step: int
    cpu: int
    call: int
    op: str
    label: str
    notes: tuple[str, ...]


@dataclass
class RunResult:
    finding: Finding | None
    steps: int
    #: Result of each call by index; calls that never ran are absent.
    results: dict[int, Any]
    switches: list[tuple[int, int]]
    injected: list[tuple[str, int]]
    trace: list[TraceStep] | None
    #: The machine in its final state, for inspection (tests, reports).
    machine: Machine


#: Steps one operation may take before I16 calls it stuck: room for the largest
#: allocation a program can ask for (thousands of pages, a PTE step or two each).
OP_STEP_BUDGET = 16384


class Machine:
    """One run of one program on a compiled :class:`~fuzzkit.registry.Kernel`."""

    def __init__(
        self,
        kernel: Kernel,
        calls: Sequence[Call],
        choices: ChoiceSource,
        *,
        trace: bool = False,
        op_step_budget: int = OP_STEP_BUDGET,
    ) -> None:
        self.kernel = kernel
        self.arch: Arch = kernel.arch
        #: Resolved named primitives: ``m.k.ptep_try_set(...)`` (DESIGN principle 5).
        self.k = cast("Primitives", kernel.prims)
        self.revision = kernel.revision
        self.cpus = [Cpu(i) for i in range(kernel.cpus)]
        for call in calls:
            self.cpus[call.cpu].queue.append(call)
        self.choices = choices
        self.op_step_budget = op_step_budget
        self.step = 0
        self.pages: dict[int, Page] = {}
        self._next_pfn = 0x1000
        #: Kernel page table: virtual page number -> raw PTE; absent is 0.
        self.ptes: dict[int, int] = {}
        #: The last write of each PTE ever written: virtual page number -> (step, cpu, call).
        self.pte_written: dict[int, tuple[int, int, Call | None]] = {}
        #: Populated page-table leaves as ``[lo, hi)`` ranges of ``vpage // PTRS_PER_PTE``.
        self.tables: list[tuple[int, int]] = []
        #: User page table: user virtual page number -> page.
        self.user_ptes: dict[int, Page] = {}
        #: Objects created by operations, by kind ("arena", "prog", ...), in creation order.
        self.handles: dict[str, list[Any]] = {}
        #: Per-subsystem state plugins keep on the machine, keyed by plugin-chosen name.
        self.state: dict[str, Any] = {}
        #: Arrivals so far per injection point (what an engine draws an ``nth`` within).
        self.arrivals: dict[str, int] = {}
        self.injected: list[tuple[str, int]] = []
        self.switches: list[tuple[int, int]] = []
        self.results: dict[int, Any] = {}
        self.trace: list[TraceStep] | None = [] if trace else None
        self._notes: list[str] | None = [] if trace else None
        obs = kernel.observers
        self._on_pte_set = obs["pte_set"]
        self._on_page_free = obs["page_free"]
        self._on_tlb_flush = obs["tlb_flush"]
        self._on_fault_done = obs["fault_done"]
        #: op_done checks per op id: each op runs only the checks that asked for it.
        self._on_op_done = kernel.op_done
        self._on_access = obs["access"]
        self._fault_path = kernel.fault_path
        self._valid = self.arch.valid_bit
        self._pfn_mask = self.arch.pfn_mask
        #: CPUs sleeping in mutex_lock(): while there are none, every CPU with work can run.
        self._sleepers = 0

    # -- injected failures ---------------------------------------------------------------

    def inject(self, point: str) -> bool:
        """Arrive at injection point ``point``; true when the choice source makes it fail."""
        nth = self.arrivals.get(point, 0) + 1
        self.arrivals[point] = nth
        if self.choices.fire(point, nth):
            self.injected.append((point, nth))
            if self._notes is not None:
                self._notes.append(f"inject {point}#{nth}")
            return True
        return False

    # -- handles and tracing -------------------------------------------------------------

    def new_handle(self, kind: str, obj: Any) -> int:
        objs = self.handles.setdefault(kind, [])
        objs.append(obj)
        return len(objs) - 1

    def handle(self, kind: str, index: int) -> Any:
        objs = self.handles.get(kind)
        return objs[index] if objs is not None and index < len(objs) else None

    def note(self, text: str) -> None:
        """Attach ``text`` to the current step of the trace (no-op when not tracing). The
        machine's own notes test ``_notes`` first instead, so that an untraced run does not
        format them."""
        if self._notes is not None:
            self._notes.append(text)

    # -- physical pages ------------------------------------------------------------------

    def alloc_page(self, owner: str, *, shared: bool = False, fail_point: str = "alloc_page") -> Page | None:
        """The page allocator; fails when injection point ``fail_point`` fires."""
        if self.inject(fail_point):
            return None
        page = Page(self._next_pfn, owner, shared)
        self.pages[self._next_pfn] = page
        self._next_pfn += 1
        return page

    def free_page(self, cpu: Cpu, page: Page) -> None:
        for check in self._on_page_free:
            check(self, cpu, page)
        page.freed = True
        if self._notes is not None:
            self._notes.append(f"free pfn {page.pfn:#x}")

    # -- kernel page table ---------------------------------------------------------------

    def populate_tables(self, lo_vpage: int, hi_vpage: int) -> None:
        """Create the page-table leaves covering ``[lo_vpage, hi_vpage)`` ahead of time."""
        self.tables.append((lo_vpage // PTRS_PER_PTE, (hi_vpage - 1) // PTRS_PER_PTE + 1))

    def has_table(self, vpage: int) -> bool:
        leaf = vpage // PTRS_PER_PTE
        return any(lo <= leaf < hi for lo, hi in self.tables)

    def page_of(self, pte: int) -> Page | None:
        """The page a raw PTE maps, or None when it is not valid."""
        if not pte & self._valid:
            return None
        return self.pages.get((pte & self._pfn_mask) >> PAGE_SHIFT)

    def set_pte(self, cpu: Cpu, vpage: int, new: int) -> int:
        """Store ``new`` into the PTE of ``vpage`` and return the old value. Every change of
        the kernel page table goes through here (the atomics are built on it)."""
        if cpu.fault is not None and not self.has_table(vpage):
            raise Violation("I14", "page-table allocation in fault context", f"at {vpage << PAGE_SHIFT:#x}")
        ptes = self.ptes
        old = ptes.get(vpage, 0)
        if new:
            ptes[vpage] = new
        elif old:
            del ptes[vpage]
        if old & self._valid:
            self.pages[(old & self._pfn_mask) >> PAGE_SHIFT].kmaps -= 1
        if new & self._valid:
            self.pages[(new & self._pfn_mask) >> PAGE_SHIFT].kmaps += 1
        self.pte_written[vpage] = (self.step, cpu.id, cpu.call)
        for check in self._on_pte_set:
            check(self, cpu, vpage, old, new)
        if self._notes is not None:
            d = self.arch.describe_pte
            self._notes.append(f"pte {vpage << PAGE_SHIFT:#x}: {d(old)} -> {d(new)}")
        return old

    # -- user page table ------------------------------------------------------------------

    def user_map(self, uvpage: int, page: Page) -> None:
        """Map ``page`` at user virtual page ``uvpage`` (takes a page reference)."""
        self.user_ptes[uvpage] = page
        page.umaps += 1

    def user_zap(self, lo_uvpage: int, hi_uvpage: int) -> int:
        """Remove user mappings in ``[lo, hi)``; returns how many there were."""
        gone = [v for v in self.user_ptes if lo_uvpage <= v < hi_uvpage]
        for v in gone:
            self.user_ptes.pop(v).umaps -= 1
        return len(gone)

    # -- TLBs ----------------------------------------------------------------------------

    def tlb_flush(self, cpu: Cpu, lo_vpage: int, hi_vpage: int) -> None:
        """Invalidate ``[lo_vpage, hi_vpage)`` in every CPU's TLB (flush_tlb_kernel_range
        is a synchronous IPI broadcast)."""
        for c in self.cpus:
            tlb = c.tlb
            for vpage in [v for v in tlb if lo_vpage <= v < hi_vpage]:
                tlb.pop(vpage).tlb_refs -= 1
        for check in self._on_tlb_flush:
            check(self, cpu, lo_vpage, hi_vpage)
        if self._notes is not None:
            self._notes.append(f"tlb flush {lo_vpage << PAGE_SHIFT:#x}+{(hi_vpage - lo_vpage)}p")

    def translate(self, cpu: Cpu, vpage: int) -> Page | None:
        """Hardware translation: the TLB first, then a walk that fills it."""
        page = cpu.tlb.get(vpage)
        if page is None:
            pte = self.ptes.get(vpage, 0)
            if pte & self._valid:
                page = self.pages[(pte & self._pfn_mask) >> PAGE_SHIFT]
                cpu.tlb[vpage] = page
                cpu.tlb_filled[vpage] = (self.step, cpu.call)
                page.tlb_refs += 1
        return page

    # -- causes --------------------------------------------------------------------------

    def pte_cause(self, vpage: int) -> Cause | None:
        """The last write of the PTE of ``vpage``, or None when it was never written."""
        written = self.pte_written.get(vpage)
        if written is None:
            return None
        return Cause.of("pte", written, vpage)

    def tlb_cause(self, cpu: Cpu, vpage: int) -> Cause | None:
        """The walk that filled ``cpu``'s cached translation of ``vpage``, or None."""
        filled = cpu.tlb_filled.get(vpage)
        if filled is None or vpage not in cpu.tlb:
            return None
        step, call = filled
        return Cause.of("tlb", (step, cpu.id, call), vpage)

    def touch(self, cpu: Cpu, page: Page, vpage: int, addr: int, write: bool, value: int, how: str) -> int:
        """Read or write one word of ``page``; returns the value read (or written)."""
        for check in self._on_access:
            check(self, cpu, vpage, page, write, how)
        word = (addr & 0xFFF) >> 3
        if write:
            page.data[word] = value
            return value
        return page.data.get(word, 0)

    # -- kernel accesses and the fault path ----------------------------------------------

    def kernel_access(
        self,
        cpu: Cpu,
        addr: int,
        write: bool,
        value: int = 0,
        *,
        extable: bool = False,
        prefetch: bool = False,
        how: str = "kernel",
    ) -> Steps:
        """A kernel-mode load or store of one word at ``addr``. Returns ``(outcome, value)``
        where outcome is "ok" or the fault outcome that ended the access (FIXUP, IGNORED,
        KFENCE, OOPS). A RETRY outcome re-executes the access, as the CPU would; a handler
        that never makes progress shows up as an op that exceeds its step budget (I16)."""
        vpage = addr >> PAGE_SHIFT
        tlb = cpu.tlb
        while True:
            # translate() and touch(), inlined: this is the access nearly every step makes.
            page = tlb.get(vpage)
            if page is None:
                pte = self.ptes.get(vpage, 0)
                if pte & self._valid:
                    page = tlb[vpage] = self.pages[(pte & self._pfn_mask) >> PAGE_SHIFT]
                    cpu.tlb_filled[vpage] = (self.step, cpu.call)
                    page.tlb_refs += 1
            if page is not None:
                for check in self._on_access:
                    check(self, cpu, vpage, page, write, how)
                word = (addr & 0xFFF) >> 3
                if write:
                    page.data[word] = v = value
                    yield "store"
                else:
                    v = page.data.get(word, 0)
                    yield "load"
                return "ok", v
            yield "fault"
            fault = Fault(addr, write, self.arch.missing_fault, extable=extable, prefetch=prefetch)
            outcome = yield from self.fault(cpu, fault)
            if outcome != RETRY:
                return outcome, 0

    def fault(self, cpu: Cpu, fault: Fault) -> Steps:
        """Run the arch's kernel fault path (R14) and return its outcome."""
        outer, cpu.fault = cpu.fault, fault
        try:
            outcome = OOPS
            for stage, kinds in self._fault_path:
                if kinds is None or fault.kind in kinds:
                    result = yield from stage(self, cpu, fault)
                    if result is not None:
                        outcome = result
                        break
        finally:
            cpu.fault = outer
        for check in self._on_fault_done:
            check(self, cpu, fault, outcome)
        if self._notes is not None:
            self._notes.append(f"fault {fault.addr:#x} {fault.kind}: {outcome}")
        return outcome

    # -- locks ---------------------------------------------------------------------------

    def mutex_lock(self, cpu: Cpu, lock: Mutex) -> Steps:
        """Sleep until ``lock`` is free, then take it (one atomic step)."""
        if lock.owner is not None:
            cpu.waiting = lock
            self._sleepers += 1
            while lock.owner is not None:
                yield f"wait {lock.name}"
            cpu.waiting = None
            self._sleepers -= 1
        lock.owner = cpu.id
        yield f"lock {lock.name}"

    def mutex_unlock(self, cpu: Cpu, lock: Mutex) -> None:
        lock.owner = None

    # -- the scheduler -------------------------------------------------------------------

    def run(self) -> RunResult:
        """Interleave the CPUs' operations until all are done or an invariant breaks.

        This loop is the per-step hot path: everything it needs is bound to locals first,
        and one step is a handful of attribute reads, the choice (only when two or more
        CPUs can run) and one ``send`` into the running op. A CPU can run when it has work
        (an op in flight or queued) and does not sleep on a lock that is still held; CPUs
        only ever run out of work (queues are never refilled), so the ones with work are kept
        in ``active``, and the sleep test is skipped while nobody sleeps."""
        finding = None
        cpu: Cpu | None = None
        cpus = self.cpus
        pick = self.choices.pick
        budget = self.op_step_budget
        tracing = self.trace is not None
        op_done = self._on_op_done
        results = self.results
        switches = self.switches
        injected = self.injected
        step = self.step
        # Replaced, never changed in place: a choice source may hold on to ``runnable``.
        active = [c for c in cpus if c.gen is not None or c.queue]
        guarded = guard.arm()
        try:
            while active:
                if self._sleepers:
                    runnable = [c for c in active if c.waiting is None or c.waiting.owner is None]
                    if not runnable:
                        # Everyone with work sleeps, so each is inside mutex_lock().
                        cpu = active[0]
                        lock = cpu.waiting.name if cpu.waiting else "?"
                        raise Violation(
                            "I16", "deadlock: a CPU sleeps on a lock forever", f"cpu{cpu.id} on {lock}"
                        )
                else:
                    runnable = active
                step = self.step = step + 1
                if len(runnable) == 1:
                    cpu = runnable[0]
                else:
                    default = cpu if cpu in runnable else runnable[0]
                    cpu = pick(step, runnable, default)
                    if cpu is not default:
                        switches.append((step, cpu.id))
                gen = cpu.gen
                if gen is None:
                    call = cpu.call = cpu.queue.popleft()
                    cpu.op_steps = 0
                    cpu.injected_at_start = len(injected)
                    gen = cpu.gen = call.spec.executor(self, cpu, call.args)
                else:
                    call = cpu.call  # type: ignore[assignment]
                op_steps = cpu.op_steps = cpu.op_steps + 1
                if op_steps > budget:
                    raise Violation(
                        "I16", "operation did not finish within its step budget", f"{budget} steps"
                    )
                try:
                    label = gen.send(None)
                except StopIteration as stop:
                    cpu.gen = None
                    if not cpu.queue:
                        active = [c for c in active if c is not cpu]
                    label = "done"
                    value = results[call.index] = stop.value
                    for check in op_done[call.spec.id]:
                        check(self, cpu, call, value)
                if tracing:
                    self._record(cpu, call, label)
        except Violation as v:
            finding = self._finding(v, cpu)
            if self.trace is not None and cpu is not None and cpu.call is not None:
                self._record(cpu, cpu.call, f"VIOLATION {v}")
        except (Exception, SystemExit) as exc:
            # Not a finding: plugin code (an executor, primitive or check) raised or hung.
            raise PluginFailure(blame(exc, self.kernel.modules, cpu, self.step)) from exc
        finally:
            if guarded:
                guard.disarm()
            for c in cpus:
                if c.gen is not None:
                    c.gen.close()
        return RunResult(finding, self.step, self.results, self.switches, self.injected, self.trace, self)

    def _record(self, cpu: Cpu, call: Call, label: str) -> None:
        assert self.trace is not None and self._notes is not None
        self.trace.append(TraceStep(self.step, cpu.id, call.index, call.spec.id, label, tuple(self._notes)))
        self._notes = []

    def _finding(self, v: Violation, cpu: Cpu | None) -> Finding:
        call = cpu.call if cpu is not None else None
        return Finding(
            spec_id=v.spec_id,
            message=v.message,
            op=call.spec.id if call else "-",
            call=call.index if call else -1,
            cpu=cpu.id if cpu else -1,
            step=self.step,
            arch=self.arch.name,
            revision=self.revision,
            replaced=self.kernel.replaced,
            detail=v.detail,
            cause=v.cause,
        )


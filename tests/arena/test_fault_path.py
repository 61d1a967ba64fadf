"""The kernel fault path as the arena sees it: which faults reach ``bpf_arena_handle_page_fault``
(R14), what the handler decides (R15), the strict-zero install against stray A/D bits (R16,
R17) and the reports it makes (R18), on both arches wherever they differ."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fuzzkit_arena.arena import GUARD_SZ, SZ_4G, Arena, Stream, clear_lo32
from helpers import ARCHES, REVISIONS, Op, drive, preempted, run, slot_state, step_of

from fuzzkit import OOPS, PAGE_SHIFT, PAGE_SIZE, RETRY, Fault, Frame, RunResult
from fuzzkit.runner import Session

CREATE: Op = ("arena.create", {"max_entries": 16})
#: An arena placed by the first mmap: user_vm_start has non-zero low 32 bits (0x26200000), so
#: a report that rebased with the full user_vm_start instead of clear_lo32() would show.
CREATE_MMAP: list[Op] = [
    ("arena.create", {"max_entries": 16, "user_vm_start": "mmap"}),
    ("arena.mmap", {"arena": 0}),
]


def kaccess(pgoff: int = 3, *, cpu: int = 0, **args: Any) -> Op:
    """A kfunc touching arena memory; by default a load from a BPF main program."""
    return (cpu, "arena.kernel_access", {"arena": 0, "pgoff": pgoff, "stack": "main", **args})


def the_arena(result: RunResult, index: int = 0) -> Arena:
    arena: Arena = result.machine.handles["arena"][index]
    return arena


def stream(result: RunResult, index: int = 0) -> Stream:
    return the_arena(result, index).prog.stream


# -- R14: what reaches the arena hook ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_R14_exception_table_fixup_runs_before_the_arena_hook(session: Session, arch: str) -> None:
    # A JITed BPF access has an exception-table entry: the fixup claims the fault although a
    # main program with an arena is on the stack and the address is in the band, so the
    # hook never installs the scratch page (R12). The one report is the op's own.
    r = run(
        session,
        [CREATE, ("arena.prog_access", {"arena": 0, "pgoff": 3, "write": True})],
        arch=arch,
        trace=True,
    )
    assert r.finding is None and r.results[1] == "fixup"
    assert slot_state(r, 0, 3) == "EMPTY" and r.machine.ptes == {}
    assert [t.label for t in r.trace or [] if t.call == 1] == ["fault", "extable fixup", "done"]
    assert len(stream(r).attempts) == 1
    # The same address from a kfunc (no exception-table entry) is recovered by the hook.
    k = run(session, [CREATE, kaccess(3)], arch=arch)
    assert k.finding is None and slot_state(k, 0, 3) == "SCRATCH"


@pytest.mark.parametrize(("arch", "outcome", "state"), [("x86", "ignored", "EMPTY"), ("arm64", 0, "SCRATCH")])
def test_R14_prefetch_faults_are_ignored_before_the_hook_on_x86_only(
    session: Session, arch: str, outcome: Any, state: str
) -> None:
    # x86's is_prefetch() check precedes KFENCE and the arena hook. arm64's path has no such
    # stage: the faulting access reaches the hook and is recovered like a load.
    r = run(session, [CREATE, kaccess(3, insn="prefetch")], arch=arch)
    assert r.finding is None
    assert r.results[1] == outcome
    assert slot_state(r, 0, 3) == state
    assert len(stream(r).attempts) == (state == "SCRATCH")


@pytest.mark.parametrize("arch", ARCHES)
def test_R14_kfence_pool_faults_are_claimed_before_the_arena_hook(session: Session, arch: str) -> None:
    r = run(session, [CREATE, kaccess(5, where="kfence")], arch=arch, trace=True)
    assert r.finding is None and r.results[1] == "kfence"
    # The hook never ran: no PTE read or written, no report.
    labels = [t.label for t in r.trace or [] if t.call == 1]
    assert "kfence" in labels and "ptep_get" not in labels
    assert r.machine.ptes == {} and stream(r).attempts == []


@pytest.mark.parametrize("arch", ARCHES)
def test_R14_only_missing_translation_faults_reach_the_arena_hook(session: Session, arch: str) -> None:
    # A protection (x86) / permission (arm64) fault on an arena slot, with a main program on
    # the stack, oopses: KFENCE and the arena hook run for not-present/translation faults.
    r = run(session, [CREATE], arch=arch)
    m, arena = r.machine, the_arena(r)
    cpu = m.cpus[0]
    other = next(k for k in m.arch.fault_kinds if k != m.arch.missing_fault)
    cpu.stack = [Frame("kernel"), Frame("bpf_main", arena.prog), Frame("kfunc")]
    assert drive(m.fault(cpu, Fault(arena.kaddr(arena.uaddr(3)), True, other))) == OOPS
    assert m.ptes == {} and stream(r).attempts == []
    assert drive(m.fault(cpu, Fault(arena.kaddr(arena.uaddr(3)), True, m.arch.missing_fault))) == RETRY
    assert slot_state(r, 0, 3) == "SCRATCH"


@pytest.mark.parametrize(("arch", "reports"), [("x86", 1), ("arm64", 0)])
def test_R14_arm64_spurious_translation_fault_retries_without_a_report(
    session: Session, arch: str, reports: int
) -> None:
    # cpu0's kfunc walks the empty PTE and faults; before its fault path runs, cpu1 allocates
    # the slot. arm64 re-walks (AT S1E1R), finds it translating and retries silently. x86
    # has no such check: the arena hook finds the PTE not none, installs nothing, and still
    # reports (R15) before the retry reads the real page.
    ops = [CREATE, kaccess(3), (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3})]
    r = preempted(session, ops, cpu=0, after="fault", to=1, arch=arch)
    assert r.finding is None
    assert r.results[1] == 0 and r.results[2] != 0, "the access completed on the allocated page"
    assert slot_state(r, 0, 3) == "REAL"
    assert len(stream(r).attempts) == reports


# -- R15: the handler's decision ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    ("stack", "recovers"),
    [("main", True), ("main_sub", True), ("sub_only", True), ("none", False), ("main_no_arena", False)],
)
def test_R15_stack_walk_attributes_the_innermost_program_to_its_main(
    session: Session, arch: str, stack: str, recovers: bool
) -> None:
    # kernel/bpf/core.c find_from_stack_cb(): the innermost BPF frame, a subprogram's too
    # (a timer callback runs with no main program frame below it), stands for its main
    # program through aux->main_prog_aux.
    r = run(session, [CREATE, kaccess(4, stack=stack)], arch=arch)
    assert r.finding is None
    if recovers:
        # The report goes to the main program's stream.
        assert r.results[1] == 0 and slot_state(r, 0, 4) == "SCRATCH"
        assert len(stream(r).lines) == 1 and "arena0.prog" in stream(r).lines[0]
    else:
        assert r.results[1] == "oops" and r.machine.ptes == {}
        assert stream(r).attempts == []


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_main_program_of_another_arena_does_not_recover_this_one(session: Session, arch: str) -> None:
    # The program on the stack uses arena1; the address is in arena0's band, outside arena1's.
    r = run(session, [CREATE, CREATE, kaccess(4, stack="other_arena")], arch=arch)
    assert r.finding is None and r.results[2] == "oops"
    assert r.machine.ptes == {} and stream(r, 0).attempts == stream(r, 1).attempts == []


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    ("where", "recovers"), [("upper_guard", True), ("lower_guard", False), ("outside", False)]
)
def test_R15_recovery_band_includes_the_upper_half_guard_only(
    session: Session, arch: str, where: str, recovers: bool
) -> None:
    r = run(session, [CREATE, kaccess(2, where=where)], arch=arch)
    assert r.finding is None
    arena = the_arena(r)
    if recovers:
        vpage = (arena.kbase + SZ_4G + 2 * PAGE_SIZE) >> PAGE_SHIFT
        assert r.results[1] == 0
        assert r.machine.page_of(r.machine.ptes[vpage]) is arena.scratch
        assert len(stream(r).lines) == 1
    else:
        assert r.results[1] == "oops" and r.machine.ptes == {} and stream(r).attempts == []


def test_R15_band_bounds(session: Session) -> None:
    arena = the_arena(run(session, [CREATE]))
    kbase = arena.kbase
    assert not arena.in_recovery_band(kbase - 1), "the lower half-guard is excluded on purpose"
    assert not arena.in_recovery_band(kbase - GUARD_SZ // 2)
    assert arena.in_recovery_band(kbase)
    assert arena.in_recovery_band(kbase + SZ_4G + GUARD_SZ // 2 - 1)
    assert not arena.in_recovery_band(kbase + SZ_4G + GUARD_SZ // 2)


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_report_is_made_when_the_install_race_is_lost_to_an_alloc(session: Session, arch: str) -> None:
    # cpu0's hook reads the PTE (none) and is preempted; cpu1 allocates the slot; cpu0's
    # strict-zero ptep_try_set then fails. The handler ignores that result and reports anyway.
    ops = [CREATE, kaccess(3), (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3})]
    r = preempted(session, ops, cpu=0, after="ptep_get", to=1, arch=arch)
    assert r.finding is None
    assert slot_state(r, 0, 3) == "REAL", "the alloc's page stayed: the install lost"
    assert [cpu for cpu, _ in stream(r).attempts] == [0]
    assert r.results[1] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_both_cpus_report_when_they_fault_on_one_slot(session: Session, arch: str) -> None:
    # Same window, but cpu1 is another kfunc faulting on the slot: it installs the scratch
    # page; cpu0's install fails on the non-zero PTE and it reports too.
    ops = [CREATE, kaccess(3), kaccess(3, cpu=1, insn="store")]
    r = preempted(session, ops, cpu=0, after="ptep_get", to=1, arch=arch)
    assert r.finding is None and slot_state(r, 0, 3) == "SCRATCH"
    texts = dict(stream(r).attempts)
    assert sorted(texts) == [0, 1]
    assert "WRITE" in texts[1] and "READ" in texts[0]
    assert r.results[1] == 0xA5, "cpu0's retried load reads what cpu1 stored into the scratch page"


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_handler_takes_no_lock(session: Session, arch: str) -> None:
    # cpu0 holds arena->spinlock (mid-allocation) when cpu1's kfunc faults: the handler
    # recovers without waiting for it, as it must when the fault nests inside the holder.
    ops = [CREATE, ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 9}), kaccess(3, cpu=1)]
    r = preempted(session, ops, cpu=0, after="lock arena0.spinlock", to=1, arch=arch)
    assert r.finding is None and slot_state(r, 0, 3) == "SCRATCH"
    cpu1 = [t for t in r.trace or [] if t.cpu == 1]
    assert not any(t.label.startswith("wait") for t in cpu1)
    assert cpu1[-1].step < step_of(r, 0, "done", 2), "cpu1 finished while cpu0 still held the lock"


# -- R16, R17: stray A/D bits against the strict-zero install (x86) ---------------------------------

#: Allocate slot 3 and free it; the free's ptep_get_and_clear is the first arrival at the
#: pte_erratum_bits injection point, so on x86 the cleared PTE keeps Accessed|Dirty: pte_none()
#: says none, the strict-zero ptep_try_set fails on it.
STRAY_BITS: list[Op] = [
    CREATE,
    ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3}),
    ("arena.free", {"arena": 0, "pgoff": 3}),
]


@pytest.mark.parametrize("revision", REVISIONS)
def test_R16_stray_ad_bits_make_the_scratch_hook_refault_until_the_step_budget(
    session: Session, revision: str
) -> None:
    # The hook sees "none", its ptep_try_set fails, it reports and retries; the access faults
    # again forever. The op step budget turns that into an I16 finding instead of a hang.
    r = run(session, [*STRAY_BITS, kaccess(3)], revision=revision, inject=[("pte_erratum_bits", 1)])
    assert r.injected == [("pte_erratum_bits", 1)]
    assert r.finding is not None and r.finding.spec_id == "I16"
    assert r.finding.op == "arena.kernel_access" and "(x86, " in r.finding.title
    arena = the_arena(r)
    assert r.machine.ptes[arena.vpage(3)] == r.machine.arch.erratum_bits
    # Every refault reported; the stream kept what fit in its bytes and dropped the rest (R18).
    s = stream(r)
    size = len(s.lines[0]) + 1
    assert s.dropped > 100 and s.capacity - size <= s.used < s.capacity
    assert s.used == len(s.lines) * size


def test_R16_arm64_has_no_stray_bits_and_the_same_program_recovers(session: Session) -> None:
    r = run(session, [*STRAY_BITS, kaccess(3)], arch="arm64", inject=[("pte_erratum_bits", 1)])
    assert r.finding is None and r.injected == []
    assert slot_state(r, 0, 3) == "SCRATCH" and len(stream(r).lines) == 1


@pytest.mark.parametrize(
    ("arch", "revision", "spins"),
    [("x86", "fixed", True), ("x86", "merged", False), ("arm64", "fixed", False), ("arm64", "merged", False)],
)
def test_R16_fixed_alloc_loop_spins_on_stray_ad_bits(
    session: Session, arch: str, revision: str, spins: bool
) -> None:
    # fixed: while (!ptep_try_set) { old = ptep_get; if (pte_none(old)) continue; ... } never
    # leaves when pte_none and the cmpxchg disagree. merged checks pte_none and stores plainly.
    ops = [*STRAY_BITS, ("arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 3})]
    r = run(session, ops, arch=arch, revision=revision, inject=[("pte_erratum_bits", 1)])
    if spins:
        assert r.finding is not None and r.finding.spec_id == "I16"
        assert r.finding.op == "arena.alloc" and r.finding.title.endswith(" in arena.alloc (x86, fixed)")
    else:
        assert r.finding is None and slot_state(r, 0, 3) == "REAL" and r.results[3] != 0


# -- R18: reports -------------------------------------------------------------------------------------

REPORT = re.compile(r"^ERROR: Arena (READ|WRITE) access at unmapped address 0x([0-9a-f]+) \[(.*)\]$")


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(("insn", "word"), [("load", "READ"), ("store", "WRITE")])
def test_R18_report_text_with_the_rebased_page_address(
    session: Session, arch: str, insn: str, word: str
) -> None:
    r = run(session, [*CREATE_MMAP, kaccess(5, insn=insn, word=7)], arch=arch)
    assert r.finding is None
    arena = the_arena(r)
    assert arena.user_vm_start & 0xFFFFFFFF, "the low 32 bits are non-zero, so rebasing shows"
    (line,) = stream(r).lines
    match = REPORT.match(line)
    assert match is not None, line
    assert match[1] == word
    addr = int(match[2], 16)
    # clear_lo32(user_vm_start) + (page address - kbase): the slot's user address, page aligned
    # although the access was to word 7.
    assert addr == clear_lo32(arena.user_vm_start) + (arena.vpage(5) << PAGE_SHIFT) - arena.kbase
    assert addr == arena.uaddr(5) and addr % PAGE_SIZE == 0
    assert match[3].split(" <- ")[:2] == ["kfunc", "arena0.prog"], "followed by the stack"


def test_R18_upper_guard_report_is_rebased_past_4g(session: Session) -> None:
    r = run(session, [*CREATE_MMAP, kaccess(2, where="upper_guard", insn="store")])
    arena = the_arena(r)
    match = REPORT.match(stream(r).lines[0])
    assert match is not None
    assert int(match[2], 16) == clear_lo32(arena.user_vm_start) + SZ_4G + 2 * PAGE_SIZE


@pytest.mark.parametrize("arch", ARCHES)
def test_R18_stream_capacity_counts_bytes(session: Session, arch: str) -> None:
    # kernel/bpf/stream.c counts the stream's capacity in bytes (BPF_STREAM_MAX_CAPACITY,
    # 100000): twenty faulting reads all report, where a count of 16 reports dropped four.
    n = 20
    ops = [("arena.create", {"max_entries": 32}), *(kaccess(p) for p in range(n))]
    r = run(session, ops, arch=arch)
    assert r.finding is None
    s = stream(r)
    assert s.capacity == 100000 and len(s.lines) == n and s.dropped == 0 and len(s.attempts) == n
    assert s.used == sum(len(line) + 1 for line in s.lines)
    assert all(slot_state(r, 0, p) == "SCRATCH" for p in range(n))


def test_R18_a_report_that_would_reach_the_capacity_is_dropped() -> None:
    # bpf_stream_consume_capacity(): refused when the bytes held reach the capacity, or would
    # with this element; a smaller element may still fit afterwards.
    class NoInjection:
        def inject(self, point: str) -> bool:
            return False

        def note(self, text: str) -> None:
            pass

        trace = None

    m: Any = NoInjection()
    s = Stream(capacity=100)
    assert s.push(m, 0, "x" * 48) and s.used == 49
    assert not s.push(m, 0, "x" * 50), "49 + 51 bytes reach the capacity"
    assert s.push(m, 0, "x" * 49) and s.used == 99
    assert not s.push(m, 0, ""), "99 + 1 bytes reach it too"
    assert s.dropped == 2 and len(s.attempts) == 4


@pytest.mark.parametrize("arch", ARCHES)
def test_R18_injected_stream_capacity_drops_the_report(session: Session, arch: str) -> None:
    r = run(session, [CREATE, kaccess(3), kaccess(4)], arch=arch, inject=[("stream_capacity", 1)])
    assert r.finding is None and r.injected == [("stream_capacity", 1)]
    s = stream(r)
    assert s.dropped == 1 and len(s.lines) == 1 and len(s.attempts) == 2
    assert hex(the_arena(r).uaddr(4)) in s.lines[0]
    assert slot_state(r, 0, 3) == slot_state(r, 0, 4) == "SCRATCH"

"""Design variants of the free path's clear callback, ``apply_range_clear_cb`` (R7, R9, R17),
asked the way a user asks fuzzkit: a plugin replaces the primitive, explore() tries every
schedule of small two-CPU programs within a preemption bound, the oracles judge.

Two questions:

* "What if the clear were a plain read then store (``old = ptep_get; set_pte_at(0)``) instead
  of the atomic ``ptep_get_and_clear``?" In this model, as in kernel/bpf/arena.c, that is
  benign; see :func:`test_I8_I2_plain_read_then_store_clear_is_benign_in_every_schedule`.
* "What if it did not skip the scratch page?" The kernel's own comment answers: "Without the
  skip, scratch_page would be freed". I1 says so at the first free of a scratched slot.
"""

from __future__ import annotations

import pytest
from fuzzkit_arena.arena import Arena
from helpers import Op, program, run, slot_state
from variants import arena_clear as clear

from fuzzkit import load_registry
from fuzzkit.explore import explore
from fuzzkit.runner import Session

#: Preemptions explored per schedule: every interleaving with at most this many switches.
BOUND = 3


@pytest.fixture(scope="module")
def read_then_store() -> Session:
    return Session(load_registry(extra=[("plain_clear", clear.read_then_store)]))


@pytest.fixture(scope="module")
def no_scratch_skip() -> Session:
    return Session(load_registry(extra=[("no_skip", clear.no_scratch_skip)]))


CREATE: Op = (0, "arena.create", {"max_entries": 16})


def alloc(pgoff: int, cpu: int = 0, page_cnt: int = 1) -> Op:
    return (cpu, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": pgoff, "page_cnt": page_cnt})


def free(pgoff: int, cpu: int = 0, page_cnt: int = 1, sleepable: bool = True) -> Op:
    return (cpu, "arena.free", {"arena": 0, "pgoff": pgoff, "page_cnt": page_cnt, "sleepable": sleepable})


def kaccess(pgoff: int, cpu: int = 1, insn: str = "load") -> Op:
    return (cpu, "arena.kernel_access", {"arena": 0, "pgoff": pgoff, "stack": "main", "insn": insn})


#: Two-CPU programs in which a free's clear walk can interleave with everything else that
#: writes the slot's PTE: the lock-free scratch installer (kernel faults) and, under the
#: lock, allocations, deferred frees and user faults.
RACES: dict[str, list[Op]] = {
    # A kernel fault on cpu1 before, during or after cpu0's free of the allocated slot.
    "kaccess_vs_free": [CREATE, alloc(3), free(3), kaccess(3, insn="store")],
    # The slot is SCRATCH when freed (R9), and cpu1 keeps faulting on it.
    "kaccess_vs_free_of_scratch": [CREATE, kaccess(3, cpu=0), free(3), kaccess(3), kaccess(3, insn="store")],
    # The worker clears the span the non-sleepable free queued (R8).
    "kaccess_vs_deferred_free": [
        CREATE,
        alloc(3),
        free(3, sleepable=False),
        (0, "arena.free_worker", {"arena": 0}),
        kaccess(3),
    ],
    # A three-slot walk over REAL, REAL, EMPTY while cpu1 touches the EMPTY slot and a REAL one.
    "kaccess_during_multi_page_walk": [
        CREATE,
        alloc(3, page_cnt=2),
        free(3, page_cnt=3),
        kaccess(5),
        kaccess(4),
    ],
    # The page is user-mapped when freed: the walk, the zap and the free order against cpu1.
    "kaccess_vs_free_of_user_mapped": [
        CREATE,
        (0, "arena.mmap", {"arena": 0}),
        alloc(3),
        (0, "arena.user_access", {"arena": 0, "pgoff": 3}),
        free(3),
        kaccess(3),
    ],
}
#: On x86 only: the same interleavings on arm64 first reach the free path's own window (an
#: install between a free's unlock and its TLB flush, I10), which the clear callback does not
#: take part in.
X86_RACES: dict[str, list[Op]] = {
    # alloc (fixed revision: replace the scratch PTE) racing the free of the scratched slot.
    "alloc_vs_free_of_scratch": [CREATE, kaccess(3, cpu=0), free(3), alloc(3, cpu=1)],
    # Two frees of one slot, one after a kernel fault on it.
    "two_frees_vs_kaccess": [CREATE, alloc(3), free(3), kaccess(3), free(3, cpu=1)],
}
CASES = [
    *((name, arch, ops) for name, ops in RACES.items() for arch in ("x86", "arm64")),
    *((name, "x86", ops) for name, ops in X86_RACES.items()),
]


@pytest.mark.parametrize(("name", "arch", "ops"), CASES, ids=[f"{n}-{a}" for n, a, _ in CASES])
def test_I8_I2_plain_read_then_store_clear_is_benign_in_every_schedule(
    session: Session, read_then_store: Session, name: str, arch: str, ops: list[Op]
) -> None:
    """A plain ``ptep_get`` then ``set_pte_at(0)`` in the free's clear callback never leaks
    a page, frees one still mapped or cached, or miscounts (I8, I2, I13, ...): every schedule
    within the bound is clean, as it is with the atomic ``ptep_get_and_clear``.

    Why: a non-atomic read-modify-write only loses an update when another writer stores to
    the PTE between the read and the store. The writers are (1) allocation, deferred and
    sleepable free, user faults: all hold ``arena->spinlock``, as does the walk calling the
    callback, so they cannot run in that window; and (2) the kernel-fault scratch installer,
    which takes no lock but writes only with the strict-zero ``ptep_try_set`` (R16), i.e.
    only into a PTE whose raw value is 0. The walk calls the callback only on PTEs that are
    not none, hence not zero, and nothing but a lock holder makes them zero, so the
    installer cannot write between the callback's read and its store. The atomic exchange
    would matter only if some writer could change a PTE the callback is clearing, and under
    this locking none can. (Hardware setting A/D bits is modelled inside
    ``ptep_get_and_clear`` only; see the next test.)
    """
    prog = program(ops, arch=arch, revision="fixed", cpus=2)
    # The variant really runs in this program: its free writes the PTE with a plain store.
    plain = read_then_store.run(prog, trace=True)
    assert any(t.label == "set_pte_at" and t.op.startswith("arena.free") for t in plain.trace or [])
    variant = explore(read_then_store, prog, max_switches=BOUND)
    assert variant.exhaustive and variant.found is None
    real = explore(session, prog, max_switches=BOUND)
    assert real.exhaustive and real.found is None
    # One scheduling point more per cleared PTE: the variant has strictly more schedules.
    assert variant.runs > real.runs > 100


def test_R16_plain_clear_never_reaches_the_stray_ad_bits(session: Session, read_then_store: Session) -> None:
    # x86 with hardware leaving Accessed|Dirty in a cleared PTE (pte_erratum_bits). The real
    # clear's ptep_get_and_clear is where the model lets that happen; the kernel fault after
    # the free then refaults forever (I16, R16). The plain-store clear never arrives at that
    # point, so it is clean, and in no schedule does it leak or double-map (no I8/I2/I13).
    ops = [CREATE, alloc(3), free(3), kaccess(3)]
    prog = program(ops, arch="x86", revision="merged", cpus=2, inject=[("pte_erratum_bits", 1)])
    variant = explore(read_then_store, prog, max_switches=BOUND)
    assert variant.exhaustive and variant.found is None
    real = explore(session, prog, max_switches=BOUND)
    assert real.found is not None and real.found.finding is not None
    assert real.found.finding.spec_id == "I16" and real.found.finding.op == "arena.kernel_access"


# -- the clear callback that forgets to skip the scratch page --------------------------------------

FREE_SCRATCHED: list[Op] = [CREATE, kaccess(3, cpu=0), free(3)]


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_I1_fires_when_the_clear_callback_does_not_skip_scratch(no_scratch_skip: Session, arch: str) -> None:
    r = run(no_scratch_skip, FREE_SCRATCHED, arch=arch)
    assert r.finding is not None and r.finding.spec_id == "I1"
    assert r.finding.title == f"I1 scratch page freed before destroy in arena.free ({arch}, fixed)"
    assert r.finding.detail == "arena0"
    assert r.finding.replaced == (("apply_range_clear_cb", "no_skip"),)


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_I1_quiet_the_real_clear_skips_scratch(session: Session, arch: str) -> None:
    r = run(session, FREE_SCRATCHED, arch=arch)
    assert r.finding is None and r.results[2] == "freed"
    arena: Arena = r.machine.handles["arena"][0]
    assert slot_state(r, 0, 3) == "EMPTY", "R9: the free resets SCRATCH to EMPTY"
    assert not arena.scratch.freed and arena.nr_pages == 0


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_I1_no_scratch_skip_is_found_when_the_scratch_install_races_the_free(
    session: Session, no_scratch_skip: Session, arch: str
) -> None:
    # cpu1 scratches slot 4 or 5 of the range cpu0 frees; when that happens before the walk,
    # the walk meets the scratch page. explore reaches such a schedule; the real callback
    # survives every schedule.
    prog = program(RACES["kaccess_during_multi_page_walk"], arch=arch, revision="fixed", cpus=2)
    found = explore(no_scratch_skip, prog, max_switches=BOUND).found
    assert found is not None and found.finding is not None
    assert found.finding.spec_id == "I1" and found.finding.op == "arena.free"
    assert explore(session, prog, max_switches=BOUND).found is None

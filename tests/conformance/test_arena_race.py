"""Conformance: tools/testing/selftests/bpf/prog_tests/arena_race.c with progs/arena_race.c.

A 4-page arena at a 4 GiB aligned map_extra (1 << 44 on x86, 1 << 32 on arm64: the fixed
start). ``alloc_old`` allocates page 1 and writes the old marker; ``free_page`` frees it,
sleepably from a syscall program or deferred from a tracepoint; ``try_realloc`` allocates
page 1 again and writes the new marker. Markers are one byte here (the model's values)."""

from __future__ import annotations

import pytest
from helpers import ARCHES, REVISIONS, Op, preempted, program, run
from selftest_programs import MMAP, alloc, create, store

from fuzzkit.explore import explore
from fuzzkit.runner import Session

OLD, NEW = 0x44, 0x88
ARENA: list[Op] = [create(4), MMAP]
ALLOC_OLD: list[Op] = [alloc(at=1), store(1, OLD)]


def free_page(*, cpu: int = 0, sleepable: bool = True) -> Op:
    return (cpu, "arena.free", {"arena": 0, "pgoff": 1, "page_cnt": 1, "sleepable": sleepable})


def try_realloc(cpu: int) -> list[Op]:
    return [(cpu, *alloc(at=1)), (cpu, *store(1, NEW))]


def user_read(cpu: int) -> Op:
    return (cpu, "arena.user_access", {"arena": 0, "pgoff": 1, "write": False})


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_realloc_after_flush(session: Session, arch: str, revision: str) -> None:
    # free_before_flush, its ending: once the free (and its flush) completed, try_realloc
    # gets the same address and user space reads the new marker.
    ops = [*ARENA, *ALLOC_OLD, free_page(), *try_realloc(0), user_read(0)]
    r = run(session, ops, arch=arch, revision=revision)
    assert r.finding is None
    assert r.results[5] == r.results[2] and r.results[7] == NEW


@pytest.mark.parametrize("arch", ARCHES)
def test_deferred_free_realloc_after_the_worker(session: Session, arch: str) -> None:
    # deferred_free_before_flush: the tracepoint's free is queued (R8); until the worker ran
    # the page is still allocated, so try_realloc fails; after it, it succeeds.
    ops = [
        *ARENA,
        *ALLOC_OLD,
        free_page(sleepable=False),
        alloc(at=1),
        ("arena.free_worker", {"arena": 0}),
        *try_realloc(0),
        user_read(0),
    ]
    r = run(session, ops, arch=arch)
    assert r.finding is None
    assert r.results[4] == "deferred" and r.results[5] == 0 and r.results[6] == 1
    assert r.results[7] == r.results[2] and r.results[9] == NEW


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_fault_free_realloc_every_schedule(session: Session, arch: str, revision: str) -> None:
    # fault_free_realloc: user space keeps faulting the page in while a program frees it and
    # allocates it again. Every schedule within two preemptions is clean (no page freed while
    # mapped or cached, none leaked; on arm64 no fault installs a page between the free's
    # unlock and its flush, I10), and the last read after the program sees its marker.
    ops = [*ARENA, *ALLOC_OLD, user_read(1), free_page(), *try_realloc(0), user_read(1), user_read(0)]
    prog = program(ops, arch=arch, revision=revision, cpus=2)
    e = explore(session, prog, max_switches=2)
    assert e.exhaustive and e.found is None and e.runs > 20
    r = session.run(prog)
    assert r.finding is None and r.results[9] == NEW


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_realloc_during_the_flush_fails(session: Session, arch: str, revision: str) -> None:
    # free_before_flush: the free pauses in flush_tlb_kernel_range(); try_realloc on
    # another CPU gets NULL (the range is unavailable until the flush, R7), and once the
    # free completed it gets the same address again.
    ops = [*ARENA, *ALLOC_OLD, free_page(), *try_realloc(1), *try_realloc(0), user_read(0)]
    r = preempted(session, ops, cpu=0, after="spin_unlock", to=1, arch=arch, revision=revision)
    assert r.finding is None
    assert r.results[4] == "freed" and r.results[5] == 0
    assert r.results[7] == r.results[2] and r.results[9] == NEW


@pytest.mark.parametrize("arch", ARCHES)
def test_deferred_realloc_during_the_worker_flush_fails(session: Session, arch: str) -> None:
    # deferred_free_before_flush: the worker pauses in flush_tlb_kernel_range(); try_realloc
    # on another CPU gets NULL (R8: the worker keeps the span unavailable until its flush),
    # and after the worker it succeeds.
    ops = [
        *ARENA,
        *ALLOC_OLD,
        free_page(sleepable=False),
        ("arena.free_worker", {"arena": 0}),
        *try_realloc(1),
        *try_realloc(0),
        user_read(0),
    ]
    r = preempted(session, ops, cpu=0, after="spin_unlock", to=1, arch=arch)
    assert r.finding is None
    assert r.results[4] == "deferred" and r.results[5] == 1 and r.results[6] == 0
    assert r.results[8] == r.results[2] and r.results[10] == NEW


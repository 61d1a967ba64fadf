"""The whole pipeline, fuzz -> dedup -> minimize -> report, on every design variant of the arena
tests (tests/arena/test_variants.py, tests/arena/test_invariants.py) and of the sched_ext
tests (tests/scx/test_scx_variants.py), and on the merged revision's real bug.

For each, a seeded miniature campaign (random noise programs with the variant's trigger
spliced in, random preemption and injections; none for the merged bug) produces findings;
triage must leave exactly one bug under the expected title, counted once per occurrence,
whose reproducer is as small as the bug allows: the size reasoned out next to each case,
as (ops, CPUs, switches, injected failures). Its generated regression test must fail on the
variant and pass on the real implementation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from arena import test_invariants as inv
from arena import test_variants as var
from fuzzkit_arena import kernel
from fuzzkit_x86 import X86
from helpers import Op
from scx import test_scx_variants as scxv
from scx_helpers import REG, alloc
from triage_helpers import arena_session, fuzz, variant, with_arch
from variants.arena_clear import clear_cb_without_scratch_skip

from fuzzkit import replacing
from fuzzkit.plugins import load_registry
from fuzzkit.program import load
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, signature, triage
from fuzzkit.triage.report import regression_test_name

NOW = "2026-06-02T00:00:00+00:00"
AT_INSTALL = "in arena.kernel_access at apply_range_set_scratch_cb"


@dataclass(frozen=True)
class Case:
    #: The session with the bug, and one with the real implementation for the same program.
    buggy: Callable[[], Session]
    real: Callable[[], Session]
    arch: str
    revision: str
    trigger: list[Op]
    title: str
    #: Reasoned minimal size (ops, cpus, switches, injected) and the ops it takes, in order.
    shape: tuple[int, int, int, int]
    ops: list[str]
    runs: int = 80
    #: The campaign's seed: one whose smallest occurrence is the plainest form of the bug.
    seed: int = 1


def real_arch(name: str) -> Callable[[], Session]:
    """A variant arch's name with the real x86 fault path: its real implementation."""

    def make() -> Session:
        return with_arch(type(f"Real_{name}", (X86,), {"name": name}))

    return make


def replaced(primitive: str, fn: Callable[..., object]) -> Callable[[], Session]:
    return lambda: variant(primitive, fn)


def scx_session() -> Session:
    """Every plugin: the sched_ext bugs need struct_ops and scx, which arena sessions leave out."""
    return Session(load_registry())


def scx_replaced(primitive: str, fn: Callable[..., object]) -> Callable[[], Session]:
    return lambda: Session(load_registry(extra=[replacing(reason="variant", **{primitive: fn})]))


CREATE, KACCESS, ALLOC, FREE = "arena.create", "arena.kernel_access", "arena.alloc", "arena.free"
#: A registered cid-form scheduler (scx_helpers.REG): its arena, its struct_ops map, itself.
SCHED = [CREATE, "struct_ops.load", "scx.reg_cid"]
SCX_ALLOC = "scx.alloc"

CASES: dict[str, Case] = {
    # merged revision (R4): a kernel fault scratches free slot 0, best fit then lands on it
    # and apply_range_set_cb refuses the SCRATCH PTE. Three ops, nothing concurrent.
    "I16_merged_unallocatable_slot": Case(
        arena_session,
        replaced("apply_range_set_cb", kernel.apply_range_set_cb_fixed),
        "x86",
        "merged",
        [],
        "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)",
        (3, 1, 0, 0),
        [CREATE, KACCESS, ALLOC],
        runs=1500,
        seed=3,
    ),
    # The clear callback does not skip the scratch page: a scratched slot must exist (a
    # kernel fault) and be freed. Three ops.
    **{
        f"I1_clear_cb_without_scratch_skip_{arch}": Case(
            replaced("apply_range_clear_cb", clear_cb_without_scratch_skip),
            arena_session,
            arch,
            "fixed",
            var.FREE_SCRATCHED,
            f"I1 scratch page freed before destroy in arena.free at arena_free_pages ({arch}, fixed)",
            (3, 1, 0, 0),
            [CREATE, KACCESS, FREE],
        )
        for arch in ("x86", "arm64")
    },
    # Destroy forgets the scratch page: an arena and its destroy.
    "I1_destroy_keeps_scratch": Case(
        replaced("arena_map_free", inv.map_free_without(real_pages=True, scratch=False)),
        arena_session,
        "x86",
        "fixed",
        inv.DESTROY,
        "I1 scratch page not freed at destroy in arena.destroy (x86, fixed)",
        (2, 1, 0, 0),
        [CREATE, "arena.destroy"],
        seed=2,
    ),
    # The user fault maps whatever the kernel PTE holds: a scratch PTE (kernel fault), a user
    # mapping of the arena (mmap) and the user access. Four ops.
    "I3_user_fault_maps_scratch": Case(
        replaced("arena_vm_fault", inv.vm_fault_maps_scratch),
        arena_session,
        "x86",
        "fixed",
        inv.USER_ON_SCRATCH,
        "I3 scratch page mapped into user space in arena.user_access (x86, fixed)",
        (4, 1, 0, 0),
        [CREATE, "arena.mmap", KACCESS, "arena.user_access"],
    ),
    # The installer writes the next slot: any kernel fault does it. Two ops.
    "I4_scratch_next_door": Case(
        replaced("apply_range_set_scratch_cb", inv.install_next_door),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.kaccess(3)],
        f"I4 scratch page installed where no kernel fault touched {AT_INSTALL} (x86, fixed)",
        (2, 1, 0, 0),
        [CREATE, KACCESS],
    ),
    # The installer takes the next arena's scratch page: two arenas and a fault. Three ops.
    "I4_other_arenas_scratch": Case(
        replaced("apply_range_set_scratch_cb", inv.install_other_arenas_scratch),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.CREATE, inv.kaccess(3)],
        f"I4 scratch page installed outside its band {AT_INSTALL} (x86, fixed)",
        (3, 1, 0, 0),
        [CREATE, CREATE, KACCESS],
    ),
    # The arena hook before the exception table: any BPF store to an empty slot. Two ops.
    "I5_hook_before_exception_table": Case(
        lambda: with_arch(inv.X86HookBeforeFixup),
        real_arch("x86_hook_first"),
        "x86_hook_first",
        "fixed",
        inv.PROG_ON_EMPTY,
        "I5 BPF program access to an empty slot changed its PTE in arena.prog_access at "
        "apply_range_set_scratch_cb (x86_hook_first, fixed)",
        (2, 1, 0, 0),
        [CREATE, "arena.prog_access"],
    ),
    # The stack walk finds no program: any kernel fault oopses. Two ops.
    "I6_walk_finds_nothing": Case(
        replaced("bpf_prog_find_from_stack", inv.walk_finds_nothing),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.kaccess(3)],
        "I6 recoverable arena fault ended in oops in arena.kernel_access (x86, fixed)",
        (2, 1, 0, 0),
        [CREATE, KACCESS],
    ),
    # The prefetch check after the hook: one prefetch into the arena. Two ops.
    "I6_prefetch_check_last": Case(
        lambda: with_arch(inv.X86PrefetchCheckLast),
        real_arch("x86_prefetch_last"),
        "x86_prefetch_last",
        "fixed",
        [inv.CREATE, inv.kaccess(3, insn="prefetch")],
        "I6 fault outside the recovery conditions was recovered with the scratch page in "
        "arena.kernel_access (x86_prefetch_last, fixed)",
        (2, 1, 0, 0),
        [CREATE, KACCESS],
    ),
    # Reports go to a copy's stream: any kernel fault. Two ops.
    "I7_report_to_a_copy": Case(
        replaced("bpf_prog_find_from_stack", inv.walk_to_a_copy),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.kaccess(3)],
        "I7 scratch install without a report in arena.kernel_access (x86, fixed)",
        (2, 1, 0, 0),
        [CREATE, KACCESS],
    ),
    # The installer checks pte_none then stores: an allocation of the slot must land between
    # its read and its store, so a second CPU and exactly one preemption. Three ops.
    **{
        f"{sid}_installer_plain_store_{arch}": Case(
            replaced("apply_range_set_scratch_cb", inv.install_with_plain_store),
            arena_session,
            arch,
            "fixed",
            inv.INSTALL_VS_ALLOC,
            title,
            (3, 2, 1, 0),
            [CREATE, KACCESS, ALLOC],
            runs=200,  # the race needs one preemption in a window of one step
        )
        for sid, arch, title in (
            ("I8", "x86", f"I8 installer overwrote REAL pte {AT_INSTALL} (x86, fixed)"),
            (
                "I10",
                "arm64",
                "I10 valid PTE changed to a different valid PTE without break-before-make "
                f"{AT_INSTALL} (arm64, fixed)",
            ),
        )
    },
    # Destroy drops the real pages: one must exist. Three ops. The leak is found after the
    # fact, at an op's completion, so it is titled after the write that unmapped the page.
    "I8_destroy_leaks_real_pages": Case(
        replaced("arena_map_free", inv.map_free_without(real_pages=False, scratch=True)),
        arena_session,
        "x86",
        "fixed",
        inv.DESTROY,
        "I8 page leaked: unmapped but never freed at arena_map_free (x86, fixed)",
        (3, 1, 0, 0),
        [CREATE, ALLOC, "arena.destroy"],
        seed=2,
    ),
    # No TLB invalidation before the page replaces scratch. On arm64 break-before-make (I10)
    # catches it at the install: a kernel fault caches the scratch translation, the
    # allocation replaces the PTE while the entry is live. Three ops, one CPU. (On x86 the real
    # flush_tlb_before_set is itself a no-op (R17), so the variant is the real code there and
    # a second access reads scratch through the stale entry, I9, with or without it.)
    "I10_no_flush_before_set_arm64": Case(
        replaced("flush_tlb_before_set", inv.no_flush),
        arena_session,
        "arm64",
        "fixed",
        inv.SCRATCH_THEN_ALLOC,
        "I10 valid PTE installed while a TLB still holds the old entry in arena.alloc at "
        "apply_range_set_cb (arm64, fixed)",
        (3, 1, 0, 0),
        [CREATE, KACCESS, ALLOC],
    ),
    # The clear callback never clears: a REAL slot and its free. Three ops.
    "I11_clear_cb_only_reads": Case(
        replaced("apply_range_clear_cb", inv.clear_cb_only_reads),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.alloc(3, page_cnt=2), inv.free(3, page_cnt=2)],
        "I11 slot REAL but FREE after a completed free in arena.free (x86, fixed)",
        (3, 1, 0, 0),
        [CREATE, ALLOC, FREE],
    ),
    # First fit instead of best fit: one taken page that leaves a longer free range before a
    # shorter one, then a best-fit allocation. Three ops.
    "I12_first_fit": Case(
        replaced("range_tree_find", inv.first_fit),
        arena_session,
        "x86",
        "fixed",
        inv.HOLES,
        "I12 best fit disagrees with the reference in arena.alloc (x86, fixed)",
        (3, 1, 0, 0),
        [CREATE, ALLOC, ALLOC],
    ),
    # The clear callback drops the page without uncharging: a REAL slot and its free.
    "I13_clear_cb_drops_page": Case(
        replaced("apply_range_clear_cb", inv.clear_cb_drops_page),
        arena_session,
        "x86",
        "fixed",
        [inv.CREATE, inv.alloc(3), inv.free(3)],
        "I13 nr_pages differs from the number of REAL ptes in arena.free (x86, fixed)",
        (3, 1, 0, 0),
        [CREATE, ALLOC, FREE],
    ),
    # -- sched_ext (tests/scx/test_scx_variants.py) ----------------------------------------------
    # Every one needs a registered scheduler: an arena, a struct_ops map whose member program
    # uses it (R22) and the registration, three ops. Registration grows the pool by four pages
    # and takes one scratch cmask per CPU from it (R25, R27).
    #
    # R25 with a single retry: cpu0's allocation finds no room, grows, and is preempted right
    # after gen_pool_add; cpu1's allocation takes (part of) the new chunk, at the list head;
    # cpu0's one retry then fails although the arena had room. On one CPU the retry always
    # succeeds (a growth adds at least the pages the size needs), so two allocations on two
    # CPUs. No op of the registration can be the second allocation: the scheduler's handle
    # only exists once registration returns, and a second registration is refused (EBUSY).
    # One preemption: under the default schedule each CPU runs its queue to the end, and one
    # switch from cpu0 to cpu1 is enough because cpu1 then finishes its allocation before
    # cpu0 resumes. No injection can do a CPU's work: the check excuses an allocation during
    # which a failure was injected, and a failed growth makes NULL the right answer. Five ops.
    "R25_scx_alloc_single_retry": Case(
        scxv.single_retry,
        scx_session,
        "x86",
        "fixed",
        scxv.RACE,
        "I16 scx_arena_alloc failed although the arena had room in scx.alloc (x86, fixed)",
        (5, 2, 1, 0),
        [*SCHED, SCX_ALLOC, SCX_ALLOC],
    ),
    # Bits claimed with a plain store: both CPUs search before either claims, so one
    # preemption between cpu0's search and its store, and two allocations. Five ops.
    "I17_unlocked_claim": Case(
        scx_replaced("gen_pool_alloc", scxv.gen_pool_alloc_unlocked_claim),
        scx_session,
        "x86",
        "fixed",
        [*REG, alloc(64), alloc(64, cpu=1)],
        "I17 overlapping gen_pool grants in scx.alloc (x86, fixed)",
        (5, 2, 1, 0),
        [*SCHED, SCX_ALLOC, SCX_ALLOC],
        runs=200,  # the race needs one preemption in a window of one step
    ),
    # Destroy without clearing the chunks: the scratch cmasks registration allocated are
    # outstanding grants already, so no allocation of the program's own is needed. Four ops.
    "I17_destroy_without_clearing": Case(
        scx_replaced("scx_arena_pool_destroy", scxv.scx_arena_pool_destroy_without_clearing),
        scx_session,
        "x86",
        "fixed",
        [*REG, alloc(64), (0, "scx.unreg", {"sched": 0})],
        "I17 BUG: gen_pool_destroy with outstanding allocations in scx.unreg (x86, fixed)",
        (4, 1, 0, 0),
        [*SCHED, "scx.unreg"],
    ),
    # Free with twice the size: scx.free names a grant of scx.alloc (never a scratch cmask),
    # so an allocation and its free. Five ops.
    "I17_free_wrong_size": Case(
        scx_replaced("scx_arena_free", scxv.scx_arena_free_wrong_size),
        scx_session,
        "x86",
        "fixed",
        [*REG, alloc(64), (0, "scx.free", {"sched": 0, "grant": 0})],
        "I17 BUG: gen_pool_free of granules already free in scx.free (x86, fixed)",
        (5, 1, 0, 0),
        [*SCHED, SCX_ALLOC, "scx.free"],
    ),
    # Chunks added with twice their pages: registration's own growth does it. Three ops.
    "I17_grow_pages_as_double": Case(
        scx_replaced("scx_arena_grow", scxv.scx_arena_grow_pages_as_double),
        scx_session,
        "x86",
        "fixed",
        REG,
        "I17 gen_pool chunk outside the arena pages the kernel allocated in scx.reg_cid (x86, fixed)",
        (3, 1, 0, 0),
        SCHED,
    ),
    # The conversion keeps user_vm_start's low bits: only wrong when they are not zero, which
    # takes a fixed start ending at a 4 GiB boundary (the other fixed starts are 4 GiB
    # aligned, unaligned to a page, or cross 4 GiB; one picked by mmap costs an op more),
    # then ops.set_cmask to hand an address over. Four ops.
    "I18_conversion_keeps_low_bits": Case(
        scx_replaced("scx_kaddr_to_arena", scxv.scx_kaddr_to_arena_keeping_low_bits),
        scx_session,
        "x86",
        "fixed",
        scxv.MMAPPED,
        "I18 kernel/arena address conversion does not round-trip in scx.set_cmask (x86, fixed)",
        (4, 1, 0, 0),
        [CREATE, "struct_ops.load", "scx.reg_cid", "scx.set_cmask"],
    ),
    # cmask_weight reads one word past NR_WORDS: ops.set_cmask has the member program read
    # the scratch cmask back with it. Four ops. (The scx.cmask_weight op shows the same bug
    # in two, an arena and the helper on it, under that op's title; both are checks at op
    # completion, so the store counts them as this one bug.)
    "I18_weight_past_nr_words": Case(
        scx_replaced("cmask_weight", scxv.cmask_weight_one_word_too_many),
        scx_session,
        "x86",
        "fixed",
        [*REG, (0, "scx.set_cmask", {"sched": 0})],
        "I18 cmask access at or past NR_WORDS(nr_cids) in scx.set_cmask (x86, fixed)",
        (4, 1, 0, 0),
        [*SCHED, "scx.set_cmask"],
    ),
}


def generated_test(bundle: Path) -> ModuleType:
    path = bundle / regression_test_name(bundle.name)
    spec = importlib.util.spec_from_file_location(f"generated_{bundle.name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_reports_each_variant_once_minimized_with_a_failing_test(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    buggy = case.buggy()
    # A bug of a replaced primitive is the variant's: the baseline replay is clean.
    replacing = sorted({r.plugin for r in buggy.registry.replacements.values()})
    title = case.title + "".join(f", needs {p}" for p in replacing)
    found = fuzz(buggy, case.arch, case.revision, runs=case.runs, seed=case.seed, trigger=case.trigger)
    exact = [p for p in found if signature(buggy, p).title == title]  # type: ignore[union-attr]
    assert len(exact) >= 2, "the campaign finds the bug more than once, so dedup has work to do"

    result = triage(buggy, found, tmp_path, now=NOW)

    store = BugStore.load(tmp_path)
    [bug] = [b for b in store.bugs if b.title == title]
    assert bug.needs == replacing and not bug.also_without
    assert bug.count >= len(exact) and bug.first_seen == bug.last_seen == NOW
    assert sum(b.count for b in store.bugs) == len(found), "every finding is counted in exactly one bug"
    [entry] = [t for t in result.bugs if t.bug.slug == bug.slug]
    assert entry.new and entry.minimized is not None and entry.minimized.complete
    assert entry.minimized.size.shape == case.shape, entry.minimized.program.dumps()
    repro = load(tmp_path / bug.slug / "repro.json")
    assert [oc.op for oc in repro.ops] == case.ops
    assert signature(buggy, repro).title == title  # type: ignore[union-attr]

    [regression] = generated_test(tmp_path / bug.slug).test_no_longer_reproduces.cases
    with pytest.raises(pytest.fail.Exception, match="still reproduces"):
        regression.check(session=buggy)
    regression.check(session=case.real())

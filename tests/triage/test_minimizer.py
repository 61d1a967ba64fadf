"""The minimizer: drops ops, CPUs, preemptions and injected failures the bug does not need,
keeps the ones it does, lowers arguments toward their domain defaults, stops at its replay
budget, and refuses bad input without writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arena import test_invariants as inv
from helpers import Op, program
from scx import test_scx_variants as scxv
from scx_helpers import REG
from scx_helpers import alloc as scx_alloc
from triage_helpers import NEEDS, arena_session, variant

from fuzzkit.errors import FuzzkitError, ProgramError
from fuzzkit.program import Program, save
from fuzzkit.runner import Session
from fuzzkit.triage import TriageError, minimize, minimize_file, signature
from fuzzkit.triage.anchors import Anchors
from fuzzkit.triage.bench import minimize_figure, noisy_finding

MERGED_TITLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"
RETRY_TITLE = "I16 scx_arena_alloc failed although the arena had room in scx.alloc (x86, fixed)" + NEEDS


@pytest.fixture(scope="module")
def real() -> Session:
    return arena_session()


@pytest.fixture(scope="module")
def merged_finding(real: Session) -> Program:
    """The first finding of a seeded random search over 48-op programs on the merged revision
    (no seed input): 48 ops on two CPUs, 15 switches and 3 injected failures."""
    found = noisy_finding(real, "x86", "merged", n_ops=48, seed=2)
    assert signature(real, found).title == MERGED_TITLE  # type: ignore[union-attr]
    return found


def shape(result_program: Program) -> list[tuple[int, str, dict[str, object]]]:
    return [(oc.cpu, oc.op, oc.args) for oc in result_program.ops]


def test_minimizer_drops_noise_ops_cpus_switches_and_injections(
    real: Session, merged_finding: Program
) -> None:
    assert len(merged_finding.ops) > 10 and merged_finding.cpus == 2
    assert merged_finding.switches and merged_finding.inject
    m = minimize(real, merged_finding)
    # The bug needs an arena, a kernel fault that scratches a free slot, and a best-fit
    # allocation landing on it; slot 0 (every default) is where best fit lands.
    assert shape(m.program) == [
        (0, "arena.create", {}),
        (0, "arena.kernel_access", {}),
        (0, "arena.alloc", {}),
    ]
    assert (m.program.cpus, m.program.switches, m.program.inject) == (1, [], [])
    assert m.complete and m.size < m.original_size and m.signature.title == MERGED_TITLE
    assert real.run(m.program).finding is not None


def test_minimizer_keeps_the_one_preemption_a_race_needs() -> None:
    # Noise before the race moves its preemption point; the switch is carried through the
    # removal anchored to the preempted op's progress, so the noise can go.
    s = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    noise = [inv.alloc(7), inv.free(7), inv.alloc(9, page_cnt=2)]
    ops = [inv.CREATE, *noise, inv.kaccess(3), inv.alloc(3, cpu=1)]
    plain = s.run(program(ops, cpus=2), trace=True)
    after_read = next(
        t.step for t in plain.trace or [] if t.op == "arena.kernel_access" and t.label == "ptep_get"
    )
    prog = program(ops, cpus=2, switches=[(after_read + 1, 1)])
    title = (
        "I8 installer overwrote REAL pte in arena.kernel_access at apply_range_set_scratch_cb (x86, fixed)"
        + NEEDS
    )
    assert signature(s, prog).title == title  # type: ignore[union-attr]
    # Without the anchoring, dropping the noise leaves the switch at the old step: no race.
    unanchored = program([inv.CREATE, inv.kaccess(3), inv.alloc(3, cpu=1)], cpus=2, switches=prog.switches)
    assert s.run(unanchored).finding is None
    m = minimize(s, prog)
    assert [(oc.cpu, oc.op) for oc in m.program.ops] == [
        (0, "arena.create"),
        (0, "arena.kernel_access"),
        (1, "arena.alloc"),
    ]
    assert len(m.program.switches) == 1 and m.program.inject == [] and m.program.cpus == 2


def test_minimizer_searches_the_schedule_afresh_when_switches_only_work_together() -> None:
    # cpu1's allocation takes its first step while cpu0 creates the arena and hands the CPU
    # straight back; the race itself is the third switch, after the installer's read. Each
    # switch alone is needed by the other two, so dropping them one at a time gets nowhere;
    # a single switch after the read, searched from the default schedule, does it.
    s = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    lead = [(2, 1), (3, 0)]
    plain = s.run(program(inv.INSTALL_VS_ALLOC, cpus=2, switches=lead), trace=True)
    after_read = next(
        t.step for t in plain.trace or [] if t.op == "arena.kernel_access" and t.label == "ptep_get"
    )
    prog = program(inv.INSTALL_VS_ALLOC, cpus=2, switches=[*lead, (after_read + 1, 1)])
    title = signature(s, prog).title  # type: ignore[union-attr]
    assert title.startswith("I8 installer overwrote REAL pte")
    m = minimize(s, prog)
    assert m.size.shape == (3, 2, 1, 0) and m.signature.title == title
    assert any(p.name == "reschedule" and p.kept for p in m.passes)


def test_minimizer_trades_an_op_standing_in_for_a_preemption_for_a_switch() -> None:
    # The scx single-retry race (R25) with an arena allocation on cpu1 doing a switch's job:
    # cpu0 is preempted just before registration returns, cpu1 runs the arena allocation,
    # and cpu0 takes over again when cpu1 is about to start its scx.alloc. Without the arena
    # allocation that first switch would start cpu1's scx.alloc before the scheduler exists.
    # The minimizer once stopped here at 6 ops, 2 CPUs, 3 switches; dropping the op and
    # searching schedules reaches the race's own size: 5 ops, 2 CPUs, 1 switch.
    s = scxv.single_retry()
    ops: list[Op] = [*REG, scx_alloc(16 * 1024), (1, "arena.alloc", {"arena": 0}), scx_alloc(32, cpu=1)]

    def step_after(switches: list[tuple[int, int]], cpu: int, op: str, label: str) -> int:
        r = s.run(program(ops, cpus=2, switches=switches), trace=True)
        return next(t.step for t in r.trace or [] if (t.cpu, t.op, t.label) == (cpu, op, label)) + 1

    before_return = step_after([], 0, "scx.reg_cid", "done") - 1
    handed_back = step_after([(before_return, 1)], 1, "arena.alloc", "done")
    grown = step_after([(before_return, 1), (handed_back, 0)], 0, "scx.alloc", "gen_pool_add")
    prog = program(ops, cpus=2, switches=[(before_return, 1), (handed_back, 0), (grown, 1)])
    assert signature(s, prog).title == RETRY_TITLE  # type: ignore[union-attr]
    m = minimize(s, prog)
    assert m.size.shape == (5, 2, 1, 0) and m.complete
    assert [(oc.cpu, oc.op) for oc in m.program.ops] == [
        (0, "arena.create"),
        (0, "struct_ops.load"),
        (0, "scx.reg_cid"),
        (0, "scx.alloc"),
        (1, "scx.alloc"),
    ]


def test_carried_anchors_move_a_removed_ops_switches_to_the_next_op_on_its_cpu() -> None:
    # Calls 0, 1, 3 on cpu0 and 2 on cpu1. Call 1 is removed: its two switches now happen
    # when cpu0 is about to start call 3 (renumbered 2), first and second time, and call 3's
    # own switch there counts on after them. Removing call 2 as well drops its switch: cpu1
    # has no call after it, it is finished there.
    anchors = Anchors(
        switches=((1, 4, 1, 1), (1, 7, 1, 1), (3, 1, 1, 1), (3, 2, 1, 1), (2, 1, 1, 0)),
        inject=((1, "alloc_page", 1), (3, "alloc_page", 2)),
    )
    moved = anchors.carried({1}, [0, 0, 1, 0])
    assert sorted(moved.switches) == [(1, 1, 1, 0), (2, 1, 1, 1), (2, 1, 2, 1), (2, 1, 3, 1), (2, 2, 1, 1)]
    assert moved.inject == ((2, "alloc_page", 2),)
    assert sorted(anchors.carried({1, 2}, [0, 0, 1, 0]).switches) == [
        (1, 1, 1, 1),
        (1, 1, 2, 1),
        (1, 1, 3, 1),
        (1, 2, 1, 1),
    ]


def test_minimizer_keeps_a_needed_injection_and_drops_the_rest() -> None:
    # Stray Accessed/Dirty bits left by the free's clear are what the plain-store installer
    # overwrites: the pte_erratum_bits injection is the bug's precondition.
    s = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    ops = [inv.CREATE, inv.alloc(3), inv.free(3), inv.kaccess(3)]
    prog = program(ops, inject=[("alloc_page", 9), ("pte_erratum_bits", 1), ("stream_capacity", 3)])
    m = minimize(s, prog)
    assert m.program.inject == [("pte_erratum_bits", 1)]
    assert m.size.shape == (4, 1, 0, 1)


def test_minimizer_lowers_arguments_shared_by_two_ops_together() -> None:
    # The kernel fault scratches slot 3 and the user access reads slot 3 back: lowered one at a
    # time neither can move, together they reach slot 0 (the default, left out of the program).
    s = variant("arena_vm_fault", inv.vm_fault_maps_scratch)
    m = minimize(s, program(inv.USER_ON_SCRATCH))
    assert [oc.args for oc in m.program.ops] == [{}, {}, {}, {}]
    assert m.passes and any(p.name == "args" and p.kept for p in m.passes)


def test_minimizer_finds_the_lowest_offset_first_fit_gets_wrong() -> None:
    # First fit and best fit differ once the first free range is longer than a later one
    # that fits: one page taken at offset p of 16 leaves [0, p) and [p+1, 16), longer first
    # iff p >= 8. Two allocations (HOLES) are not needed; one at offset 8 is the simplest.
    s = variant("range_tree_find", inv.first_fit)
    m = minimize(s, program(inv.HOLES))
    assert shape(m.program) == [
        (0, "arena.create", {}),
        (0, "arena.alloc", {"addr": "fixed", "pgoff": 8}),
        (0, "arena.alloc", {}),
    ]


def test_minimizer_stops_at_its_replay_budget_and_says_so(real: Session, merged_finding: Program) -> None:
    m = minimize(real, merged_finding, budget=12)
    assert not m.complete and m.budget == 12
    # A kept candidate is replayed once more to re-anchor it: at most one past the budget.
    assert 12 <= m.replays <= 13
    assert m.signature.title == MERGED_TITLE and m.size <= m.original_size
    assert "budget exhausted" in m.summary()


def test_minimize_file_writes_a_new_file_and_never_overwrites(real: Session, tmp_path: Path) -> None:
    src = tmp_path / "found.json"
    save(
        program([inv.CREATE, inv.alloc(5), inv.kaccess(0, insn="store"), inv.alloc()], revision="merged"), src
    )
    out = tmp_path / "min" / "small.json"
    m = minimize_file(real, src, out)
    assert json.loads(out.read_text())["ops"] == [json.loads(m.program.dumps())["ops"]][0]
    assert MERGED_TITLE in json.loads(out.read_text())["description"]
    before = out.read_text()
    with pytest.raises(TriageError, match="already exists"):
        minimize_file(real, src, out)
    assert out.read_text() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["small.json"]


BAD_INPUTS = {
    "not_a_program": ('{"fuzzkit": "corpus", "schema": 1}', ProgramError, "not a fuzzkit program"),
    "schema_version": ('{"fuzzkit": "program", "schema": 9, "ops": []}', ProgramError, "version 9"),
    "truncated": (
        '{"fuzzkit": "program", "schema": 1, "ops": [{"cpu": 0, "op": "arena.cr',
        ProgramError,
        "not JSON",
    ),
    "unknown_op": (
        '{"fuzzkit": "program", "schema": 1, "ops": [{"op": "arena.explode"}]}',
        ProgramError,
        "unknown op 'arena.explode'",
    ),
    "unknown_plugin": (
        json.dumps(
            {
                "fuzzkit": "program",
                "schema": 1,
                "ops": [{"op": "arena.create"}],
                "recorded_with": {"plugins": {"arena": "0.1.0", "no_skip": "-"}},
            }
        ),
        TriageError,
        "recorded with plugin(s) not loaded now: no_skip",
    ),
    "no_finding": (
        '{"fuzzkit": "program", "schema": 1, "ops": [{"op": "arena.create"}]}',
        TriageError,
        "a clean run",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_minimize_file_rejects_bad_input_with_a_clear_error_and_writes_nothing(
    real: Session, tmp_path: Path, case: str
) -> None:
    text, error, says = BAD_INPUTS[case]
    src = tmp_path / "input.json"
    src.write_text(text)
    with pytest.raises(error) as exc:
        minimize_file(real, src, tmp_path / "out.json")
    assert isinstance(exc.value, FuzzkitError) and isinstance(exc.value, ValueError)
    assert says in str(exc.value) and str(src) in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.json"]


def test_minimize_benchmark_finding_reaches_a_fixpoint_well_within_budget(real: Session) -> None:
    # The benchmark figure's workload: a 128-op, two-CPU random finding. Its wall-clock time
    # is printed by the benchmark, not asserted here; the replay count is what bounds it.
    figure, result = minimize_figure(real, n_ops=128, seed=1)
    assert figure.complete and figure.replays < 2_000
    assert result.original_size.ops == 128 and result.size.ops <= 5

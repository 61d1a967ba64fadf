"""Finding signatures: titles name the invariant, the op and the primitive it fired in, the
arch and the revision; races seen from either side share an alternative title, and so does
one broken state caught at different ops' completion; instrumented replays take exactly the
steps of a plain one."""

from __future__ import annotations

import re

import pytest
from arena import test_invariants as inv
from arena import test_variants as var
from helpers import program
from triage_helpers import (
    ALLOC_COMPLETES_LAST,
    FIRES_IN_ALLOC,
    FIRES_IN_FREE,
    NEEDS,
    RACE_OPS,
    arena_session,
    variant,
)
from variants.arena_clear import clear_cb_without_scratch_skip

from fuzzkit.runner import Session
from fuzzkit.triage import Replayer, at_completion, completion_title, signature, signature_of, slug

MERGED_TITLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"


@pytest.fixture(scope="module")
def real() -> Session:
    return arena_session()


def test_title_of_a_check_at_op_completion_is_the_findings_own_title(real: Session) -> None:
    sig = signature(real, program(inv.UNALLOCATABLE, revision="merged"))
    assert sig is not None and sig.primitive is None
    assert sig.title == sig.finding.title == MERGED_TITLE
    # Nothing else in flight: no race titles, only the op-agnostic one of completion checks.
    assert sig.in_flight == () and sig.at_completion
    assert sig.alt_titles == (
        "I16 best-fit allocation failed while free space exists on op completion (x86, merged)",
    )


def test_at_completion_tells_checks_at_op_completion_from_checks_inside_an_op() -> None:
    # I13 is an op_done check; I8's installer check runs on a PTE write inside the kernel
    # access, I6's when the fault path returns, also inside it: those ops never completed.
    at_done = variant("apply_range_clear_cb", inv.clear_cb_drops_page)
    in_pte_write = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    in_fault_path = variant("bpf_prog_find_from_stack", inv.walk_finds_nothing)
    cases = [
        (at_done, program([inv.CREATE, inv.alloc(3), inv.free(3)]), "I13", True),
        (in_pte_write, program(inv.INSTALL_VS_ALLOC, cpus=2, switches=[(5, 1)]), "I8", False),
        (in_fault_path, program([inv.CREATE, inv.kaccess(3)]), "I6", False),
    ]
    for session, prog, spec_id, done in cases:
        run = Replayer(session).run(prog)
        sig = signature_of(run)
        assert sig is not None and sig.finding.spec_id == spec_id
        assert at_completion(run.result) is done and sig.at_completion is done
        assert (completion_title(sig.finding) in sig.alt_titles) is done


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_title_names_the_primitive_the_invariant_fired_in(arch: str) -> None:
    # The variant's free hands the scratch page to __free_page inside arena_free_pages.
    s = variant("apply_range_clear_cb", clear_cb_without_scratch_skip)
    sig = signature(s, program(var.FREE_SCRATCHED, arch=arch))
    assert sig is not None
    assert (
        sig.title
        == f"I1 scratch page freed before destroy in arena.free at arena_free_pages ({arch}, fixed)" + NEEDS
    )


def test_core_pte_atomics_give_way_to_the_subsystem_primitive_enclosing_them() -> None:
    # The plain-store installer writes with set_pte_at (a core atomic) from inside
    # apply_range_set_scratch_cb: the title names the latter, as a kernel title skips memcpy.
    s = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    prog = program(inv.INSTALL_VS_ALLOC, cpus=2, switches=[(5, 1)])
    run = Replayer(s).run(prog)
    assert run.result.finding is not None and run.result.finding.spec_id == "I8"
    assert run.chain[:2] == ["set_pte_at", "apply_range_set_scratch_cb"]
    assert run.primitive == "apply_range_set_scratch_cb"
    assert "in arena.kernel_access at apply_range_set_scratch_cb (x86, fixed)" in signature(s, prog).title  # type: ignore[union-attr]


def test_fault_path_stages_are_named_like_primitives() -> None:
    # A walk that finds no program makes bpf_arena_handle_page_fault (a fault-path stage)
    # decline; the recovery oracle fires after the fault path, in no primitive.
    s = variant("bpf_prog_find_from_stack", inv.walk_finds_nothing)
    sig = signature(s, program([inv.CREATE, inv.kaccess(3)]))
    assert (
        sig is not None
        and sig.title
        == "I6 recoverable arena fault ended in oops in arena.kernel_access (x86, fixed)" + NEEDS
    )
    probe = Replayer(s).probe(program([inv.CREATE]))
    assert "bpf_arena_handle_page_fault" in {getattr(fn, "__name__", "") for fn, _ in probe.kernel.fault_path}


def test_I13_race_seen_from_both_sides_shares_an_alternative_title() -> None:
    s = variant("apply_range_clear_cb", inv.clear_cb_drops_page)
    in_free = signature(s, program(RACE_OPS, cpus=2, switches=FIRES_IN_FREE))
    in_alloc = signature(s, program(RACE_OPS, cpus=2, switches=FIRES_IN_ALLOC))
    assert in_free is not None and in_alloc is not None
    assert in_free.title.endswith("in arena.free (x86, fixed)" + NEEDS)
    assert in_alloc.title.endswith("in arena.alloc (x86, fixed)" + NEEDS)
    race = (
        "I13 nr_pages differs from the number of REAL ptes in arena.alloc vs arena.free (x86, fixed)" + NEEDS
    )
    assert race in in_free.alt_titles and race in in_alloc.alt_titles
    # Each side also carries the other side's title: the op in flight may be the culprit.
    assert in_alloc.title in in_free.alt_titles and in_free.title in in_alloc.alt_titles
    assert in_free.in_flight == ("arena.alloc",) and in_alloc.in_flight == ("arena.free",)


def test_I13_seen_at_two_ops_completion_alone_shares_only_the_completion_title() -> None:
    s = variant("apply_range_clear_cb", inv.clear_cb_drops_page)
    in_free = signature(s, program(RACE_OPS, cpus=2))
    in_alloc = signature(s, program(RACE_OPS, cpus=2, switches=ALLOC_COMPLETES_LAST))
    assert in_free is not None and in_alloc is not None
    assert in_free.title.endswith("in arena.free (x86, fixed)" + NEEDS)
    assert in_alloc.title.endswith("in arena.alloc (x86, fixed)" + NEEDS)
    assert in_free.in_flight == in_alloc.in_flight == (), "no race title links the two"
    shared = "I13 nr_pages differs from the number of REAL ptes on op completion (x86, fixed)" + NEEDS
    assert in_free.titles & in_alloc.titles == {shared}


def test_instrumented_replay_takes_exactly_the_steps_of_a_plain_replay() -> None:
    s = variant("apply_range_set_scratch_cb", inv.install_with_plain_store)
    prog = program(inv.INSTALL_VS_ALLOC, cpus=2, switches=[(5, 1)])
    plain = s.run(prog, trace=True)
    replayer = Replayer(s)
    probed = replayer.run(prog, trace=True)
    watched = replayer.run(prog, trace=True, snapshot_at=3)
    assert plain.trace == probed.result.trace == watched.result.trace
    assert plain.finding == probed.result.finding == watched.result.finding
    assert replayer.replays == 2


def test_snapshot_shows_the_machine_before_the_given_step(real: Session) -> None:
    prog = program(inv.UNALLOCATABLE, revision="merged")
    trace = real.run(prog, trace=True).trace or []
    install = next(t.step for t in trace if any("pte " in n for n in t.notes))
    run = Replayer(real).run(prog, snapshot_at=install)
    assert run.before is not None and run.before.step == install
    assert run.before.ptes == {}, "the scratch PTE is installed by that very step"
    after = Replayer(real).run(prog, snapshot_at=install + 1).before
    assert after is not None and [v.endswith("arena0:scratch") for v in after.ptes.values()] == [True]
    assert after.free_ranges == {"arena0": [(0, 16)]}


def test_slug_is_a_safe_stable_name_and_differs_per_title() -> None:
    a = slug(MERGED_TITLE)
    assert a == slug(MERGED_TITLE)
    assert re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{8}", a) and len(a) <= 69
    assert slug(MERGED_TITLE.replace("x86", "arm64")) != a

"""The systematic explorer finds what a schedule can reach, and says when it tried them all."""

from __future__ import annotations

import pytest
from helpers import program

from fuzzkit.explore import explore
from fuzzkit.runner import Session

# A kernel fault installs the scratch page while another CPU allocates the same slot.
INSTALL_VS_ALLOC = [
    (0, "arena.create", {}),
    (0, "arena.kernel_access", {"arena": 0, "pgoff": 2, "stack": "main"}),
    (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 2}),
]


def test_R4_merged_breaks_break_before_make_on_arm64(session: Session) -> None:
    # merged checks pte_none, then stores with a plain set_pte_at: a scratch install in
    # between is overwritten valid -> valid, which arm64 forbids (I10).
    e = explore(session, program(INSTALL_VS_ALLOC, arch="arm64", revision="merged", cpus=2))
    assert e.found is not None and e.found.finding is not None
    assert e.found.finding.title.startswith("I10 ") and "arena.alloc (arm64, merged)" in e.found.finding.title
    replay = session.run(
        program(INSTALL_VS_ALLOC, arch="arm64", revision="merged", cpus=2, switches=e.found.switches)
    )
    assert replay.finding == e.found.finding, "the recorded schedule reproduces it"


@pytest.mark.parametrize("arch", ["x86", "arm64"])
def test_R4_fixed_survives_every_schedule_within_three_preemptions(session: Session, arch: str) -> None:
    e = explore(session, program(INSTALL_VS_ALLOC, arch=arch, revision="fixed", cpus=2), max_switches=3)
    assert e.exhaustive and e.found is None and e.runs > 20


def test_explore_respects_its_run_budget(session: Session) -> None:
    e = explore(session, program(INSTALL_VS_ALLOC, cpus=2), max_runs=5, max_switches=None)
    assert e.runs == 5 and not e.exhaustive

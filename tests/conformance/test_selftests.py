"""Conformance: each selftest scenario (selftest_programs.py) runs clean under the oracles,
on every arch and revision it names, with the results and stream reports the selftest
checks."""

from __future__ import annotations

import re

import pytest
from fuzzkit_arena.arena import Arena
from helpers import run
from selftest_programs import SCENARIOS, Scenario

from fuzzkit.runner import Session

CASES = [(s, arch, rev) for s in SCENARIOS for arch in s.arches for rev in s.revisions]
REPORT = re.compile(r"^ERROR: Arena (READ|WRITE) access at unmapped address 0x([0-9a-f]+) ")


@pytest.mark.parametrize(
    ("scenario", "arch", "revision"), CASES, ids=[f"{s.name}-{a}-{r}" for s, a, r in CASES]
)
def test_selftest_scenario(session: Session, scenario: Scenario, arch: str, revision: str) -> None:
    r = run(session, scenario.ops, arch=arch, revision=revision)
    assert r.finding is None, f"{scenario.source}: {r.finding.title if r.finding else ''}"
    arena: Arena = r.machine.handles["arena"][0]
    for index, expected in scenario.expect.items():
        want = expected(arena) if callable(expected) else expected
        assert r.results[index] == want, f"{scenario.source}: op {index} {scenario.ops[index]}"
    reports = [REPORT.match(line) for line in arena.prog.stream.lines]
    assert all(reports), arena.prog.stream.lines
    got = [(m[1], int(m[2], 16)) for m in reports if m is not None]
    assert got == [(access, addr(arena)) for access, addr in scenario.reports], scenario.source
    assert arena.prog.stream.dropped == 0
    for what, check in scenario.checks:
        assert check(r), f"{scenario.source}: {what}"


def test_every_scenario_names_its_selftest() -> None:
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    for s in SCENARIOS:
        assert s.source.startswith("tools/testing/selftests/bpf/progs/") and s.source.endswith(f": {s.name}")

"""``fuzzkit bench --bugs``: the seeded-bug library loads and means what it says, and the
harness times one campaign to its bug. The benchmark itself (`make bench-bugs`) takes many
minutes and is never part of the test run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzzkit_seeded.library import ARENA_ONLY, SeededBug

from fuzzkit import bench_bugs
from fuzzkit.cli import main
from fuzzkit.engines.campaign import Target
from fuzzkit.engines.supervisor import CampaignResult
from fuzzkit.errors import EngineFailure, PluginError
from fuzzkit.plugins import registry_from_flags
from fuzzkit.runner import Session

BUGS = {b.name: b for b in bench_bugs.library()}


def test_the_library_spans_invariants_and_both_arches() -> None:
    assert len(BUGS) >= 10
    assert {b.arch for b in BUGS.values()} == {"x86", "arm64"}
    assert len({b.title.split()[0] for b in BUGS.values()}) >= 6
    assert any(b.cpus == 2 for b in BUGS.values())
    for bug in BUGS.values():
        Target(bug.arch, bug.revision, bug.cpus).kernel(Session(registry_from_flags(list(bug.plugins))))


def test_a_campaign_is_timed_to_its_bug_and_stops_there() -> None:
    bug = BUGS["free-no-uncharge"]
    [trial] = bench_bugs.run([bug], ["hypothesis"], seeds=[1], budgets={"hypothesis": 120})
    assert trial.execs is not None and 1 <= trial.execs <= 120
    # The same seed on the real free path: nothing matches, the budget runs out.
    clean = SeededBug(**{**vars(bug), "plugins": ARENA_ONLY})
    [miss] = bench_bugs.run([clean], ["hypothesis"], seeds=[1], budgets={"hypothesis": 60})
    assert miss.execs is None


def test_misses_sort_after_every_hit() -> None:
    assert bench_bugs.median_hit([5, None, 3, None, 9]) == 9
    assert bench_bugs.median_hit([5, None, None, None, 9]) is None
    assert bench_bugs.median_hit([4, 2]) == 2
    result = bench_bugs.summary(
        [bench_bugs.Trial("b", "hypothesis", s, 10, e) for s, e in ((1, 3), (2, None), (3, 7))]
    )
    assert result["bugs"][0]["found"] == 2 and result["bugs"][0]["median_execs"] == 7
    assert "2/3" in bench_bugs.table(result)


def test_an_unknown_bug_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--bugs", "--bug", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "free-no-uncharge" in err[0]


def test_a_plugin_failure_keeps_the_campaign_folder_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message points at the failing program and the worker's log: they must still be
    there when the user reads it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    broken = SeededBug(**{**vars(BUGS["free-no-uncharge"]), "plugins": (*ARENA_ONLY, "variants.broken_op")})
    with pytest.raises(PluginError, match="broken_op") as failed:
        bench_bugs.run([broken], ["hypothesis"], seeds=[1], budgets={"hypothesis": 30})
    [folder] = tmp_path.glob("fuzzkit-bench-bugs-*")
    assert f"kept: {folder}" in str(failed.value)
    assert list((folder / "reports" / "plugin-failures").iterdir())


def test_a_dead_engine_is_an_engine_failure_not_a_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that died on its own (here, as libFuzzer does on a crash) blames no plugin."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    died = "x86-fixed-2cpu/w0: the atheris worker exited with code 77"
    monkeypatch.setattr(
        bench_bugs, "fuzz", lambda *a, **k: CampaignResult([], [], [], [died], interrupted=False)
    )
    with pytest.raises(EngineFailure, match="code 77") as failed:
        bench_bugs.run([BUGS["free-no-uncharge"]], ["hypothesis"], seeds=[2])
    assert "seed 2" in str(failed.value) and "kept: " in str(failed.value)
    assert not isinstance(failed.value, PluginError)

"""The fuzzkit command: exit codes, errors, output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzkit.cli import EXAMPLES, main

ROOT = Path(__file__).resolve().parents[2]


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("replay", "plugins", "bench", "run", "exit status", "-p"):
        assert word in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fuzzkit", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("fuzzkit ")


def test_plugins_json_lists_first_party_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in doc["plugins"]}
    assert by_name["x86"]["registered"]["arches"] == ["x86"]
    assert by_name["arm64"]["distribution"] == "fuzzkit"
    assert "arena.alloc" in by_name["arena"]["registered"]["ops"]
    assert "apply_range_set_cb[merged]" in by_name["arena"]["registered"]["primitives"]


def test_plugins_honours_p_no(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", "no:arm64", "plugins", "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]]
    assert "arm64" not in names and "x86" in names


def test_replay_clean_exits_0_and_prints_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(EXAMPLES / "scratch_install.json")]) == 0
    out = capsys.readouterr().out
    assert "ptep_try_set" in out and "clean: no invariant violated" in out and "cpu0" in out


def test_replay_json_is_exact_and_parseable(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", "--json", str(EXAMPLES / "scratch_install.json")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    doc = json.loads(first)
    assert doc["finding"] is None and doc["trace"][0]["step"] == 1


def test_replay_finding_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prog = {
        "fuzzkit": "program",
        "schema": 1,
        "config": {"arch": "x86", "cpus": 1},
        "ops": [{"op": "arena.create"}, {"op": "arena.alloc", "args": {"arena": 0}}],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prog))
    # The fixed alloc spins forever when the PTE holds only stray A/D bits: make it so
    # by clearing a page with the erratum injected, then allocating it again.
    prog["ops"] += [
        {"op": "arena.free", "args": {"arena": 0, "pgoff": 0}},
        {"op": "arena.alloc", "args": {"arena": 0}},
    ]
    prog["inject"] = [{"point": "pte_erratum_bits", "nth": 1}]
    path.write_text(json.dumps(prog))
    assert main(["replay", "--no-trace", str(path)]) == 1
    assert "FINDING: I16" in capsys.readouterr().out


def test_bad_input_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"fuzzkit": "program", "schema": 7}')
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fuzzkit: error: ") and "bad.json: schema: version 7" in err


def test_unknown_plugin_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", "no:sparc", "plugins"]) == 2
    assert "no plugin named 'sparc'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "stray"),
    [(["--corpora", "c"], "--corpora c"), (["--", "c"], "c"), (["--runs", "5", "bogus"], "bogus")],
)
def test_a_mistyped_fuzz_option_exits_2_and_reaches_no_engine(
    argv: list[str], stray: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Arguments fuzzkit does not know go to libFuzzer only when they are libFuzzer flags:
    passed on, "c" would be a corpus folder and "--corpora" ignored."""
    with pytest.raises(SystemExit) as exit_:
        main(["fuzz", "--reports", str(tmp_path / "r"), *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {stray};" in err
    assert "-name=value" in err and not (tmp_path / "r").exists()


def test_run_replays_every_bundled_example(capsys: pytest.CaptureFixture[str]) -> None:
    # Two examples show the merged revision's bugs: findings, so exit 1.
    assert main(["run"]) == 1
    out = capsys.readouterr().out
    assert ", 2 with findings." in out
    for path in EXAMPLES.glob("*.json"):
        assert path.name in out


def test_run_on_empty_dir_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path)]) == 2
    assert "no program files" in capsys.readouterr().err


def test_bench_json_reports_steps_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", "--programs", "3", "--no-engines"]) == 0
    figures = json.loads(capsys.readouterr().out)["figures"]
    assert [f["cpus"] for f in figures] == [1, 2]
    assert all(f["steps"] > 0 and f["steps_per_second"] > 0 for f in figures)
    # The figure is the median of timed rounds, and the range it quotes brackets it.
    for f in figures:
        assert len(f["rounds"]) == 5
        assert f["steps_per_second_lowest"] <= f["steps_per_second"] <= f["steps_per_second_highest"]


def test_examples_are_package_data_the_checkout_links_to() -> None:
    import fuzzkit

    assert Path(fuzzkit.__file__).resolve().parent / "data" / "examples" == EXAMPLES
    assert (ROOT / "corpora" / "examples").resolve() == EXAMPLES
    assert sorted(EXAMPLES.glob("*.json"))


def test_minimize_writes_beside_the_file_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "p.json"
    src.write_text((EXAMPLES / "merged_unallocatable_slot.json").read_text())
    assert main(["minimize", str(src), "--budget", "2000"]) == 0
    out = tmp_path / "p.min.json"
    assert "written" in capsys.readouterr().out and out.exists()
    before = out.read_text()
    assert main(["minimize", str(src)]) == 2
    assert "never overwrites" in capsys.readouterr().err and out.read_text() == before


def test_minimize_and_report_refuse_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"fuzzkit": "program", "schema": 9}')
    assert main(["minimize", str(bad)]) == 2
    assert "schema: version 9" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "not a reports folder" in capsys.readouterr().err

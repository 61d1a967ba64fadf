"""Bad input to every command: exit 2 with one line naming the file and the field, never a
traceback; text from files printed with control characters escaped; `run` exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fuzzkit.cli import EXAMPLES, main
from fuzzkit.errors import ProgramError
from fuzzkit.program import MAX_DEPTH, load, loads
from fuzzkit.runner import Session, format_result, jsonable
from fuzzkit.text import printable


def write(path: Path, doc: dict[str, Any] | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def prog(**fields: Any) -> dict[str, Any]:
    return {"fuzzkit": "program", "schema": 1, "ops": [], **fields}


def replay_error(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fuzzkit: error: "), err
    return err


def test_deeply_nested_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Past json's recursion limit, and deep enough for the loader's own bound.
    err = replay_error(capsys, write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000))
    assert "deep.json: nested more than 32 levels deep" in err
    nested: Any = 0
    for _ in range(MAX_DEPTH + 1):
        nested = [nested]
    err = replay_error(capsys, write(tmp_path / "rec.json", prog(recorded_with={"x": nested})))
    assert f"rec.json: recorded_with.x{'[0]' * (MAX_DEPTH - 1)}: nested more than" in err


def test_integer_over_4300_digits_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(prog(config={"cpus": 1})).replace('"cpus": 1', '"cpus": ' + "9" * 5000)
    err = replay_error(capsys, write(tmp_path / "big.json", text))
    assert "big.json: an integer has more than 4300 digits" in err


def test_lone_surrogate_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = '{"fuzzkit": "program", "schema": 1, '
    path = write(tmp_path / "s.json", head + '"description": "a\\ud800", "ops": []}')
    assert "s.json: description: a lone surrogate is not text" in replay_error(capsys, path)
    path = write(tmp_path / "k.json", head + '"ops": [{"op": "x", "\\udfff": 1}]}')
    assert "k.json: ops[0].\\udfff: a lone surrogate" in replay_error(capsys, path)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"arch": "vax"}, "config.arch: unknown arch 'vax'; loaded arches: arm64, x86"),
        ({"revision": "old"}, "config.revision: unknown revision 'old'; one of merged, fixed"),
    ],
)
def test_unknown_arch_or_revision_names_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, str], says: str
) -> None:
    path = write(tmp_path / "cfg.json", prog(config=config))
    assert f"cfg.json: {says}" in replay_error(capsys, path)


def test_unknown_arch_through_the_session_names_the_source(session: Session) -> None:
    program = loads(json.dumps(prog(config={"arch": "sparc"})), "p.json")
    with pytest.raises(ProgramError, match=r"^p\.json: config\.arch: unknown arch 'sparc'"):
        session.run(program, source="p.json")


def test_control_characters_from_a_file_are_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads((EXAMPLES / "scratch_install.json").read_text())
    doc["description"] = "clear\x1b[2J\x1b]0;owned\x07\rline\u202eevil\nnext"
    path = write(tmp_path / "ctl.json", doc)
    assert main(["replay", "--no-trace", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "clear\\x1b[2J\\x1b]0;owned\\x07\\rline\\u202eevil\\nnext" in out
    # A bad field quoting file text: the one-line error is escaped too.
    bad = write(tmp_path / "op.json", prog(ops=[{"op": "arena.create\x1b[31m\nx"}]))
    assert "unknown op 'arena.create\\x1b[31m\\nx'" in replay_error(capsys, bad)


def test_printable_escapes_only_what_a_terminal_would_act_on() -> None:
    assert printable("I8 scratch in arena.alloc (x86, fixed) é") == "I8 scratch in arena.alloc (x86, fixed) é"
    assert printable("a\tb\x00\x9b\u2028\U000e0001\ud800") == "a\\tb\\x00\\x9b\\u2028\\U000e0001\\ud800"
    assert printable("row 1\nrow\x1b 2", newlines=True) == "row 1\nrow\\x1b 2"


def test_run_exits_0_when_clean_and_1_when_programs_have_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("scratch_install.json", "free_scratched_slot.json"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    assert main(["run", str(tmp_path)]) == 0
    assert "2 programs replayed, 0 with findings" in capsys.readouterr().out
    (tmp_path / "m.json").write_text((EXAMPLES / "merged_unallocatable_slot.json").read_text())
    assert main(["run", str(tmp_path)]) == 1
    assert "3 programs replayed, 1 with findings" in capsys.readouterr().out


def test_an_op_result_that_is_not_json_does_not_crash_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "o.json", prog(ops=[{"op": "opaque.result"}]))
    assert main(["replay", "-p", "variants.opaque_result", "--no-trace", str(path)]) == 0
    assert "opaque.result" in capsys.readouterr().out
    assert main(["replay", "-p", "variants.opaque_result", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == {"0": "{3}"}
    assert jsonable(float("nan")) == "nan" and jsonable([1, "a"]) == [1, "a"]
    assert format_result({3}) == "{3}" and format_result("\x1b") == "\\x1b"


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_minimize_refuses_a_budget_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: str
) -> None:
    src = tmp_path / "p.json"
    src.write_text((EXAMPLES / "merged_unallocatable_slot.json").read_text())
    assert main(["minimize", str(src), "--budget", budget]) == 2
    assert f"--budget: must be at least 1 replay, got {budget}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_a_file_where_a_folder_belongs_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path / "file", "x")
    assert main(["report", str(file)]) == 2
    assert f"{file}: not a reports folder (a file)" in capsys.readouterr().err
    src = tmp_path / "p.json"
    src.write_text((EXAMPLES / "merged_unallocatable_slot.json").read_text())
    assert main(["minimize", str(src), "-o", str(file / "out.json")]) == 2
    assert "out.json: cannot write: a parent is not a folder" in capsys.readouterr().err


def test_a_folder_given_as_a_program_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read" in replay_error(capsys, tmp_path)
    with pytest.raises(ProgramError, match="cannot read"):
        load(tmp_path)

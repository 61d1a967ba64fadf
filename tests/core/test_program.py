"""The program format: human-writable, versioned, validated field by field, never executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzzkit import ProgramError
from fuzzkit.program import SCHEMA, OpCall, Program, load, loads, save
from fuzzkit.runner import Session

GOOD = {
    "fuzzkit": "program",
    "schema": SCHEMA,
    "config": {"arch": "arm64", "revision": "merged", "cpus": 2},
    "ops": [
        {"cpu": 0, "op": "arena.create", "args": {"max_entries": 8}},
        {"cpu": 1, "op": "arena.alloc", "args": {"arena": 0, "page_cnt": 2}},
    ],
    "schedule": [{"step": 3, "cpu": 1}],
    "inject": [{"point": "alloc_page", "nth": 2}],
}


def test_round_trip() -> None:
    prog = loads(json.dumps(GOOD))
    assert (prog.arch, prog.revision, prog.cpus) == ("arm64", "merged", 2)
    assert prog.ops[1] == OpCall(1, "arena.alloc", {"arena": 0, "page_cnt": 2})
    assert prog.switches == [(3, 1)] and prog.inject == [("alloc_page", 2)]
    again = loads(prog.dumps())
    assert again == prog


def test_minimal_program_takes_defaults() -> None:
    prog = loads('{"fuzzkit": "program", "schema": 1, "ops": [{"op": "arena.create"}]}')
    assert (prog.arch, prog.revision, prog.cpus) == ("x86", "fixed", 1)
    assert prog.ops == [OpCall(0, "arena.create", {})]


def _bad(doc: object) -> str:
    with pytest.raises(ProgramError) as exc:
        loads(json.dumps(doc), "p.json")
    return str(exc.value)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"schema": 2}, "p.json: schema: version 2 is not supported"),
        ({"fuzzkit": "corpus"}, 'p.json: fuzzkit: expected "program"'),
        ({"colour": "red"}, "p.json: colour: unknown field"),
        ({"config": {"cpus": 0}}, "p.json: config.cpus: must be between 1 and 64"),
        ({"config": {"cpus": "2"}}, "p.json: config.cpus: expected an integer"),
        ({"ops": [{"cpu": 5, "op": "arena.create"}]}, "p.json: ops[0].cpu: cpu 5 does not exist"),
        ({"ops": [{"op": 3}]}, "p.json: ops[0].op: expected str"),
        ({"ops": [{"op": "arena.create", "arg": {}}]}, "p.json: ops[0].arg: unknown field"),
        ({"schedule": [{"step": 0, "cpu": 0}]}, "p.json: schedule[0].step: steps must increase"),
        ({"inject": [{"point": "alloc_page", "nth": 0}]}, "p.json: inject[0].nth: must be >= 1"),
        ({"ops": "nope"}, "p.json: ops: expected list"),
    ],
)
def test_malformed_fields_are_named(patch: dict[str, object], expected: str) -> None:
    assert expected in _bad({**GOOD, **patch})


def test_missing_schema_and_non_object() -> None:
    assert "p.json: schema: missing" in _bad({"fuzzkit": "program"})
    assert "p.json: top level: expected an object" in _bad([1, 2])


def test_not_json_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(GOOD)[:40])
    with pytest.raises(ProgramError, match=r"cut.json: not JSON: .* line 1"):
        load(path)
    with pytest.raises(ProgramError, match="cannot read"):
        load(tmp_path / "absent.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProgramError, match="not UTF-8"):
        load(tmp_path / "bin.json")


def test_loading_is_data_only(tmp_path: Path) -> None:
    # Strings that would do something if evaluated stay strings: nothing is executed.
    doc = {**GOOD, "description": "__import__('os').system('false')"}
    prog = loads(json.dumps(doc))
    assert prog.description.startswith("__import__")


def test_resolve_checks_against_loaded_plugins(session: Session) -> None:
    def resolve_error(ops: list[dict[str, object]], inject: list[dict[str, object]] | None = None) -> str:
        prog = loads(json.dumps({**GOOD, "ops": ops, "inject": inject or []}))
        with pytest.raises(ProgramError) as exc:
            session.run(prog, source="p.json")
        return str(exc.value)

    assert "ops[0].op: unknown op 'arena.nope'" in resolve_error([{"op": "arena.nope"}])
    assert "ops[0].args.size: 'arena.alloc' has no such argument" in resolve_error(
        [{"op": "arena.alloc", "args": {"size": 1}}]
    )
    assert "ops[0].args.page_cnt: 4097 is outside [0, 4096]" in resolve_error(
        [{"op": "arena.alloc", "args": {"page_cnt": 4097}}]
    )
    assert "ops[0].args.sleepable: expected one of [True, False], got 1" in resolve_error(
        [{"op": "arena.alloc", "args": {"sleepable": 1}}]
    )
    assert "inject[0].point: unknown injection point 'alloc_pages'" in resolve_error(
        [{"op": "arena.create"}], [{"point": "alloc_pages", "nth": 1}]
    )


def test_save_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    save(Program(ops=[OpCall(0, "arena.create")]), path)
    save(Program(cpus=2, ops=[OpCall(1, "arena.create")]), path)
    assert load(path).cpus == 2
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]

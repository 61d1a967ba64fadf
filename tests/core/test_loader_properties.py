"""The loaders themselves, fuzzed: arbitrary JSON and arbitrary bytes as programs, corpus
stamps and bugs.json. Each one loads or is refused with the module's error type (one line,
naming the file), never a traceback, a hang, or a write; what loads writes back unchanged.
Example counts are bounded and the search is derandomized, so the suite is deterministic."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzkit.cli import main
from fuzzkit.engines.campaign import STAMP, Target, prepare_corpus
from fuzzkit.errors import ConfigError, ProgramError
from fuzzkit.program import load, loads
from fuzzkit.runner import Session
from fuzzkit.triage import STATUSES, BugStore, TriageError
from fuzzkit.triage.size import ProgramSize

BOUNDED = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Stands for an integer past Python's conversion limit (4,300 digits), which hypothesis
#: could not print: :func:`dumps` spells it out.
BIG_INT = "<big integer>"
#: Values that broke loaders once: an integer past the limit, a lone surrogate, terminal
#: escapes, floats JSON cannot hold.
NASTY = st.sampled_from(
    ["\ud800", "x\udfffy", "\x1b[2J\r", "../../etc/passwd", "", "-", float("inf"), -(10**40), BIG_INT]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | NASTY
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | NASTY.filter(lambda v: isinstance(v, str)), inner, max_size=4)
    ),
    max_leaves=16,
)
DEEP = st.integers(30, 3000).map(lambda n: "[" * n + "]" * n)


def dumps(doc: Any) -> str:
    return json.dumps(doc).replace(json.dumps(BIG_INT), "1" + "0" * 5000)


@st.composite
def corrupted(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid document with a few fields replaced by arbitrary JSON, dropped, or added."""
    doc = draw(valid)
    for _ in range(draw(st.integers(0, 2))):
        paths = list(_paths(doc))
        where, key = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(("replace", "drop", "add")))
        if how == "replace":
            where[key] = draw(JSON)
        elif how == "drop" and isinstance(where, dict):
            where.pop(key)
        elif isinstance(where, dict):
            where[draw(st.text(max_size=6))] = draw(JSON)
    return doc


def _paths(doc: Any) -> Iterator[tuple[Any, Any]]:
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield doc, key
        yield from _paths(value)


SMALL = st.integers(-1, 4)
OP_IDS = ["arena.create", "arena.alloc", "arena.free", "arena.kernel_access", "scx.set_cmask", "no.such"]
PROGRAMS = st.fixed_dictionaries(
    {
        "fuzzkit": st.just("program"),
        "schema": st.just(1),
        "config": st.fixed_dictionaries(
            {
                "arch": st.sampled_from(["x86", "arm64", "vax"]),
                "revision": st.sampled_from(["merged", "fixed", "old"]),
                "cpus": st.integers(0, 3),
            }
        ),
        "ops": st.lists(
            st.fixed_dictionaries(
                {"cpu": SMALL, "op": st.sampled_from(OP_IDS)},
                optional={
                    "args": st.dictionaries(st.sampled_from(["arena", "pgoff", "page_cnt", "x"]), SMALL)
                },
            ),
            max_size=4,
        ),
        "schedule": st.lists(st.fixed_dictionaries({"step": SMALL, "cpu": SMALL}), max_size=2),
        "inject": st.lists(
            st.fixed_dictionaries({"point": st.sampled_from(["alloc_page", "x"]), "nth": SMALL}), max_size=2
        ),
    },
    optional={
        "description": st.text(max_size=12) | NASTY,
        "recorded_with": st.dictionaries(st.text(max_size=4), JSON),
    },
)


def check_program_text(session: Session, text: str) -> None:
    try:
        program = loads(text, "p.json")
        session.resolve(program, "p.json")
    except ProgramError as exc:
        message = str(exc)
        assert message.startswith("p.json: ") and message.isprintable(), message
        return
    # Loads and resolves: it writes back to the same program.
    assert loads(program.dumps(), "again.json") == program


@BOUNDED
@given(doc=JSON | corrupted(PROGRAMS) | PROGRAMS | DEEP)
def test_any_json_program_loads_or_is_refused_naming_the_file(session: Session, doc: Any) -> None:
    check_program_text(session, doc if isinstance(doc, str) else dumps(doc))


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def listing(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@settings(BOUNDED, max_examples=60)
@given(data=st.binary(max_size=64) | JSON.map(lambda d: dumps(d).encode()))
def test_any_bytes_as_a_program_file_exit_2_and_write_nothing(data: bytes) -> None:
    with folder() as tmp:
        path = tmp / "p.json"
        path.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["replay", "--no-trace", str(path)])
        assert code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
        assert err.getvalue().startswith(f"fuzzkit: error: {path}: ")
        assert listing(tmp) == {"p.json": data}
        with pytest.raises(ProgramError):
            load(path)


@settings(BOUNDED, max_examples=100)
@given(
    data=st.binary(max_size=48)
    | (JSON | DEEP).map(lambda d: (d if isinstance(d, str) else dumps(d)).encode())
)
def test_any_corpus_stamp_is_accepted_only_when_it_matches_and_is_never_rewritten(
    session: Session, data: bytes
) -> None:
    kernel = Target("x86", "fixed", 2).kernel(session)
    with folder() as tmp:
        (tmp / STAMP).write_bytes(data)
        try:
            prepare_corpus(tmp, kernel)
        except ConfigError as exc:
            assert str(exc).startswith(str(tmp)) and str(exc).isprintable()
        else:
            assert json.loads(data)["op_table"] == kernel.fingerprint
        assert listing(tmp) == {STAMP: data}


def test_the_corpus_stamp_of_the_same_target_is_accepted(session: Session) -> None:
    kernel = Target("x86", "fixed", 2).kernel(session)
    with folder() as tmp:
        prepare_corpus(tmp, kernel)
        stamp = (tmp / STAMP).read_bytes()
        prepare_corpus(tmp, kernel)
        assert listing(tmp) == {STAMP: stamp}


SIZES = st.fixed_dictionaries({name: st.integers(0, 50) for name in ProgramSize.__dataclass_fields__})
TEXT = st.text(max_size=10)
BUGS = st.fixed_dictionaries(
    {
        "fuzzkit": st.just("bugs"),
        "schema": st.just(1),
        "bugs": st.lists(
            st.fixed_dictionaries(
                {
                    "title": TEXT,
                    "alt_titles": st.lists(TEXT, max_size=2),
                    "slug": st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
                    "spec_id": TEXT,
                    "op": TEXT,
                    "primitive": st.none() | TEXT,
                    "arch": TEXT,
                    "revision": TEXT,
                    "replaced": st.lists(
                        st.fixed_dictionaries({"primitive": TEXT, "plugin": TEXT}), max_size=2
                    ),
                    "count": st.integers(0, 9),
                    "first_seen": TEXT,
                    "last_seen": TEXT,
                    "original_size": SIZES,
                    "minimized_size": st.none() | SIZES,
                    "minimize": st.none()
                    | st.fixed_dictionaries(
                        {"replays": st.integers(0, 9), "budget": st.integers(0, 9), "complete": st.booleans()}
                    ),
                    "status": st.sampled_from(STATUSES),
                    "checked": TEXT,
                    "note": TEXT,
                }
            ),
            max_size=2,
            unique_by=lambda b: b["slug"],
        ),
    }
)


@settings(BOUNDED, max_examples=150)
@given(doc=JSON | BUGS | corrupted(BUGS) | DEEP | st.binary(max_size=32))
def test_any_bugs_json_loads_or_is_refused_and_what_loads_writes_back_unchanged(doc: Any) -> None:
    data = doc if isinstance(doc, bytes) else (doc if isinstance(doc, str) else dumps(doc)).encode()
    with folder() as tmp:
        (tmp / "bugs.json").write_bytes(data)
        try:
            store = BugStore.load(tmp)
        except TriageError as exc:
            assert str(exc).startswith(f"{tmp / 'bugs.json'}: ") and str(exc).isprintable()
            assert listing(tmp) == {"bugs.json": data}
            return
        assert listing(tmp) == {"bugs.json": data}
        before = [b.to_json() for b in store.bugs]
        store.save()
        again = BugStore.load(tmp)
        assert [b.to_json() for b in again.bugs] == before and again.extra == store.extra
        assert list(tmp.iterdir()) == [tmp / "bugs.json"]

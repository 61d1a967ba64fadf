"""Corpus stamps and the finding sink: nothing misread, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import program

from fuzzkit import ConfigError
from fuzzkit.engines.campaign import FindingSink, Target, prepare_corpus, slug
from fuzzkit.program import load
from fuzzkit.runner import Session

MERGED_I16 = [
    ("arena.create", {}),
    ("arena.kernel_access", {"arena": 0}),
    ("arena.alloc", {"arena": 0}),
]


def test_corpus_from_another_op_table_is_refused(session: Session, tmp_path: Path) -> None:
    prepare_corpus(tmp_path, session.kernel("x86", "fixed", 2))
    prepare_corpus(tmp_path, session.kernel("x86", "fixed", 2))  # same target: fine
    with pytest.raises(ConfigError, match="corpus was made for"):
        prepare_corpus(tmp_path, session.kernel("arm64", "fixed", 2))


def test_sink_writes_replayable_programs_once_per_title(session: Session, tmp_path: Path) -> None:
    prog = program(MERGED_I16, revision="merged")
    result = session.run(prog)
    assert result.finding is not None
    sink = FindingSink(tmp_path / "findings", log=tmp_path / "log.jsonl")
    path = sink.add(result.finding, session.record(prog, result))
    assert path is not None and path.name == slug(result.finding.title) + ".json"
    assert sink.add(result.finding, session.record(prog, result)) is None
    assert sink.counts[result.finding.title] == 2
    replayed = session.run(load(path))
    assert replayed.finding == result.finding
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 1


def test_sink_never_overwrites_an_existing_file(session: Session, tmp_path: Path) -> None:
    prog = program(MERGED_I16, revision="merged")
    result = session.run(prog)
    assert result.finding is not None
    target = tmp_path / f"{slug(result.finding.title)}.json"
    target.write_text("kept")
    assert FindingSink(tmp_path).add(result.finding, session.record(prog, result)) is None
    assert target.read_text() == "kept"


def test_hypothesis_throughput_counts_examples(session: Session) -> None:
    from fuzzkit.bench import hypothesis_throughput

    assert hypothesis_throughput(session, "x86", "fixed", 2, 5) > 0


def test_focus_keeps_the_matching_ops_and_what_creates_their_handles(session: Session) -> None:
    full = session.kernel("x86", "fixed", 2)
    focused = Target("x86", "fixed", 2, ("scx.alloc",)).kernel(session)
    assert list(focused.ops) == ["arena.create", "scx.alloc", "scx.reg_cid", "struct_ops.load"]
    assert focused.fingerprint != full.fingerprint
    assert Target("x86", "fixed", 2, ("arena.*",)).kernel(session).ops.keys() == {
        k for k in full.ops if k.startswith("arena.")
    }
    with pytest.raises(ConfigError, match=r"--ops 'nosuch\.\*' matches no op"):
        Target("x86", "fixed", 2, ("nosuch.*",)).kernel(session)

"""Corpus stamps and saved findings: nothing misread, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import program

from fuzzkit import ConfigError
from fuzzkit.engines.campaign import Target, prepare_corpus, save_program, slug
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


def test_saved_finding_replays_and_is_never_overwritten(session: Session, tmp_path: Path) -> None:
    prog = program(MERGED_I16, revision="merged")
    result = session.run(prog)
    assert result.finding is not None
    name = slug(result.finding.title) + ".json"
    path = save_program(tmp_path / "findings", name, session.record(prog, result))
    assert session.run(load(path)).finding == result.finding
    path.write_text("kept")
    assert save_program(tmp_path / "findings", name, session.record(prog, result)) == path
    assert path.read_text() == "kept"
    assert [p.name for p in path.parent.iterdir()] == [name], "no temporary file is left behind"


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

"""Reports folders as data anyone can write: bugs.json's slugs stay inside the folder, sizes
are checked, unknown fields survive a rewrite, one damaged repro.json does not stop `fuzzkit
report` for the others, an unwritable folder is a one-line error, no temporary file is left
behind, and the generated regression test survives any reports path."""

from __future__ import annotations

import errno
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reports_helpers import BUGGY, T1, make_reports

from fuzzkit import files as files_module
from fuzzkit.cli import EXAMPLES, main
from fuzzkit.errors import ConfigError
from fuzzkit.program import load
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, TriageError, recheck, triage, write_bundle
from fuzzkit.triage import store as store_module
from fuzzkit.triage.report import regression_test_name

SIZE = {"ops": 1, "cpus": 1, "switches": 0, "inject": 0, "weight": 0}
#: The start of a program file, for damaged ones.
HEAD = '{"fuzzkit": "program", "schema": 1, "ops": [], '


def edit_bugs(folder: Path, change: Any) -> None:
    doc = json.loads((folder / "bugs.json").read_text())
    change(doc)
    (folder / "bugs.json").write_text(json.dumps(doc))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.mark.parametrize("bad", ["/../../tmp/x", "../escape", "..", "a/b", ".", "", "A", "x" * 101])
def test_a_slug_that_is_not_one_folder_name_is_refused(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    reports = tmp_path / "reports"
    make_reports(session, reports, BUGGY[:1])

    def set_slug(doc: dict[str, Any]) -> None:
        doc["bugs"][0]["slug"] = bad

    edit_bugs(reports, set_slug)
    before = (reports / "bugs.json").read_bytes()
    with pytest.raises(TriageError, match=r"bugs\.json: bugs\[0\]\.slug: .* is not a bundle folder name"):
        BugStore.load(reports)
    assert main(["report", str(reports)]) == 2
    assert "bugs[0].slug" in capsys.readouterr().err
    with pytest.raises(TriageError, match="slug"):
        triage(session, [load(EXAMPLES / BUGGY[0])], reports, now=T1)
    assert (reports / "bugs.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"], "nothing written outside"


def test_a_bundle_linking_outside_the_folder_cannot_replay(session: Session, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    store = make_reports(session, reports)
    outside = tmp_path / "elsewhere"
    (reports / store.bugs[0].slug).rename(outside)
    (reports / store.bugs[0].slug).symlink_to(outside)
    checked = recheck(session, reports, now=T1)
    assert [b.status for b in checked.bugs] == ["cannot replay", "still reproduces"]
    assert "leads outside the reports folder" in checked.bugs[0].note


def test_unknown_fields_survive_a_rewrite(session: Session, tmp_path: Path) -> None:
    make_reports(session, tmp_path)

    def annotate(doc: dict[str, Any]) -> None:
        doc["owner"] = {"team": "mm"}
        doc["bugs"][1]["known_as"] = ["LKML 2026-05-01"]

    edit_bugs(tmp_path, annotate)
    recheck(session, tmp_path, now=T1)
    doc = json.loads((tmp_path / "bugs.json").read_text())
    assert doc["owner"] == {"team": "mm"} and list(doc)[:2] == ["fuzzkit", "schema"]
    assert doc["bugs"][1]["known_as"] == ["LKML 2026-05-01"] and "known_as" not in doc["bugs"][0]
    assert doc["bugs"][1]["status"] == "still reproduces"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("original_size", {**SIZE, "ops": "3"}, "original_size.ops"),
        ("original_size", {**SIZE, "weight": True}, "original_size.weight"),
        ("minimized_size", {"ops": 1}, "minimized_size: expected the fields ops, cpus"),
        ("minimized_size", {**SIZE, "ops": -1}, "minimized_size.ops"),
        ("minimize", {"replays": 3, "budget": 10, "complete": "yes"}, "minimize.complete"),
        ("minimize", {"replays": -3, "budget": 10, "complete": True}, "minimize.replays"),
        ("count", -1, "count: must be >= 0"),
    ],
)
def test_malformed_size_fields_are_refused_naming_the_field(
    session: Session, tmp_path: Path, field: str, value: Any, says: str
) -> None:
    make_reports(session, tmp_path, BUGGY[:1])

    def damage(doc: dict[str, Any]) -> None:
        doc["bugs"][0][field] = value

    edit_bugs(tmp_path, damage)
    with pytest.raises(TriageError, match=rf"bugs\.json: bugs\[0\]\.{says}"):
        BugStore.load(tmp_path)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("{", "not JSON"),
        ("[" * 5000 + "]" * 5000, "nested more than 32 levels deep"),
        (HEAD + '"config": {"cpus": 1' + "0" * 5000 + "}}", "4300 digits"),
        (HEAD + '"description": "\\udc80"}', "description: a lone"),
        (HEAD + '"config": {"arch": "vax"}}', "config.arch"),
        (b"\xff\xfe", "not UTF-8"),
        (None, "cannot read"),
    ],
    ids=["truncated", "deep", "big_int", "surrogate", "arch", "binary", "folder"],
)
def test_one_damaged_repro_does_not_stop_report_for_the_others(
    session: Session,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str | bytes | None,
    says: str,
) -> None:
    store = make_reports(session, tmp_path)
    repro = tmp_path / store.bugs[0].slug / "repro.json"
    if damage is None:
        repro.unlink()
        repro.mkdir()
    elif isinstance(damage, bytes):
        repro.write_bytes(damage)
    else:
        repro.write_text(damage)
    assert main(["report", str(tmp_path)]) == 1  # the other bug still reproduces
    out = capsys.readouterr().out
    assert "cannot replay" in out and "still reproduces" in out
    [broken, fine] = BugStore.load(tmp_path).bugs
    assert broken.status == "cannot replay" and says in broken.note and str(repro) in broken.note
    assert fine.status == "still reproduces"
    index = " ".join((tmp_path / "index.md").read_text().split())  # wrapped to 100 columns
    assert says in index and not leftovers(tmp_path)


def fail_with(code: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_an_unwritable_reports_folder_is_one_line_exit_2(
    session: Session,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
) -> None:
    make_reports(session, tmp_path)
    before = (tmp_path / "bugs.json").read_bytes()
    # A full folder fails when the temporary file is written; a read-only one already when
    # the lock file is opened.
    if code == errno.ENOSPC:
        monkeypatch.setattr(files_module.tempfile, "mkstemp", fail_with(code))
    else:
        monkeypatch.setattr(store_module, "open", fail_with(code), raising=False)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and os.strerror(code) in err
    assert str(tmp_path) in err
    assert (tmp_path / "bugs.json").read_bytes() == before and not leftovers(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_reports_folder_is_one_line_exit_2(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_reports(session, tmp_path)
    tmp_path.chmod(0o555)
    try:
        assert main(["report", str(tmp_path)]) == 2
    finally:
        tmp_path.chmod(0o755)
    assert "cannot write" in capsys.readouterr().err


def test_minimize_into_a_full_folder_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "p.json"
    src.write_text((EXAMPLES / "merged_unallocatable_slot.json").read_text())
    from fuzzkit.triage import pipeline

    monkeypatch.setattr(pipeline.os, "link", fail_with(errno.ENOSPC))
    assert main(["minimize", str(src), "--budget", "50"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "p.min.json: cannot write: No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_a_failing_index_write_leaves_no_temporary_file(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_reports(session, tmp_path)
    monkeypatch.setattr(files_module.os, "replace", fail_with(errno.EIO))
    with pytest.raises(ConfigError, match=r"cannot write: Input/output error"):
        recheck(session, tmp_path, now=T1)
    assert not leftovers(tmp_path)


def test_generated_test_survives_any_reports_path(session: Session, tmp_path: Path) -> None:
    reports = tmp_path / 'r"""\\N{x}\'\n'
    store = make_reports(session, reports, BUGGY[:1])
    [bug] = store.bugs
    program = load(reports / bug.slug / "repro.json")
    (reports / bug.slug / "repro.json").unlink()
    (reports / bug.slug).rmdir()
    assert write_bundle(session, reports, bug, program, program) == reports / bug.slug
    test = reports / bug.slug / regression_test_name(bug.slug)
    py_compile.compile(str(test), doraise=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test.name],
        cwd=test.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "1 failed" in result.stdout, result.stdout
    assert f"still reproduces: {bug.title}" in result.stdout

"""fuzzkit corpus prune|merge: a grown corpus made small with libFuzzer's own merge."""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzkit.engines.campaign import STAMP

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here"
)
TARGET = "x86-fixed-1cpu"
ARENA = ["-p", "no:scx", "-p", "no:struct_ops"]


def fuzzkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzzkit", *ARENA, *args], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the corpus of a 3,000-run campaign."""
    cwd = tmp_path_factory.mktemp("grown")
    done = fuzzkit(cwd, "fuzz", "--cpus", "1", "--runs", "3000", "--jobs", "1")
    assert done.returncode in (0, 1), done.stderr
    return cwd


def inputs(folder: Path) -> set[bytes]:
    return {p.read_bytes() for p in folder.iterdir() if p.name not in (STAMP, "fuzzkit.dict")}


def test_prune_keeps_a_smaller_corpus_that_still_fuzzes(grown: Path, tmp_path: Path) -> None:
    shutil.copytree(grown / "corpora", tmp_path / "corpora")
    corpus = tmp_path / "corpora" / TARGET
    kept = inputs(corpus)
    for i, data in enumerate(sorted(kept)):  # the same inputs again under other names
        (corpus / f"copy-{i}").write_bytes(data)
    before = len(list(corpus.iterdir()))
    done = fuzzkit(tmp_path, "corpus", "prune", "--cpus", "1")
    assert done.returncode == 0, done.stderr
    assert len(list(corpus.iterdir())) < before // 2 + 3
    assert inputs(corpus) <= kept and (corpus / STAMP).exists()
    again = fuzzkit(tmp_path, "fuzz", "--cpus", "1", "--runs", "100", "--jobs", "1")
    assert again.returncode in (0, 1), again.stderr


def test_merge_adds_what_brings_new_coverage(grown: Path, tmp_path: Path) -> None:
    (tmp_path / "corpora" / TARGET).mkdir(parents=True)
    shutil.copy(grown / "corpora" / TARGET / STAMP, tmp_path / "corpora" / TARGET / STAMP)
    done = fuzzkit(tmp_path, "corpus", "merge", str(grown / "corpora" / TARGET), "--cpus", "1")
    assert done.returncode == 0, done.stderr
    merged = inputs(tmp_path / "corpora" / TARGET)
    assert merged and merged <= inputs(grown / "corpora" / TARGET)
    assert "0 inputs before" in done.stdout


def test_a_corpus_in_use_is_refused(grown: Path, tmp_path: Path) -> None:
    shutil.copytree(grown / "corpora", tmp_path / "corpora")
    lock = tmp_path / "reports" / "campaign" / TARGET / "w0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running campaign's worker holds it
        done = fuzzkit(tmp_path, "corpus", "prune", "--cpus", "1")
    assert done.returncode == 2 and "holds w0.lock" in done.stderr
    assert inputs(tmp_path / "corpora" / TARGET) == inputs(grown / "corpora" / TARGET)


def test_wrong_use_is_one_line_exit_2(tmp_path: Path) -> None:
    assert "no corpus for" in fuzzkit(tmp_path, "corpus", "prune").stderr
    assert fuzzkit(tmp_path, "corpus", "merge").returncode == 2
    assert fuzzkit(tmp_path, "corpus", "prune", "x").returncode == 2

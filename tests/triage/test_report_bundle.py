"""Report bundles and the index: what report.md shows, that the generated regression test runs
under plain pytest (from the repository or from the bundle) and fails exactly while the bug
reproduces, that bundles are never overwritten, and what `fuzzkit report` re-runs show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arena import test_invariants as inv
from arena import test_variants as var
from fuzzkit_arena import kernel
from helpers import program
from triage_helpers import NEEDS, arena_session, variant
from variants.arena_clear import clear_cb_without_scratch_skip

from fuzzkit.program import load
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore, TriageError, recheck, render_index, triage, write_bundle
from fuzzkit.triage.report import regression_test_name

T1, T2 = "2026-06-01T10:00:00+00:00", "2026-06-02T10:00:00+00:00"
MERGED_TITLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"
NO_SKIP_TITLE = "I1 scratch page freed before destroy in arena.free at arena_free_pages (x86, fixed)" + NEEDS


@pytest.fixture(scope="module")
def real() -> Session:
    return arena_session()


@pytest.fixture(scope="module")
def no_skip() -> Session:
    return variant("apply_range_clear_cb", clear_cb_without_scratch_skip, "no scratch skip")


@pytest.fixture
def merged_reports(real: Session, tmp_path: Path) -> Path:
    # A 2-CPU program with noise around the bug, as a campaign would record it.
    ops = [inv.CREATE, inv.alloc(9, cpu=1), inv.kaccess(0, insn="store"), inv.free(9, cpu=1), inv.alloc()]
    triage(real, [program(ops, revision="merged", cpus=2)], tmp_path / "reports", now=T1)
    return tmp_path / "reports"


def bundle(reports: Path) -> Path:
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    return folder


def pytest_file(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bundle_holds_report_repro_original_and_regression_test(merged_reports: Path) -> None:
    folder = bundle(merged_reports)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["report.md", "repro.json", "original.json", regression_test_name(folder.name)]
    )
    assert len(load(folder / "original.json").ops) == 5
    assert [oc.op for oc in load(folder / "repro.json").ops] == [
        "arena.create",
        "arena.kernel_access",
        "arena.alloc",
    ]
    assert not [p for p in merged_reports.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]


def test_report_md_explains_the_bug_section_by_section(merged_reports: Path) -> None:
    folder = bundle(merged_reports)
    text = (folder / "report.md").read_text()
    assert text.startswith(f"# {MERGED_TITLE}\n")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert [s.split(" (")[0] for s in sections] == [
        "## Program",
        "## Trace around the violation",
        "## State before step 1 and after step 12",
        "## Environment",
        "## Reproduce",
    ]
    assert "- **invariant**: I16 (SPEC.md): an allocation with room and no injected failure succeeds" in text
    assert "- **replaced primitives**: none: the plugins' own kernel code" in text
    assert "- **state broke**: step 12, cpu0, call 2 `arena.alloc`" in text
    program = text.split("## Program")[1].split("## Trace")[0]
    assert "#    cpu0" in program and "cpu1" not in program, "one column per CPU of the program"
    assert "arena.alloc -> 0 <- VIOLATION" in program
    # Every argument of every op, defaults included.
    assert "arena=0 addr=any pgoff=0 page_cnt=1 node=-1 flags=0 sleepable=true" in program
    assert "max_entries=16 flags=mmapable user_vm_start=fixed" in program
    assert "VIOLATION I16 best-fit allocation failed" in text
    assert "0xffffc90000008000  none             pfn 0x1000 arena0:scratch  changed" in text
    assert "arena0    (not created)    [0, 16)" in text
    assert "0xffffc90000008000 -> pfn 0x1000 arena0:scratch" in text, "the TLB after the kernel fault"
    assert "\narena     0.1.0\n" in text.split("## Environment")[1]
    # Reproduce lines that work from any folder, with the flags that load this plugin set.
    cds = [line[3:] for line in text.split("## Reproduce")[1].splitlines() if line.startswith("cd ")]
    assert Path(*cds) == folder.resolve(), "the cd lines lead into the bundle from anywhere"
    assert "python -m fuzzkit -p no:scx -p no:struct_ops replay repro.json" in text
    assert f"python -m pytest {regression_test_name(folder.name)}" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_report_names_the_replaced_primitive_and_its_plugin(no_skip: Session, tmp_path: Path) -> None:
    triage(no_skip, [program(var.FREE_SCRATCHED)], tmp_path, now=T1)
    text = (bundle(tmp_path) / "report.md").read_text()
    assert text.startswith(f"# {NO_SKIP_TITLE}\n")
    assert "`apply_range_clear_cb` by plugin `variant` (no scratch skip)" in text
    assert "- **state broke**: step 13, cpu0, call 2 `arena.free`, in `arena_free_pages`" in text
    assert "Found with plugins loaded in-process, which no flag can load: variant." in text
    assert "- **variant**: needs variant: the same program replayed without it shows no such bug" in text


def test_generated_test_fails_under_pytest_while_the_bug_reproduces(merged_reports: Path) -> None:
    folder = bundle(merged_reports)
    test = folder / regression_test_name(folder.name)
    from_repo = pytest_file(test, cwd=Path(__file__).resolve().parents[2])
    assert from_repo.returncode == 1, from_repo.stdout
    assert f"still reproduces: {MERGED_TITLE}" in from_repo.stdout
    from_bundle = pytest_file(Path(test.name), cwd=folder)
    assert from_bundle.returncode == 1 and "1 failed" in from_bundle.stdout


def test_generated_test_passes_under_pytest_once_the_variant_is_gone(
    no_skip: Session, tmp_path: Path
) -> None:
    # The variant plugin lives in this test process only; the generated test loads the
    # installed plugins the program was recorded with: the real clear callback.
    triage(no_skip, [program(var.FREE_SCRATCHED)], tmp_path, now=T1)
    folder = bundle(tmp_path)
    result = pytest_file(folder / regression_test_name(folder.name), cwd=folder)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout


def test_an_existing_bundle_is_never_overwritten(real: Session, merged_reports: Path) -> None:
    folder = bundle(merged_reports)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (folder / "notes.txt").write_text("a person's notes")
    store = BugStore.load(merged_reports)
    [bug] = store.bugs
    assert (
        write_bundle(
            real, merged_reports, bug, load(folder / "original.json"), load(folder / "original.json")
        )
        is None
    )
    again = triage(real, [load(folder / "original.json")], merged_reports, now=T2)
    assert [(t.new, t.bundle) for t in again.bugs] == [(False, None)]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "notes.txt"} == before
    assert (folder / "notes.txt").read_text() == "a person's notes"
    assert BugStore.load(merged_reports).bugs[0].count == 2


def test_index_lists_counts_sizes_and_status_after_a_rerun(real: Session, merged_reports: Path) -> None:
    index = (merged_reports / "index.md").read_text()
    assert f"- [{MERGED_TITLE}][1]\n" in index
    assert f"\n[1]: {bundle(merged_reports).name}/report.md" in index
    assert "3 ops, 1 cpu (from 5 ops, 2 cpus); new" in " ".join(index.split())
    assert max(len(line) for line in index.splitlines()) <= 100
    store = recheck(real, merged_reports, now=T2)
    assert [(b.status, b.checked) for b in store.bugs] == [("still reproduces", T2)]
    assert "still reproduces" in (merged_reports / "index.md").read_text()
    repro = bundle(merged_reports) / "repro.json"
    assert json.loads(repro.read_text())["config"]["revision"] == "merged"
    # The same program on a kernel whose merged apply_range_set_cb is the fix (R4): gone.
    patched = variant("apply_range_set_cb", kernel.apply_range_set_cb_fixed, "the fix")
    store = recheck(patched, merged_reports, now=T2)
    assert [b.status for b in store.bugs] == ["no longer reproduces"]
    assert "no longer reproduces" in render_index(store, "simple")


def test_rerun_of_a_damaged_repro_says_cannot_replay(real: Session, merged_reports: Path) -> None:
    repro = bundle(merged_reports) / "repro.json"
    repro.write_text(repro.read_text()[:40])
    store = recheck(real, merged_reports, now=T2)
    [bug] = store.bugs
    assert bug.status == "cannot replay" and "not JSON" in bug.note and str(repro) in bug.note
    assert "cannot replay" in (merged_reports / "index.md").read_text()


def test_report_of_a_folder_that_does_not_exist_is_an_error(real: Session, tmp_path: Path) -> None:
    with pytest.raises(TriageError, match="not a reports folder"):
        recheck(real, tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()

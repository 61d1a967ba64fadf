"""Reports folders made by hand from the example programs: what triage records, without the
cost of minimizing."""

from __future__ import annotations

from pathlib import Path

from fuzzkit.cli import EXAMPLES
from fuzzkit.program import load, save
from fuzzkit.runner import Session
from fuzzkit.triage import Bug, BugStore, signature, slug
from fuzzkit.triage.size import program_size

T1 = "2026-06-01T10:00:00+00:00"
#: Example programs with a finding: an I16 on the merged revision, an R27 on fixed.
BUGGY = ("merged_unallocatable_slot.json", "scx_set_cmask_after_free.json")


def make_reports(session: Session, folder: Path, names: tuple[str, ...] = BUGGY) -> BugStore:
    """A reports folder with one bundle (just repro.json) per example program, as triage
    would record it, without minimizing."""
    store = BugStore(folder)
    for name in names:
        program = load(EXAMPLES / name)
        sig = signature(session, program, name)
        assert sig is not None
        f = sig.finding
        kernel = session.kernel(program.arch, program.revision, program.cpus)
        bug = Bug(
            title=sig.title,
            slug=slug(sig.title),
            spec_id=f.spec_id,
            op=f.op,
            primitive=sig.primitive,
            arch=f.arch,
            revision=f.revision,
            replaced=[],
            alt_titles=list(sig.alt_titles),
            count=1,
            first_seen=T1,
            last_seen=T1,
            original_size=program_size(program, kernel).to_json(),
        )
        (folder / bug.slug).mkdir(parents=True)
        save(program, folder / bug.slug / "repro.json")
        store.bugs.append(bug)
    store.save()
    return store

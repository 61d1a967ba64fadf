"""Triage as engines and the command line use it: findings in, one minimized report per bug out.

:func:`triage` takes the programs a campaign found (each replays to a finding under its
recorded choices), signs each one, merges it into the reports folder's dedup store, and for a
bug seen for the first time minimizes the program and writes its bundle. :func:`recheck`
re-runs every bundle's ``repro.json`` and sets the bugs' status; :func:`minimize_file` is the
``fuzzkit minimize FILE -o OUT`` job.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fuzzkit.errors import FuzzkitError
from fuzzkit.files import temp_file
from fuzzkit.program import Program, load
from fuzzkit.runner import Session
from fuzzkit.triage.attribution import missing
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.known import is_known, known_titles, load_known
from fuzzkit.triage.minimize import DEFAULT_BUDGET, Minimized, minimize
from fuzzkit.triage.report import write_bundle, write_index
from fuzzkit.triage.signature import Signature, signature, slug
from fuzzkit.triage.size import program_size
from fuzzkit.triage.store import Bug, BugStore


def timestamp() -> str:
    """Now, in UTC, to the second: when a bug was seen (recorded, never decides anything)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Triaged:
    """What triage did with one bug of a batch."""

    bug: Bug
    #: True when the bug was not in the store before this batch and is not a known bug.
    new: bool
    #: Occurrences of the bug in this batch.
    occurrences: int = 0
    #: The bundle folder written in this batch (None: it existed already, or was not written).
    bundle: Path | None = None
    minimized: Minimized | None = None
    #: True when ``known.json`` lists the bug (:mod:`fuzzkit.triage.known`): counted, never new.
    known: bool = False


@dataclass
class TriageResult:
    bugs: list[Triaged] = field(default_factory=list)
    #: Sources of programs whose replay gave no finding (an engine/replay disagreement).
    unreproduced: list[str] = field(default_factory=list)

    @property
    def new(self) -> list[Triaged]:
        """Bugs seen for the first time in this batch, known bugs left out."""
        return [t for t in self.bugs if t.new]

    @property
    def known(self) -> list[Triaged]:
        """Known bugs seen in this batch."""
        return [t for t in self.bugs if t.known]


def triage(
    session: Session,
    programs: Iterable[Program | tuple[str, Program]],
    reports: str | Path,
    *,
    budget: int = DEFAULT_BUDGET,
    now: str | None = None,
) -> TriageResult:
    """Dedup, minimize and report ``programs`` (optionally ``(source, program)`` pairs, the
    source naming a file in messages) into the reports folder ``reports``.

    Every program is replayed once to sign it. A bug already recorded only has its count and
    last-seen time updated; a new bug is minimized within ``budget`` replays and gets a
    bundle. A bug ``known.json`` lists is counted and never new: it is recorded, but neither
    minimized nor given a bundle. Writes ``bugs.json`` and ``index.md``; never touches an
    existing bundle."""
    reports = Path(reports)
    now = now or timestamp()
    known = known_titles(load_known(reports))
    out = TriageResult()
    by_title: dict[str, Triaged] = {}
    signed = []
    for i, item in enumerate(programs):
        source, program = item if isinstance(item, tuple) else (f"<program {i}>", item)
        sig = signature(session, program, source)
        if sig is None:
            out.unreproduced.append(source)
        else:
            size = program_size(program, session.kernel(program.arch, program.revision, program.cpus))
            signed.append((sig, size, program))
    # A bug is named after its first occurrence, so the plainest go first: those with no
    # other op in flight (the race titles point at them), then the smallest programs.
    signed.sort(key=lambda s: (bool(s[0].in_flight), s[1]))
    with BugStore.update(reports) as store:
        for sig, _, program in signed:
            bug = store.find(sig)
            if bug is None:
                bug = _new_bug(session, sig, program)
                store.bugs.append(bug)
                listed = is_known(bug.titles, known)
                entry = by_title[bug.title] = Triaged(bug, new=not listed, known=listed)
                out.bugs.append(entry)
            elif bug.title not in by_title:
                entry = by_title[bug.title] = Triaged(bug, new=False, known=is_known(bug.titles, known))
                out.bugs.append(entry)
            else:
                entry = by_title[bug.title]
            store.seen(bug, sig, now)
            entry.occurrences += 1
            # A bundle shows the bug under its own title; an occurrence merged through an
            # alternative title cannot stand for it.
            if sig.title == bug.title and not entry.known and not (reports / bug.slug).exists():
                _bundle(session, reports, entry, program, budget)
        write_index(store)
    return out


@dataclass
class Recorded:
    """What :func:`record` did with one finding program."""

    bug: Bug
    #: True when the program showed a bug the store did not have and known.json does not list.
    new: bool
    #: True when known.json lists the bug: counted, never new, never bundled.
    known: bool = False


FINDINGS = "findings"


def check_reports(reports: Path) -> None:
    """Before a campaign's first execution: the reports folder can be written and its
    ``bugs.json`` read (a problem found after a night of fuzzing is a night lost)."""
    if reports.exists() and not reports.is_dir():
        raise TriageError(f"{reports}: --reports names a file, not a folder")
    try:
        reports.mkdir(parents=True, exist_ok=True)
        fd, probe = temp_file(reports, ".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TriageError(f"{reports}: the reports folder is not writable ({exc.strerror})") from exc
    BugStore.load(reports)
    load_known(reports)


def record(
    session: Session,
    reports: str | Path,
    path: str | Path,
    program: Program | None = None,
    *,
    now: str | None = None,
) -> Recorded | None:
    """Sign the finding program saved at ``path`` (inside ``reports``) and merge it into the
    store at once: a campaign's findings are durable the moment they are found, and only
    minimizing and bundling wait (:func:`bundle_pending`). None when it replays clean."""
    reports, path = Path(reports), Path(path)
    program = program if program is not None else load(path)
    sig = signature(session, program, str(path))
    if sig is None:
        return None
    rel = os.path.relpath(path, reports)
    known = known_titles(load_known(reports))
    with BugStore.update(reports) as store:
        bug = store.find(sig)
        absent = bug is None
        if bug is None:
            bug = _new_bug(session, sig, program)
            store.bugs.append(bug)
        if rel not in bug.programs:
            bug.programs.append(rel)
        store.seen(bug, sig, now or timestamp())
        write_index(store)
    listed = is_known(bug.titles, known)
    return Recorded(bug, new=absent and not listed, known=listed)


def add_counts(reports: str | Path, counts: dict[str, int], *, now: str | None = None) -> None:
    """Add occurrences (by bug slug) that a campaign saw again after recording them."""
    if not counts:
        return
    now = now or timestamp()
    with BugStore.update(reports) as store:
        for slug_, n in counts.items():
            bug = store.by_slug(slug_)
            if bug is not None:
                bug.count += n
                bug.last_seen = now
        write_index(store)


def absorb(session: Session, reports: str | Path) -> list[Recorded]:
    """Record every finding file in ``reports/findings`` that no bug lists yet: what a
    campaign killed between saving a program and recording it left behind."""
    reports = Path(reports)
    folder = reports / FINDINGS
    if not folder.is_dir():
        return []
    known = BugStore.load(reports).recorded()
    out = []
    for path in sorted(folder.glob("*.json")):
        if os.path.relpath(path, reports) in known:
            continue
        try:
            done = record(session, reports, path)
        except FuzzkitError as exc:
            raise TriageError(f"{path}: cannot record this finding: {exc}") from exc
        if done is not None:
            out.append(done)
    return out


def bundle_pending(session: Session, reports: str | Path, *, budget: int = DEFAULT_BUDGET) -> list[Triaged]:
    """Minimize and bundle every recorded bug that has no bundle yet. Minimizing runs outside
    the store's lock, so campaigns sharing the folder go on recording meanwhile."""
    reports = Path(reports)
    known = known_titles(load_known(reports))
    out = []
    for bug in BugStore.load(reports).bugs:
        if (reports / bug.slug).exists() or not bug.programs or is_known(bug.titles, known):
            continue
        if missing(session, bug.needs):  # its variant is not loaded: it cannot be minimized now
            continue
        program = load(reports / bug.programs[0])
        result = minimize(session, program, budget=budget, title=bug.title)
        with BugStore.update(reports) as store:
            live = store.by_slug(bug.slug)
            if live is None or (reports / bug.slug).exists():
                continue
            entry = Triaged(live, new=True)
            _bundle(session, reports, entry, program, budget, result)
            write_index(store)
        out.append(entry)
    return out


def _new_bug(session: Session, sig: Signature, program: Program) -> Bug:
    f = sig.finding
    kernel = session.kernel(program.arch, program.revision, program.cpus)
    return Bug(
        title=sig.title,
        slug=slug(sig.title),
        spec_id=f.spec_id,
        # Where the state broke: the op of the cause's write, with the primitive that made it.
        op=f.cause.op if f.cause is not None else f.op,
        primitive=sig.primitive,
        arch=f.arch,
        revision=f.revision,
        replaced=list(f.replaced),
        needs=list(sig.needs),
        also_without=list(sig.also_without),
        alt_titles=list(sig.alt_titles),
        original_size=program_size(program, kernel).to_json(),
    )


def _bundle(
    session: Session,
    reports: Path,
    entry: Triaged,
    program: Program,
    budget: int,
    result: Minimized | None = None,
) -> None:
    bug = entry.bug
    result = result or minimize(session, program, budget=budget, title=bug.title)
    small = result.program
    small.description = f"{bug.title} (minimized: {result.summary()})"
    entry.minimized = result
    bug.minimized_size = result.size.to_json()
    bug.minimize = {"replays": result.replays, "budget": result.budget, "complete": result.complete}
    # The minimized program may show the race from fewer sides: keep every way it was seen.
    bug.alt_titles = sorted(set(bug.alt_titles) | set(result.signature.alt_titles))
    entry.bundle = write_bundle(session, reports, bug, small, program, result)


def recheck(session: Session, reports: str | Path, *, now: str | None = None) -> BugStore:
    """Re-run every bug's ``repro.json`` with ``session`` and set its status (``cannot
    replay`` for a bug that needs a plugin ``session`` did not load). Writes ``bugs.json``
    and ``index.md``; returns the updated store."""
    reports = Path(reports)
    if not reports.is_dir():
        why = "a file" if reports.exists() else "no such directory"
        raise TriageError(f"{reports}: not a reports folder ({why})")
    now = now or timestamp()
    with BugStore.update(reports) as store:
        for bug in store.bugs:
            bug.checked, bug.note = now, ""
            # Without the variant its bug cannot show, which says nothing about a fix.
            absent = missing(session, bug.needs)
            if absent:
                bug.status, bug.note = "cannot replay", f"needs plugin {', '.join(absent)}"
                continue
            try:
                repro = store.bundle(bug) / "repro.json"
                sig = signature(session, load(repro), str(repro))
            except FuzzkitError as exc:  # unreadable, another schema, unknown op, arch or plugin
                bug.status, bug.note = "cannot replay", str(exc)
                continue
            reproduces = sig is not None and (sig.title == bug.title or bool(sig.keys & bug.titles))
            bug.status = "still reproduces" if reproduces else "no longer reproduces"
        write_index(store)
    return store


def minimize_file(
    session: Session, path: str | Path, out: str | Path, *, budget: int = DEFAULT_BUDGET
) -> Minimized:
    """Minimize the program in ``path`` and write it to ``out``, which must not exist (checked
    before any work, and again by an exclusive create when writing)."""
    path, out = Path(path), Path(out)
    if out.exists():
        raise TriageError(f"{out}: already exists; minimize never overwrites (choose another -o)")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise TriageError(f"{out}: cannot write: a parent is not a folder")
    program = load(path)
    result = minimize(session, program, budget=budget, source=str(path))
    result.program.description = f"{result.signature.title} (minimized from {path.name}: {result.summary()})"
    save_new(result.program, out)
    return result


def save_new(program: Program, path: Path) -> None:
    """Write ``program`` to ``path`` atomically, failing if ``path`` exists or its folder
    cannot be written (read-only, full)."""
    try:
        _link_new(program, path)
    except OSError as exc:
        raise TriageError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _link_new(program: Program, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(program.dumps())
        try:
            os.link(tmp, path)  # atomic, and refuses an existing file
        except FileExistsError:
            raise TriageError(f"{path}: already exists; minimize never overwrites") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

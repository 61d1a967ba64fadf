"""The dedup store: one record per distinct bug, persisted as ``<reports>/bugs.json``.

A finding belongs to a recorded bug when its title or one of its alternative titles equals
the bug's title or one of the bug's alternative titles (see :mod:`fuzzkit.triage.signature`:
races seen from either side, and a check at op completion seen at any op's completion); a
finding with a cause merges on its title alone (:attr:`Signature.keys`).
Each record counts occurrences and keeps when the bug was first and last seen, how big the
program that first showed it was, how far minimization got, and the bug's status:

* ``new``: recorded by a campaign, not re-run since;
* ``still reproduces`` / ``no longer reproduces``: what the last re-run of its ``repro.json``
  gave (:func:`fuzzkit.triage.recheck`);
* ``cannot replay``: the last re-run could not load or run it (the reason is in ``note``),
  among others because it needs a plugin that is not loaded (``needs plugin X``).

A bug found with replaced primitives records, in ``needs``, the replacing plugins it only
shows with, or in ``also_without`` those it shows without as well
(:mod:`fuzzkit.triage.attribution`); both are empty for a bug found without replacements.

Writers take an exclusive lock on ``<reports>/.bugs.lock`` around read-modify-write, and the
file is replaced atomically, so concurrent campaigns sharing a reports folder lose no counts
and a crash never leaves half a file. A malformed file, or one of another schema version, is
an error naming the file and the field, and is never overwritten. Fields this fuzzkit does
not know (written by a newer one, or by a person) are kept when the file is rewritten. A
``slug`` is a folder name inside the reports folder (``[a-z0-9-]``, no separators), so
nothing a store holds leads outside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzzkit.files import write_atomic
from fuzzkit.text import document_problem
from fuzzkit.triage.attribution import label
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.signature import Signature
from fuzzkit.triage.size import ProgramSize

KIND = "bugs"
SCHEMA = 1
FILENAME = "bugs.json"
STATUSES = ("new", "still reproduces", "no longer reproduces", "cannot replay")
#: What a slug may be: a single folder name, so a store never points outside its folder.
SLUG = re.compile(r"[a-z0-9-]{1,100}")
#: Stores nested deeper than this are refused (a store is five levels deep).
MAX_DEPTH = 32
SIZE_FIELDS = tuple(f.name for f in dataclasses.fields(ProgramSize))
MINIMIZE_FIELDS = {"replays": int, "budget": int, "complete": bool}


@dataclass
class Bug:
    """One distinct bug (all findings with its title or an alternative title)."""

    title: str
    slug: str
    spec_id: str
    op: str
    primitive: str | None
    arch: str
    revision: str
    #: Primitives a plugin replaced in the run that found it: (primitive, plugin).
    replaced: list[tuple[str, str]]
    alt_titles: list[str] = field(default_factory=list)
    #: Replacing plugins the bug needs, or that it also shows without (at most one is set).
    needs: list[str] = field(default_factory=list)
    also_without: list[str] = field(default_factory=list)
    count: int = 0
    first_seen: str = ""
    last_seen: str = ""
    #: Sizes as :class:`~fuzzkit.triage.minimize.ProgramSize` JSON; ``minimized`` is None
    #: until a minimization ran.
    original_size: dict[str, int] = field(default_factory=dict)
    minimized_size: dict[str, int] | None = None
    #: Replays spent minimizing, the budget, and whether a fixpoint was reached.
    minimize: dict[str, Any] | None = None
    status: str = "new"
    #: When the status was last set by a re-run, and why a re-run could not replay.
    checked: str = ""
    note: str = ""
    #: Finding files (relative to the reports folder) recorded as occurrences of this bug,
    #: the first one its bundle is made from; a file listed nowhere is still to be recorded.
    programs: list[str] = field(default_factory=list)
    #: Fields of the record this fuzzkit does not know, written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def titles(self) -> frozenset[str]:
        return frozenset((self.title, *self.alt_titles))

    @property
    def dependence(self) -> str:
        """ "needs P", "also without P", or "" (see :func:`fuzzkit.triage.attribution.label`)."""
        return label(self.needs, self.also_without)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "title": self.title,
            "alt_titles": list(self.alt_titles),
            "slug": self.slug,
            "spec_id": self.spec_id,
            "op": self.op,
            "primitive": self.primitive,
            "arch": self.arch,
            "revision": self.revision,
            "replaced": [{"primitive": p, "plugin": plugin} for p, plugin in self.replaced],
            "needs": list(self.needs),
            "also_without": list(self.also_without),
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "original_size": dict(self.original_size),
            "minimized_size": dict(self.minimized_size) if self.minimized_size is not None else None,
            "minimize": dict(self.minimize) if self.minimize is not None else None,
            "status": self.status,
            "checked": self.checked,
            "note": self.note,
            "programs": list(self.programs),
        }
        doc.update((k, v) for k, v in self.extra.items() if k not in doc)
        return doc


def _bug_from_json(raw: Any, where: str) -> Bug:
    def fail(key: str, msg: str) -> TriageError:
        return TriageError(f"{where}.{key}: {msg}")

    if not isinstance(raw, dict):
        raise TriageError(f"{where}: expected an object, got {type(raw).__name__}")

    def get(key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in raw:
            if optional:
                return None
            raise fail(key, "missing")
        value = raw[key]
        if value is None and optional:
            return None
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise fail(key, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
        return value

    status = get("status", str)
    if status not in STATUSES:
        raise fail("status", f"'{status}' is not one of {', '.join(STATUSES)}")
    replaced = []
    for i, r in enumerate(get("replaced", list)):
        if (
            not isinstance(r, dict)
            or not isinstance(r.get("primitive"), str)
            or not isinstance(r.get("plugin"), str)
        ):
            raise fail(f"replaced[{i}]", "expected {primitive, plugin} strings")
        replaced.append((r["primitive"], r["plugin"]))
    alt = get("alt_titles", list)
    if not all(isinstance(t, str) for t in alt):
        raise fail("alt_titles", "expected a list of strings")
    # Stores written before differential attribution have neither list.
    dependence = {key: get(key, list, optional=True) or [] for key in ("needs", "also_without")}
    for key, names in dependence.items():
        if not all(isinstance(n, str) for n in names):
            raise fail(key, "expected a list of plugin names")
    programs = get("programs", list, optional=True) or []
    if not all(
        isinstance(p, str) and ".." not in Path(p).parts and not Path(p).is_absolute() for p in programs
    ):
        raise fail("programs", "expected a list of paths inside the reports folder")
    slug = get("slug", str)
    if not SLUG.fullmatch(slug):
        raise fail("slug", f"{slug!r} is not a bundle folder name (1-100 of a-z, 0-9 and '-')")
    count = get("count", int)
    if count < 0:
        raise fail("count", f"must be >= 0, got {count}")

    def size(key: str, *, optional: bool = False) -> dict[str, int] | None:
        value = get(key, dict, optional=optional)
        if not value:  # {} or null: never measured
            return value
        if set(value) != set(SIZE_FIELDS):
            raise fail(key, f"expected the fields {', '.join(SIZE_FIELDS)}, got {', '.join(map(str, value))}")
        for name in SIZE_FIELDS:
            n = value[name]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise fail(f"{key}.{name}", f"expected an integer >= 0, got {n!r}")
        return dict(value)

    minimize = get("minimize", dict, optional=True)
    for name, kind in MINIMIZE_FIELDS.items() if minimize is not None else ():
        n = minimize.get(name)
        if type(n) is not kind or (isinstance(n, int) and n < 0):
            want = "true or false" if kind is bool else "an integer >= 0"
            raise fail(f"minimize.{name}", f"expected {want}, got {n!r}")
    known = {f.name for f in dataclasses.fields(Bug)} - {"extra"}
    return Bug(
        title=get("title", str),
        slug=slug,
        spec_id=get("spec_id", str),
        op=get("op", str),
        primitive=get("primitive", str, optional=True),
        arch=get("arch", str),
        revision=get("revision", str),
        replaced=replaced,
        alt_titles=list(alt),
        needs=list(dependence["needs"]),
        also_without=list(dependence["also_without"]),
        count=count,
        first_seen=get("first_seen", str),
        last_seen=get("last_seen", str),
        original_size=size("original_size") or {},
        minimized_size=size("minimized_size", optional=True),
        minimize=minimize,
        status=status,
        checked=get("checked", str),
        note=get("note", str),
        programs=list(programs),
        extra={k: v for k, v in raw.items() if k not in known},
    )


class BugStore:
    """The bugs of one reports folder, in the order they were first recorded."""

    def __init__(
        self, folder: Path, bugs: list[Bug] | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        self.folder = Path(folder)
        self.bugs: list[Bug] = bugs or []
        #: Top-level fields this fuzzkit does not know, written back unchanged.
        self.extra: dict[str, Any] = extra or {}

    @property
    def path(self) -> Path:
        return self.folder / FILENAME

    @classmethod
    def load(cls, folder: str | Path) -> BugStore:
        """Read ``folder/bugs.json`` (an empty store when there is none)."""
        folder = Path(folder)
        path = folder / FILENAME
        doc = read_document(path, KIND, "bug store", SCHEMA)
        if doc is None:
            return cls(folder)
        raw = doc.get("bugs")
        if not isinstance(raw, list):
            raise TriageError(f"{path}: bugs: expected a list")
        bugs = [_bug_from_json(b, f"{path}: bugs[{i}]") for i, b in enumerate(raw)]
        slugs = [b.slug for b in bugs]
        if len(set(slugs)) != len(slugs):
            raise TriageError(f"{path}: bugs: a slug is listed twice")
        return cls(folder, bugs, {k: v for k, v in doc.items() if k not in ("fuzzkit", "schema", "bugs")})

    @classmethod
    @contextlib.contextmanager
    def update(cls, folder: str | Path) -> Iterator[BugStore]:
        """Load under an exclusive lock, yield, and save when the block ends normally."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TriageError(f"{folder}: cannot create the reports folder: {exc.strerror or exc}") from None
        with _locked(folder / ".bugs.lock"):
            store = cls.load(folder)
            yield store
            store.save()

    def save(self) -> None:
        doc: dict[str, Any] = {"fuzzkit": KIND, "schema": SCHEMA}
        doc.update((k, v) for k, v in self.extra.items() if k != "bugs")
        doc["bugs"] = [b.to_json() for b in self.bugs]
        write_atomic(self.path, json.dumps(doc, indent=2) + "\n")

    def find(self, sig: Signature) -> Bug | None:
        """The bug ``sig`` belongs to: same title first, else a shared alternative title."""
        for bug in self.bugs:
            if bug.title == sig.title:
                return bug
        keys = sig.keys
        for bug in self.bugs:
            if bug.titles & keys:
                return bug
        return None

    def recorded(self) -> set[str]:
        """Every finding file some bug lists (see :attr:`Bug.programs`)."""
        return {p for bug in self.bugs for p in bug.programs}

    def by_slug(self, slug: str) -> Bug | None:
        return next((b for b in self.bugs if b.slug == slug), None)

    def bundle(self, bug: Bug) -> Path:
        """The bundle folder of ``bug``. A slug cannot name another folder (checked when
        loading); a bundle that is a link leading outside the reports folder is refused."""
        if not SLUG.fullmatch(bug.slug):
            raise TriageError(f"{self.path}: slug {bug.slug!r} is not a bundle folder name")
        folder = self.folder / bug.slug
        if not folder.resolve().is_relative_to(self.folder.resolve()):
            raise TriageError(f"{folder}: leads outside the reports folder {self.folder}")
        return folder

    def seen(self, bug: Bug, sig: Signature, now: str) -> None:
        """Count one more occurrence of ``bug``, seen as ``sig``. Every title a bug was seen
        under joins its alternative titles, so the next occurrence seen from that side merges
        even when no other op was in flight."""
        bug.alt_titles = sorted((set(bug.alt_titles) | sig.titles) - {bug.title})
        # A baseline bug first recorded without a variant, then met in the variant's campaign.
        if not bug.needs:
            bug.also_without = sorted(set(bug.also_without) | set(sig.also_without))
        bug.count += 1
        bug.first_seen = bug.first_seen or now
        bug.last_seen = now


def read_document(path: Path, kind: str, what: str, schema: int) -> dict[str, Any] | None:
    """The JSON object in ``path`` with ``"fuzzkit": kind`` and ``"schema": schema`` (None
    when there is no such file); everything else, from an unreadable file to a lone
    surrogate, is a :class:`TriageError` naming the file (and the field, where there is one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TriageError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TriageError(f"{path}: not JSON (truncated?): {exc.msg} at line {exc.lineno}") from exc
    except RecursionError:
        raise TriageError(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # only Python's int conversion limit gets past the JSON decoder
        digits = sys.get_int_max_str_digits()
        raise TriageError(f"{path}: an integer has more than {digits} digits") from None
    problem = document_problem(doc, MAX_DEPTH)
    if problem is not None:
        raise TriageError(f"{path}: {problem[0]}: {problem[1]}")
    if not isinstance(doc, dict) or doc.get("fuzzkit") != kind:
        raise TriageError(f'{path}: not a fuzzkit {what} (expected "fuzzkit": "{kind}")')
    if doc.get("schema") != schema:
        raise TriageError(
            f"{path}: schema: version {doc.get('schema')!r} is not supported; this fuzzkit reads {schema}"
        )
    return doc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: single-writer use only
        yield
        return
    try:
        lock = open(path, "a")  # noqa: SIM115 - closed below, after the block it guards
    except OSError as exc:
        raise TriageError(f"{path.parent}: cannot write (lock file): {exc.strerror or exc}") from None
    with lock as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

"""Known bugs: findings a person has accepted (a finding of the model, or a kernel bug with a
fix on its way), kept in ``<reports>/known.json`` so that campaigns stop calling them new.

This is syzkaller's suppression list and ClusterFuzz's known crashes, per reports folder: a
small file a person writes with ``fuzzkit known add BUG`` and reviews like any other::

    {"fuzzkit": "known", "schema": 1,
     "known": [{"title": "...", "note": "waiting for the fix in ...", "added": "..."}]}

A bug is known when its title or one of its alternative titles is a listed title. Triage
still counts a known bug's occurrences in ``bugs.json``; it does not report it as new, and
does not minimize it or write a bundle for it when it is seen for the first time. fuzzkit
ships no known bugs: an empty or missing file lists none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzzkit.files import write_atomic
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.store import Bug, BugStore, read_document

KIND = "known"
SCHEMA = 1
FILENAME = "known.json"


@dataclass(frozen=True)
class Known:
    """One accepted bug, by title."""

    title: str
    #: Why it is accepted (a person's words: a fix on its way, a limit of the model).
    note: str = ""
    #: When it was marked (UTC, ISO 8601).
    added: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "note": self.note, "added": self.added}


def load_known(folder: str | Path) -> list[Known]:
    """The known bugs listed in ``folder/known.json`` (none when there is no such file)."""
    path = Path(folder) / FILENAME
    doc = read_document(path, KIND, "known-bugs file", SCHEMA)
    if doc is None:
        return []
    raw = doc.get("known")
    if not isinstance(raw, list):
        raise TriageError(f"{path}: known: expected a list")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            raise TriageError(f"{path}: known[{i}].title: expected a string")
        for key in ("note", "added"):
            if not isinstance(entry.get(key, ""), str):
                raise TriageError(f"{path}: known[{i}].{key}: expected a string")
        out.append(Known(entry["title"], entry.get("note", ""), entry.get("added", "")))
    return out


def save_known(folder: str | Path, known: Iterable[Known]) -> Path:
    """Write ``folder/known.json`` atomically, one entry per known bug."""
    path = Path(folder) / FILENAME
    doc = {"fuzzkit": KIND, "schema": SCHEMA, "known": [k.to_json() for k in known]}
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def known_titles(known: Iterable[Known]) -> frozenset[str]:
    return frozenset(k.title for k in known)


def is_known(titles: Iterable[str], known: frozenset[str]) -> bool:
    """Whether a bug seen under ``titles`` (its title and alternative titles) is known."""
    return not known.isdisjoint(titles)


def _resolve(store: BugStore, ref: str) -> Bug | None:
    """The bug ``ref`` names: its slug, its bundle folder (or a file in it), or a title."""
    path = Path(ref)
    for name in (ref, path.name, path.parent.name):
        bug = store.by_slug(name)
        if bug is not None:
            return bug
    return next((b for b in store.bugs if ref in b.titles), None)


def mark_known(folder: str | Path, ref: str, note: str, now: str) -> Known:
    """List the recorded bug ``ref`` names in ``folder/known.json``; returns its entry (the
    existing one when it is listed already)."""
    store = BugStore.load(folder)
    bug = _resolve(store, ref)
    if bug is None:
        raise TriageError(
            f"{Path(folder) / 'bugs.json'}: no recorded bug '{ref}' (give a slug, a bundle folder or a title)"
        )
    known = load_known(folder)
    listed = next((k for k in known if k.title == bug.title), None)
    if listed is not None:
        return listed
    entry = Known(bug.title, note, now)
    save_known(folder, [*known, entry])
    return entry


def unmark_known(folder: str | Path, ref: str) -> Known:
    """Take the bug ``ref`` names (a title listed, or a recorded bug) off ``folder/known.json``."""
    known = load_known(folder)
    bug = _resolve(BugStore.load(folder), ref)
    title = bug.title if bug is not None else ref
    listed = next((k for k in known if k.title == title), None)
    if listed is None:
        raise TriageError(f"{Path(folder) / FILENAME}: '{ref}' is not listed")
    save_known(folder, [k for k in known if k is not listed])
    return listed

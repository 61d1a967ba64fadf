"""The error triage raises for bad input (it subclasses ``ValueError`` through
:class:`~fuzzkit.errors.FuzzkitError` conventions, so ``except ValueError`` still works)."""

from __future__ import annotations

from fuzzkit.errors import FuzzkitError


class TriageError(FuzzkitError, ValueError):
    """A program to minimize does not reproduce, a report store is malformed or of another
    schema version, or writing would overwrite an existing report. The message names the
    file and, for a malformed store, the field at fault."""

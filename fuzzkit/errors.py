"""Every error fuzzkit raises on purpose derives from :class:`FuzzkitError`.

User mistakes subclass the builtin that fits (``ValueError`` for bad input), so ordinary
``except`` clauses keep working; internal faults are never dressed up as user errors.
"""

from __future__ import annotations

from fuzzkit.text import printable


class FuzzkitError(Exception):
    """Root of fuzzkit's own errors. Its message is one line, control characters escaped:
    messages quote file names, field names and values from files anyone can write."""

    def __str__(self) -> str:
        return printable(super().__str__())


class PluginError(FuzzkitError):
    """A plugin failed to load or registered something invalid; the message names the plugin
    and the distribution it came from."""


class ConfigError(FuzzkitError, ValueError):
    """A run was configured with a value fuzzkit cannot honour (unknown arch, revision, ...)."""


class ProgramError(FuzzkitError, ValueError):
    """A program file is malformed; the message names the file and the field at fault."""


class MissingFeature(FuzzkitError, RuntimeError):
    """An optional dependency (atheris on a platform without wheels) is not installed."""

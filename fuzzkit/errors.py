"""Every error fuzzkit raises on purpose derives from :class:`FuzzkitError`.

User mistakes subclass the builtin that fits (``ValueError`` for bad input), so ordinary
``except`` clauses keep working; internal faults are never dressed up as user errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fuzzkit.text import printable

#: The exit-code contract of every ``fuzzkit`` command: nothing found, bugs found, bad usage or
#: input, a plugin or the engine failed.
EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


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


@dataclass
class FailureSite:
    """Where plugin code raised during a run: the plugin whose code raised (``core`` when no
    plugin frame is on the traceback), the op that was running and the innermost named
    function of that plugin (usually a primitive)."""

    plugin: str
    op: str
    function: str
    cpu: int
    step: int
    #: The exception's type and its message's first line.
    kind: str
    error: str


class PluginFailure(FuzzkitError):
    """Plugin code raised (or hung) while a program ran. This is never a finding of the kernel
    model: the plugin is at fault, and the program that triggers it replays to exit 3."""

    def __init__(self, site: FailureSite) -> None:
        super().__init__(
            f"plugin '{site.plugin}' failed in {site.function} during op {site.op} "
            f"(cpu{site.cpu}, step {site.step}): {site.error}"
        )
        self.site = site
        #: The program that triggers it, where the caller knows it (a campaign saves it).
        self.program: Any = None


class EngineFailure(FuzzkitError, RuntimeError):
    """An engine process failed on its own (not a plugin's code): exit 3."""


class OpHung(Exception):
    """Raised into an op that ran past the run guard without yielding (see
    :mod:`fuzzkit.machine.guard`); the run turns it into a :class:`PluginFailure`."""

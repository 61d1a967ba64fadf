"""fuzzkit: a plugin-based fault-injection fuzzer for BPF arena direct kernel access.

Layout, from the outside in:

* ``cli``: the ``fuzzkit`` command.
* ``program``: the JSON program format (what is replayed, minimized and reported).
* ``plugins`` / ``hookspecs`` / ``registry``: loading plugins through the ``fuzzkit``
  entry-point group, the hooks they implement, and compiling their registrations into a
  ``Kernel`` for one (arch, revision, cpus) configuration.
* ``machine``: the emulator core (pages, page tables, TLBs, fault path, scheduler, choices).
  It knows no arch and no subsystem; those come from plugins.

This module re-exports the public API a plugin author needs.
"""

from fuzzkit.domains import Choice, Domain, Handle, Int
from fuzzkit.errors import ConfigError, FuzzkitError, MissingFeature, PluginError, ProgramError
from fuzzkit.export.target import FuzzTarget, KernelModelBug, PluginCrash
from fuzzkit.machine.arch import (
    FIXUP,
    IGNORED,
    KFENCE,
    OOPS,
    PAGE_SHIFT,
    PAGE_SIZE,
    RETRY,
    Arch,
    Fault,
)
from fuzzkit.machine.choices import ChoiceSource, RandomChoices, Replay
from fuzzkit.machine.core import (
    Call,
    Cause,
    Cpu,
    Finding,
    Frame,
    Machine,
    Mutex,
    Page,
    RunResult,
    Steps,
    Violation,
)
from fuzzkit.plugins import hookimpl, load_registry
from fuzzkit.registry import DEFAULT_REVISION, REVISIONS, Kernel, Registry
from fuzzkit.variants import replacing

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_REVISION",
    "FIXUP",
    "IGNORED",
    "KFENCE",
    "OOPS",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "RETRY",
    "REVISIONS",
    "Arch",
    "Call",
    "Cause",
    "Choice",
    "ChoiceSource",
    "ConfigError",
    "Cpu",
    "Domain",
    "Fault",
    "Finding",
    "Frame",
    "FuzzTarget",
    "FuzzkitError",
    "Handle",
    "Int",
    "Kernel",
    "KernelModelBug",
    "Machine",
    "MissingFeature",
    "Mutex",
    "Page",
    "PluginCrash",
    "PluginError",
    "ProgramError",
    "RandomChoices",
    "Registry",
    "Replay",
    "RunResult",
    "Steps",
    "Violation",
    "__version__",
    "hookimpl",
    "load_registry",
    "replacing",
]

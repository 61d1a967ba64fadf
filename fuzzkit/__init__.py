"""fuzzkit: a plugin-based fault-injection fuzzer for BPF arena direct kernel access.

Layout, from the outside in:

* ``cli``: the ``fuzzkit`` command.
* ``program``: the JSON program format (what is replayed, minimized and reported).
* ``plugins`` / ``hookspecs`` / ``registry``: loading plugins through the ``fuzzkit``
  entry-point group, the hooks they implement, and compiling their registrations into a
  ``Kernel`` for one (arch, revision, cpus) configuration.
* ``machine``: the emulator core (pages, page tables, TLBs, fault path, scheduler, choices).
  It knows no arch and no subsystem; those come from plugins.

This module re-exports the public API a plugin author needs; ``__all__`` is that API, and
generated files (regression tests, export targets) import nothing else
(``tests/core/test_exports.py``).
"""

from typing import TYPE_CHECKING, Any

from fuzzkit.domains import Choice, Domain, Handle, Int
from fuzzkit.errors import ConfigError, FuzzkitError, MissingFeature, PluginError, ProgramError
from fuzzkit.export.target import FuzzTarget, KernelModelBug, PluginCrash
from fuzzkit.hookspecs import (
    AccessCheck,
    FaultDoneCheck,
    FaultStageFn,
    OpDoneCheck,
    PageFreeCheck,
    PteSetCheck,
    RegisterArch,
    RegisterFaultStage,
    RegisterInjectionPoint,
    RegisterInvariant,
    RegisterOp,
    RegisterPrimitive,
    RegisterRevision,
    Replace,
    TlbFlushCheck,
)
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
from fuzzkit.primitives import Primitives
from fuzzkit.registry import DEFAULT_REVISION, Kernel, Registry
from fuzzkit.variants import replacing

if TYPE_CHECKING:
    from fuzzkit.pytest_plugin import fuzzkit_regressions

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
    "AccessCheck",
    "Arch",
    "Call",
    "Cause",
    "Choice",
    "ChoiceSource",
    "ConfigError",
    "Cpu",
    "Domain",
    "Fault",
    "FaultDoneCheck",
    "FaultStageFn",
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
    "OpDoneCheck",
    "Page",
    "PageFreeCheck",
    "PluginCrash",
    "PluginError",
    "Primitives",
    "ProgramError",
    "PteSetCheck",
    "RandomChoices",
    "RegisterArch",
    "RegisterFaultStage",
    "RegisterInjectionPoint",
    "RegisterInvariant",
    "RegisterOp",
    "RegisterPrimitive",
    "RegisterRevision",
    "Registry",
    "Replace",
    "Replay",
    "RunResult",
    "Steps",
    "TlbFlushCheck",
    "Violation",
    "__version__",
    "fuzzkit_regressions",
    "hookimpl",
    "load_registry",
    "replacing",
]


def __getattr__(name: str) -> Any:
    # The pytest helper imports pytest and the hypothesis profiles: loaded when asked for, so
    # ``import fuzzkit`` (a fuzz target's start-up, every campaign worker) stays light.
    if name == "fuzzkit_regressions":
        from fuzzkit.pytest_plugin import fuzzkit_regressions

        return fuzzkit_regressions
    raise AttributeError(f"module 'fuzzkit' has no attribute {name!r}")

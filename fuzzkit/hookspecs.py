"""The fuzzkit plugin contract.

A plugin is a module (or any object) with functions marked ``@fuzzkit.hookimpl`` whose names
are the hooks below. It is found through the ``fuzzkit`` entry-point group, first-party
plugins exactly like a stranger's package::

    [project.entry-points.fuzzkit]
    mydesign = "fuzzkit_mydesign"

Registration hooks run once at start-up, in the order they appear here, and each is handed a
``register`` callable bound to the calling plugin, so every mistake is reported with the
plugin's name and distribution. Nothing here runs per emulator step: registrations are
compiled into plain calls before a run starts (DESIGN principle 4).

Hooks are called for each plugin in plugin-name order, so registration order, and with it
the op table, never depends on install order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from fuzzkit.domains import Domain
    from fuzzkit.machine.arch import Arch, Fault
    from fuzzkit.machine.core import Call, Cpu, Machine, Page

hookspec = pluggy.HookspecMarker("fuzzkit")

# -- the callables handed to the hooks, typed so mypy checks a plugin's registrations --------


class RegisterArch(Protocol):
    def __call__(self, arch_class: type[Arch], /) -> None: ...


class RegisterRevision(Protocol):
    def __call__(self, name: str, /, *, summary: str) -> None: ...


class RegisterPrimitive(Protocol):
    def __call__(
        self, name: str, fn: Callable[..., Any], /, *, summary: str, revision: str | None = None
    ) -> None: ...


class RegisterFaultStage(Protocol):
    def __call__(self, name: str, fn: FaultStageFn, /, *, summary: str) -> None: ...


class RegisterInjectionPoint(Protocol):
    def __call__(self, name: str, /, *, summary: str) -> None: ...


class RegisterOp(Protocol):
    def __call__(
        self,
        op_id: str,
        executor: Callable[..., Any],
        /,
        *,
        args: Mapping[str, Domain],
        summary: str,
        rules: tuple[str, ...] = (),
        creates: str | None = None,
        weight: float = 1.0,
    ) -> None: ...


class RegisterInvariant(Protocol):
    def __call__(
        self,
        spec_id: str,
        name: str,
        /,
        *,
        summary: str,
        on: Mapping[str, Callable[..., None]],
        arch: str | None = None,
        ops: tuple[str, ...] | None = None,
    ) -> None: ...


class Replace(Protocol):
    def __call__(self, name: str, fn: Callable[..., Any], /, *, reason: str, wraps: bool = False) -> None: ...


class FaultStageFn(Protocol):
    """A fault-path stage: a generator yielding step labels, returning an outcome or None."""

    def __call__(self, m: Machine, cpu: Cpu, fault: Fault, /) -> Any: ...


# One Protocol per machine event an invariant observes: ``on={"pte_set": check}`` with a
# check annotated by one of these is checked by mypy.


class PteSetCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, vpage: int, old: int, new: int, /) -> None: ...


class PageFreeCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, page: Page, /) -> None: ...


class TlbFlushCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, lo_vpage: int, hi_vpage: int, /) -> None: ...


class FaultDoneCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, fault: Fault, outcome: str, /) -> None: ...


class OpDoneCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, call: Call, result: Any, /) -> None: ...


class AccessCheck(Protocol):
    def __call__(self, m: Machine, cpu: Cpu, vpage: int, page: Page, write: bool, how: str, /) -> None: ...


# -- arches ------------------------------------------------------------------------------


@hookspec
def fuzzkit_register_arches(register: RegisterArch) -> None:
    """Register arch backends.

    ``register(arch_class)`` takes a subclass of :class:`fuzzkit.Arch` with its PTE encoding
    (``valid_bit``, ``pfn_mask``, ``mk_pte``, ``pte_none``), hardware quirks
    (``erratum_bits``, ``break_before_make``), fault kinds and the ordered kernel fault path
    (R14). Its ``name`` is what ``--arch`` and programs use; two plugins registering the same
    name fail start-up.
    """


@hookspec
def fuzzkit_register_revisions(register: RegisterRevision) -> None:
    """Register code revisions of the modelled mechanism (R4).

    ``register(name, *, summary)``. ``--revision`` and a program's ``config.revision`` name one;
    primitives registered for a revision (``register(..., revision=name)``) model how it
    differs. A plugin set that registers none has one revision, ``fixed``.
    """


# -- kernel primitives --------------------------------------------------------------------


@hookspec
def fuzzkit_register_primitives(register: RegisterPrimitive) -> None:
    """Register named kernel primitives (DESIGN principle 5).

    ``register(name, fn, *, summary, revision=None)``. ``name`` is the kernel's name for the
    function (``ptep_try_set``, ``apply_range_set_cb``); ``fn`` is called as
    ``fn(machine, cpu, ...)``, and is a generator function when the primitive performs atomic
    steps (it then yields a label after each one). Executors reach primitives as
    ``machine.k.<name>``, so a replacement takes effect everywhere.

    ``revision`` restricts the registration to one registered code revision (see
    ``fuzzkit_register_revisions``); register one per revision to model a change between them.
    A name registered twice for the same revision fails start-up.

    Every kernel function the model names is a primitive (or a fault-path stage, which is
    replaceable the same way), so that a design variant replaces it instead of copying its
    callers. :class:`fuzzkit.Primitives` lists the first-party ones with their signatures:
    ``m.k`` is typed by it, so mypy catches a misspelt name or a wrong call.
    """


@hookspec
def fuzzkit_register_fault_stages(register: RegisterFaultStage) -> None:
    """Register stages of the kernel fault path.

    ``register(name, fn, *, summary)``. ``fn(machine, cpu, fault)`` is a generator function
    returning ``None`` ("not mine") or an outcome (``FIXUP``, ``RETRY``, ``IGNORED``,
    ``KFENCE``, ``OOPS``). Arches name stages in their ``fault_path`` and decide the order
    and the fault kinds each stage sees; a subsystem provides the stage (the arena plugin
    provides ``bpf_arena_handle_page_fault``).
    """


@hookspec
def fuzzkit_register_injection_points(register: RegisterInjectionPoint) -> None:
    """Register the points where an injected failure can fire.

    ``register(name, *, summary)``. Code reaches a point with ``machine.inject(name)``, which
    draws a choice. Only registered names may appear in programs, so a typo in a hand-written
    program is an error, not a silently dead injection.
    """


# -- operations and oracles ----------------------------------------------------------------


@hookspec
def fuzzkit_register_ops(register: RegisterOp) -> None:
    """Register operations, the units programs are made of.

    ``register(op_id, executor, *, args, summary, rules=(), creates=None, weight=1.0)``. ``op_id`` is a
    stable dotted id (``arena.alloc``); ``args`` maps argument names to domains
    (:class:`fuzzkit.Int`, :class:`fuzzkit.Choice`, :class:`fuzzkit.Handle`) from which
    validation, generation, the byte codec and shrinking are all derived; ``executor`` is a
    generator function ``executor(machine, cpu, args)`` that yields a label after every
    atomic step and returns the op's result (JSON-able). ``rules`` lists the SPEC ids the op
    models; ``creates`` names the handle kind the op creates, if any; ``weight`` is how often
    generators should draw it relative to others (make teardown ops rare).
    """


@hookspec
def fuzzkit_register_invariants(register: RegisterInvariant) -> None:
    """Register oracles.

    ``register(spec_id, name, *, summary, on, arch=None, ops=None)``. ``spec_id`` is the SPEC
    invariant id (``I8``); ``name`` tells several checks of one invariant apart; ``arch``
    limits the check to runs on one arch (arm64's break-before-make, I10); ``ops`` limits its
    ``op_done`` check to those op ids (the others never pay for it). ``on`` maps machine events
    to check functions, which raise :class:`fuzzkit.Violation` when the invariant breaks.
    Events and their arguments (after ``machine, cpu``): ``pte_set(vpage, old, new)``,
    ``page_free(page)``, ``tlb_flush(lo_vpage, hi_vpage)``, ``fault_done(fault, outcome)``,
    ``op_done(call, result)``, ``access(vpage, page, write, how)``. Checks see only what
    changed, so they run after every step at no more than O(change) cost.
    """


# -- variants ------------------------------------------------------------------------------


@hookspec
def fuzzkit_replace_primitives(replace: Replace) -> None:
    """Replace named primitives to model a design variant or a suspected bug.

    ``replace(name, fn, *, reason, wraps=False)``, called after every plugin has registered.
    ``name`` is a primitive or a fault-path stage; ``fn`` must be of the same kind (generator
    function or not) as what it replaces and accept its arguments (checked at start-up), and
    only one plugin may replace a given name. Replacements show in ``fuzzkit plugins`` and in
    every finding.

    With ``wraps=True`` the replacement is handed the implementation it replaces (for the
    run's revision) as the keyword argument ``original``, bound once when the run's kernel is
    compiled, so wrapping costs one plain call per step::

        def wide_band(m, arena, addr, *, original):
            return original(m, arena, addr) or original(m, arena, addr + GUARD_SZ // 2)

        replace("arena_in_recovery_band", wide_band, reason="wider band", wraps=True)
    """


# -- campaigns -----------------------------------------------------------------------------


@hookspec
def fuzzkit_campaign_event(event: Any) -> None:
    """Observe a campaign: called in the ``fuzzkit fuzz`` process for every event its
    workers report (``started``, ``stats``, ``coverage``, ``finding``, ``seen``,
    ``plugin_failure``, ``stopped``; the fields of each are documented in
    :mod:`fuzzkit.engines.base`). ``event`` is a JSON-able dict; do not change it.

    Not a registration hook: it runs while a campaign runs, once per event, never per
    execution, so a status page or an exporter costs the fuzzing nothing. An exception
    raised here is the plugin's failure: the campaign stops and exits 3 naming the plugin.
    """

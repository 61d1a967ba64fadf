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

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("fuzzkit")

# -- arches ------------------------------------------------------------------------------


@hookspec
def fuzzkit_register_arches(register: Any) -> None:
    """Register arch backends.

    ``register(arch_class)`` takes a subclass of :class:`fuzzkit.Arch` with its PTE encoding
    (``valid_bit``, ``pfn_mask``, ``mk_pte``, ``pte_none``), hardware quirks
    (``erratum_bits``, ``break_before_make``), fault kinds and the ordered kernel fault path
    (R14). Its ``name`` is what ``--arch`` and programs use; two plugins registering the same
    name fail start-up.
    """


# -- kernel primitives --------------------------------------------------------------------


@hookspec
def fuzzkit_register_primitives(register: Any) -> None:
    """Register named kernel primitives (DESIGN principle 5).

    ``register(name, fn, *, summary, revision=None)``. ``name`` is the kernel's name for the
    function (``ptep_try_set``, ``apply_range_set_cb``); ``fn`` is called as
    ``fn(machine, cpu, ...)``, and is a generator function when the primitive performs atomic
    steps (it then yields a label after each one). Executors reach primitives as
    ``machine.k.<name>``, so a replacement takes effect everywhere.

    ``revision`` restricts the registration to one code revision (``"merged"`` or
    ``"fixed"``, see R4); register one per revision to model a change between them. A name
    registered twice for the same revision fails start-up.
    """


@hookspec
def fuzzkit_register_fault_stages(register: Any) -> None:
    """Register stages of the kernel fault path.

    ``register(name, fn, *, summary)``. ``fn(machine, cpu, fault)`` is a generator function
    returning ``None`` ("not mine") or an outcome (``FIXUP``, ``RETRY``, ``IGNORED``,
    ``KFENCE``, ``OOPS``). Arches name stages in their ``fault_path`` and decide the order
    and the fault kinds each stage sees; a subsystem provides the stage (the arena plugin
    provides ``bpf_arena_handle_page_fault``).
    """


@hookspec
def fuzzkit_register_injection_points(register: Any) -> None:
    """Register the points where an injected failure can fire.

    ``register(name, *, summary)``. Code reaches a point with ``machine.inject(name)``, which
    draws a choice. Only registered names may appear in programs, so a typo in a hand-written
    program is an error, not a silently dead injection.
    """


# -- operations and oracles ----------------------------------------------------------------


@hookspec
def fuzzkit_register_ops(register: Any) -> None:
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
def fuzzkit_register_invariants(register: Any) -> None:
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
def fuzzkit_replace_primitives(replace: Any) -> None:
    """Replace named primitives to model a design variant or a suspected bug.

    ``replace(name, fn, *, reason)``, called after every plugin has registered. The name must
    exist, ``fn`` must be of the same kind (generator function or not) as what it replaces,
    and only one plugin may replace a given primitive. Replacements show in
    ``fuzzkit plugins`` and in every finding.
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

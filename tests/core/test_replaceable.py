"""Every kernel function the model names is a replaceable primitive, typed in
:class:`fuzzkit.Primitives`, and a replacement can wrap the one it replaces."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType, SimpleNamespace
from typing import Any, get_type_hints

import pytest

from fuzzkit import Cpu, Fault, Machine, Primitives, Steps, hookimpl, load_registry
from fuzzkit.errors import ConfigError, PluginError
from fuzzkit.hookspecs import RegisterPrimitive, RegisterRevision
from fuzzkit.registry import Registry
from fuzzkit.variants import replacing

#: Functions in kernel-path modules that take the machine first but are no kernel function:
#: model helpers around the named ones.
NOT_KERNEL_FUNCTIONS = {
    # raw_res_spin_lock_irqsave() with its failure as an injection point, on arena->spinlock.
    "fuzzkit_arena.kernel.arena_spin_lock": "lock helper",
    # The kernel passes apply_range_clear_cb to apply_to_existing_page_range(); this is that call.
    "fuzzkit_arena.kernel.clear_range": "loop over a primitive",
    # The __free_page() loop after the flush.
    "fuzzkit_arena.kernel.free_collected": "loop over the page allocator",
    # The emulator's lock objects, not kernel paths.
    "fuzzkit_scx.sched.enable_mutex": "lock object",
    "fuzzkit_scx.sched.rq_lock": "lock object",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def kernel_modules(registry: Registry) -> list[ModuleType]:
    """The core's own kernel functions and each plugin's kernel paths: its top module and the
    modules it names in FUZZKIT_COVERAGE."""
    names = ["fuzzkit.machine.builtin"]
    for plugin in registry.plugins:
        if plugin.name != "core":
            top = importlib.import_module(plugin.module.partition(":")[0])
            names += [top.__name__, *getattr(top, "FUZZKIT_COVERAGE", ())]
    return [importlib.import_module(n) for n in dict.fromkeys(names)]


def test_every_kernel_function_of_a_plugin_is_a_registered_primitive(registry: Registry) -> None:
    registered = {id(p.fn) for p in registry.primitives.values()}
    registered |= {id(s.fn) for s in registry.fault_stages.values()}
    unregistered, seen = [], 0
    for mod in kernel_modules(registry):
        for name, fn in vars(mod).items():
            if not inspect.isfunction(fn) or fn.__module__ != mod.__name__ or name.startswith("_"):
                continue
            if list(inspect.signature(fn).parameters)[:1] != ["m"]:
                continue
            seen += 1
            qualified = f"{mod.__name__}.{name}"
            if id(fn) not in registered and qualified not in NOT_KERNEL_FUNCTIONS:
                unregistered.append(qualified)
    assert seen > 60, "the scan found the plugins' kernel functions"
    assert not unregistered, f"kernel functions that are not primitives: {unregistered}"


def test_primitives_protocol_lists_every_registered_name_with_its_arity(registry: Registry) -> None:
    typed = {n for n, f in vars(Primitives).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert typed == set(registry.primitive_names())
    fns = {n: p.fn for (n, _), p in registry.primitives.items()}
    fns |= {n: s.fn for n, s in registry.fault_stages.items()}
    for name, fn in fns.items():
        declared = list(inspect.signature(getattr(Primitives, name)).parameters)[1:]  # self
        assert len(declared) == len(inspect.signature(fn).parameters), name


def test_primitives_protocol_names_the_core_types() -> None:
    hints = get_type_hints(Primitives.ptep_try_set, globalns=vars(importlib.import_module("fuzzkit")))
    assert hints["m"] is Machine and hints["cpu"] is Cpu and hints["new"] is int


# -- replacing and wrapping ------------------------------------------------------------------------


def test_a_fault_stage_is_replaceable_and_the_replacement_runs_in_the_fault_path() -> None:
    def no_fixup(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
        return None
        yield

    reg = load_registry(extra=[replacing(reason="no extable", exception_table_fixup=no_fixup)])
    kernel = reg.compile("x86")
    assert no_fixup in [fn for fn, _ in kernel.fault_path]
    assert kernel.prims.exception_table_fixup is no_fixup
    assert ("exception_table_fixup", "variant") in kernel.replaced


def test_a_wrapping_replacement_is_handed_the_original_of_the_run_revision() -> None:
    seen: list[Any] = []

    def spy(m: Machine, cpu: Cpu, arena: Any, vpage: int, page: Any, *, original: Any) -> Steps:
        seen.append(original)
        return (yield from original(m, cpu, arena, vpage, page))

    reg = load_registry(extra=[replacing(reason="spy", wraps=True, apply_range_set_cb=spy)])
    for revision in ("merged", "fixed"):
        wrapped = reg.compile("x86", revision).prims.apply_range_set_cb
        assert wrapped.func is spy
        assert wrapped.keywords["original"] is reg.primitives[("apply_range_set_cb", revision)].fn


def test_a_replacement_that_cannot_take_the_original_arguments_fails_start_up() -> None:
    def short(m: Machine, cpu: Cpu) -> Steps:
        yield "x"

    with pytest.raises(PluginError, match=r"plugin 'variant'.*ptep_get.*does not take the original"):
        load_registry(extra=[replacing(reason="bad", ptep_get=short)])

    def unwrapped(m: Machine, cpu: Cpu, vpage: int) -> Steps:
        yield "x"

    with pytest.raises(PluginError, match="original"):
        load_registry(extra=[replacing(reason="bad", wraps=True, ptep_get=unwrapped)])


def plugin(name: str, **hooks: Any) -> tuple[str, object]:
    """An in-process plugin implementing ``hooks``."""
    return name, SimpleNamespace(__name__=name, **{h: hookimpl(fn) for h, fn in hooks.items()})


def test_a_primitive_and_a_fault_stage_cannot_share_a_name() -> None:
    def register_kfence(register: RegisterPrimitive) -> None:
        register("kfence", lambda m: None, summary="clash")

    with pytest.raises(PluginError, match=r"primitive 'kfence' is already registered by plugin 'clash'"):
        load_registry(extra=[plugin("clash", fuzzkit_register_primitives=register_kfence)])


# -- revisions come from the plugins --------------------------------------------------------------


def test_revisions_are_what_the_plugins_register(registry: Registry) -> None:
    def register_experimental(register: RegisterRevision) -> None:
        register("experimental", summary="a third revision")

    assert registry.revision_names() == ("merged", "fixed")
    reg = load_registry(extra=[plugin("experimental", fuzzkit_register_revisions=register_experimental)])
    assert reg.revision_names() == ("merged", "fixed", "experimental")
    assert reg.compile("x86", "experimental").revision == "experimental"
    with pytest.raises(ConfigError, match="one of merged, fixed, experimental"):
        reg.compile("x86", "nope")
    def register_fixed(register: RegisterRevision) -> None:
        register("fixed", summary="again")

    with pytest.raises(PluginError, match=r"plugin 'later'.*revision 'fixed' is already registered by"):
        load_registry(extra=[plugin("later", fuzzkit_register_revisions=register_fixed)])
    without_arena = load_registry(disable=["arena", "scx", "struct_ops"])
    assert without_arena.revision_names() == ("fixed",)

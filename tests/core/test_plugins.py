"""The plugin contract: loading through entry points, disabling, and bad plugins failing
start-up with an error that names the plugin and its distribution."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fuzzkit import Arch, ConfigError, Int, PluginError, hookimpl, load_registry
from fuzzkit import plugins as plugins_mod


def test_first_party_plugins_load_through_entry_points() -> None:
    reg = load_registry()
    by_name = {p.name: p for p in reg.plugins}
    for name, module in (("x86", "fuzzkit_x86"), ("arm64", "fuzzkit_arm64"), ("arena", "fuzzkit_arena")):
        assert by_name[name].module == module
        assert by_name[name].distribution == "fuzzkit"
    assert {n for n, *_ in plugins_mod.installed()} >= {"x86", "arm64", "arena"}
    assert set(reg.arches) == {"x86", "arm64"}


def test_p_no_disables_a_plugin() -> None:
    reg = load_registry(disable=["arm64"])
    assert "arm64" not in {p.name for p in reg.plugins}
    assert set(reg.arches) == {"x86"}
    assert ("I10", "break_before_make") not in reg.invariants


def test_autoload_off_loads_only_named_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins_mod.AUTOLOAD_ENV, "1")
    reg = load_registry(enable=["x86"])
    assert [p.name for p in reg.plugins] == ["core", "x86"]
    assert not reg.ops


def test_unknown_plugin_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no plugin named 'nosuch'"):
        load_registry(disable=["nosuch"])


class _EntryPoint:
    """Stands in for an importlib.metadata entry point of a broken distribution."""

    def __init__(self, name: str, obj: Any = None, error: Exception | None = None) -> None:
        self.name, self.value, self._obj, self._error = name, f"{name}_mod", obj, error

    def load(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._obj


def _with_installed(monkeypatch: pytest.MonkeyPatch, *eps: _EntryPoint) -> None:
    real = plugins_mod.installed()
    extra = [(ep.name, "brokendist", "9.9", ep) for ep in eps]
    monkeypatch.setattr(plugins_mod, "installed", lambda: sorted(real + extra, key=lambda t: t[0]))


def test_import_error_names_plugin_and_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_installed(monkeypatch, _EntryPoint("broken", error=ImportError("No module named 'zzz'")))
    with pytest.raises(PluginError) as exc:
        load_registry()
    msg = str(exc.value)
    assert "plugin 'broken'" in msg and "brokendist" in msg and "No module named 'zzz'" in msg


def test_hookimpl_not_matching_its_spec_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bad:
        @hookimpl
        def fuzzkit_register_ops(self, registrar: Any) -> None:  # wrong argument name
            pass

    _with_installed(monkeypatch, _EntryPoint("badargs", obj=Bad()))
    with pytest.raises(PluginError, match=r"plugin 'badargs' \(distribution brokendist\)"):
        load_registry()


def test_misspelled_hook_fails() -> None:
    class Typo:
        @hookimpl
        def fuzzkit_register_opz(self, register: Any) -> None:
            pass

    with pytest.raises(PluginError, match="typo"):
        load_registry(extra=[("typo", Typo())])


def _executor(m: Any, cpu: Any, args: Any) -> Any:
    yield "x"


def _try_set(m: Any, cpu: Any, vpage: int, new: int) -> Any:
    yield "x"


def test_duplicate_op_id_names_both_plugins() -> None:
    class Dup:
        @hookimpl
        def fuzzkit_register_ops(self, register: Any) -> None:
            register("arena.alloc", _executor, args={}, summary="again")

    with pytest.raises(PluginError) as exc:
        load_registry(extra=[("dup", Dup())])
    assert "plugin 'dup'" in str(exc.value) and "plugin 'arena'" in str(exc.value)


def test_replacing_a_missing_primitive_fails() -> None:
    class Ghost:
        @hookimpl
        def fuzzkit_replace_primitives(self, replace: Any) -> None:
            replace("no_such_primitive", _executor, reason="test")

    with pytest.raises(PluginError, match=r"no_such_primitive.*which no plugin registers"):
        load_registry(extra=[("ghost", Ghost())])


def test_replacement_must_keep_the_primitive_kind() -> None:
    class Plain:
        @hookimpl
        def fuzzkit_replace_primitives(self, replace: Any) -> None:
            replace("ptep_try_set", lambda m, cpu, vpage, new: True, reason="not a generator")

    with pytest.raises(PluginError, match="must be a generator function"):
        load_registry(extra=[("plain", Plain())])


def test_two_plugins_replacing_one_primitive_fail() -> None:
    def make() -> object:
        class V:
            @hookimpl
            def fuzzkit_replace_primitives(self, replace: Any) -> None:
                replace("ptep_try_set", _try_set, reason="variant")

        return V()

    with pytest.raises(PluginError, match="already replaced by plugin 'v1'"):
        load_registry(extra=[("v1", make()), ("v2", make())])


def test_replacement_shows_in_the_compiled_kernel_and_findings() -> None:
    class V:
        @hookimpl
        def fuzzkit_replace_primitives(self, replace: Any) -> None:
            replace("ptep_try_set", _try_set, reason="variant")

    reg = load_registry(extra=[("v", V())])
    kernel = reg.compile("x86")
    assert kernel.prims.ptep_try_set is _try_set
    assert kernel.replaced == (("ptep_try_set", "v"),)


def test_hook_that_raises_is_reported_as_the_plugins_fault() -> None:
    class Crash:
        @hookimpl
        def fuzzkit_register_ops(self, register: Any) -> None:
            raise KeyError("oops")

    with pytest.raises(PluginError, match=r"plugin 'crash'.*fuzzkit_register_ops raised KeyError"):
        load_registry(extra=[("crash", Crash())])


@pytest.mark.parametrize(
    ("hook", "call", "match"),
    [
        ("fuzzkit_register_arches", lambda r: r(int), "expects an Arch subclass"),
        (
            "fuzzkit_register_primitives",
            lambda r: r("x", _executor, summary="", revision="v9"),
            "unknown revision",
        ),
        (
            "fuzzkit_register_fault_stages",
            lambda r: r("s", lambda m, c, f: None, summary=""),
            "generator function",
        ),
        ("fuzzkit_register_injection_points", lambda r: r("bad name", summary=""), "not an identifier"),
        ("fuzzkit_register_ops", lambda r: r("NoDots", _executor, args={}, summary=""), "dotted lower-case"),
        (
            "fuzzkit_register_ops",
            lambda r: r("t.op", _executor, args={"n": int}, summary=""),
            "has no domain",
        ),
        ("fuzzkit_register_ops", lambda r: r("t.op", lambda m, c, a: None, args={}, summary=""), "generator"),
        (
            "fuzzkit_register_invariants",
            lambda r: r("I99", "x", summary="", on={"nope": print}),
            "unknown events",
        ),
    ],
)
def test_invalid_registrations_name_the_plugin(hook: str, call: Any, match: str) -> None:
    plugin = SimpleNamespace()
    setattr(plugin, hook, hookimpl(lambda register: call(register)))
    with pytest.raises(PluginError, match=match) as exc:
        load_registry(extra=[("culprit", plugin)])
    assert "plugin 'culprit'" in str(exc.value)


def test_arch_missing_required_attributes_fails() -> None:
    class Half(Arch):
        name = "half"

    plugin = SimpleNamespace(fuzzkit_register_arches=hookimpl(lambda register: register(Half)))
    with pytest.raises(PluginError, match="does not set 'valid_bit'"):
        load_registry(extra=[("half", plugin)])


def test_registration_order_does_not_depend_on_install_order() -> None:
    def op_plugin(op_id: str) -> object:
        return SimpleNamespace(
            fuzzkit_register_ops=hookimpl(
                lambda register: register(op_id, _executor, args={"n": Int(0, 3)}, summary="")
            )
        )

    a = load_registry(extra=[("pa", op_plugin("t.a")), ("pb", op_plugin("t.b"))])
    b = load_registry(extra=[("pb", op_plugin("t.b")), ("pa", op_plugin("t.a"))])
    assert [o.id for o in a.op_table()] == [o.id for o in b.op_table()]
    assert a.fingerprint() == b.fingerprint()


def test_a_name_no_installed_plugin_has_is_imported_as_a_module() -> None:
    reg = load_registry(enable=["variants.scx_single_retry"])
    assert "variants.scx_single_retry" in [p.name for p in reg.plugins]
    assert reg.replacements["scx_arena_alloc"].plugin == "variants.scx_single_retry"


def test_an_unimportable_plugin_name_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"no plugin named 'nosuch\.variant'.*no module 'nosuch'"):
        load_registry(enable=["nosuch.variant"])
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        load_registry(enable=["variants.scx_single_retry:missing"])

"""Finding, loading and validating plugins, then running their registration hooks.

Plugins come from the ``fuzzkit`` entry-point group, first-party ones included, so the core
never imports a plugin (DESIGN principle 9). ``disable`` mirrors ``-p no:NAME``; with
autoload off (``FUZZKIT_DISABLE_PLUGIN_AUTOLOAD=1``) only the names in ``enable`` load. A name
in ``enable`` that no installed plugin has is imported the way an entry point is, as
``module`` or ``module:attribute`` (pytest's ``-p module``): an uninstalled design variant or
experiment is one importable file, in this process and in the atheris engine's child alike.
Every failure is a :class:`PluginError` naming the plugin and its distribution.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

import pluggy

from fuzzkit import hookspecs
from fuzzkit.errors import ConfigError, PluginError
from fuzzkit.machine import builtin
from fuzzkit.registry import HOOK_METHODS, PHASES, PluginInfo, Registry

hookimpl = pluggy.HookimplMarker("fuzzkit")

AUTOLOAD_ENV = "FUZZKIT_DISABLE_PLUGIN_AUTOLOAD"


def _version() -> str:
    from fuzzkit import __version__

    return __version__


def installed() -> list[tuple[str, str, str, Any]]:
    """Entry points of the ``fuzzkit`` group: (name, distribution, version, entry point)."""
    found = []
    for ep in entry_points(group="fuzzkit"):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        found.append((ep.name, dist, version, ep))
    return sorted(found, key=lambda t: t[0])


def load_registry(
    *,
    disable: Iterable[str] = (),
    enable: Iterable[str] = (),
    autoload: bool | None = None,
    extra: Sequence[tuple[str, object]] = (),
) -> Registry:
    """Load plugins and collect their registrations. ``extra`` adds in-process plugins
    (name, object), which is how tests bring fake arches and variants."""
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    disable, enable = set(disable), set(enable)
    available = installed()
    names = {name for name, *_ in available} | {name for name, _ in extra}
    imported = [(ref, _import_plugin(ref)) for ref in sorted(enable - names)]
    unknown = sorted(disable - names)
    if unknown:
        raise ConfigError(
            f"no plugin named {', '.join(repr(u) for u in unknown)}; "
            f"installed: {', '.join(sorted(names)) or 'none'}"
        )
    pm = pluggy.PluginManager("fuzzkit")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    _register(pm, registry, builtin, PluginInfo("core", _version(), "fuzzkit", builtin.__name__))
    for name, dist, version, ep in available:
        if name in disable or (not autoload and name not in enable):
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # any import-time failure is the plugin's, report it as such
            raise PluginError(
                f"plugin '{name}' (distribution {dist}) failed to import '{ep.value}': "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _register(pm, registry, obj, PluginInfo(name, version, dist, ep.value))
    for name, obj in imported:
        _register(pm, registry, obj, PluginInfo(name, "-", "(imported)", name))
    for name, obj in extra:
        if name not in disable:
            _register(
                pm, registry, obj, PluginInfo(name, "-", "(in-process)", getattr(obj, "__name__", repr(obj)))
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{registry.culprit(pm.get_name(exc.plugin) or '?')}: {exc}") from exc
    _collect(pm, registry)
    return registry


def _import_plugin(ref: str) -> object:
    """The object ``module[:attribute]`` names, for ``-p`` with no installed plugin by that name."""
    module_name, _, attr = ref.partition(":")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        # As `python -m` does: a variant being tried out is a file in the folder fuzzkit runs
        # in, which the `fuzzkit` script (its own folder first on the path) would not see.
        sys.path.insert(0, cwd)
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            installed_names = ", ".join(name for name, *_ in installed()) or "none"
            raise ConfigError(
                f"no plugin named '{ref}' is installed (installed: {installed_names}), and no "
                f"module '{exc.name}' can be imported to load it as 'module' or 'module:attribute'"
            ) from exc
        raise PluginError(f"plugin '{ref}' failed to import: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # any import-time failure is the plugin's, report it as such
        raise PluginError(f"plugin '{ref}' failed to import: {type(exc).__name__}: {exc}") from exc
    for part in attr.split(".") if attr else ():
        if not hasattr(obj, part):
            raise ConfigError(f"plugin '{ref}': module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    return obj


def _register(pm: pluggy.PluginManager, registry: Registry, obj: object, info: PluginInfo) -> None:
    registry.add_plugin(info)
    try:
        pm.register(obj, name=info.name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{registry.culprit(info.name)}: {exc}") from exc
    except ValueError as exc:  # pluggy: name or object already registered
        raise PluginError(f"{registry.culprit(info.name)}: {exc}") from exc


def _collect(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Call each registration hook once per plugin, in plugin-name order, with a registrar
    bound to that plugin (so errors name it)."""
    for phase in PHASES:
        impls = sorted(getattr(pm.hook, phase).get_hookimpls(), key=lambda i: i.plugin_name)
        for impl in impls:
            registrar = registry.registrar(impl.plugin_name)
            fn = getattr(registrar, HOOK_METHODS[phase])
            try:
                impl.function(**{name: fn for name in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:  # a hook that crashes is the plugin's fault: name it
                raise PluginError(
                    f"{registry.culprit(impl.plugin_name)}: {phase} raised {type(exc).__name__}: {exc}"
                ) from exc
    impls = sorted(pm.hook.fuzzkit_campaign_event.get_hookimpls(), key=lambda i: i.plugin_name)
    registry.campaign_observers = [(impl.plugin_name, impl.function) for impl in impls]


def registry_from_flags(flags: Sequence[str]) -> Registry:
    """The registry the ``-p`` flags ``flags`` select (``no:NAME`` disables, ``NAME`` enables)."""
    return load_registry(
        disable=[f[3:] for f in flags if f.startswith("no:")],
        enable=[f for f in flags if not f.startswith("no:")],
    )

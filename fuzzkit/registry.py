"""What plugins register, validated, and compiled into a :class:`Kernel` for one run
configuration.

Each registration hook gets a ``register`` bound to one plugin (:class:`Registrar`), so an
invalid registration names its culprit. :meth:`Registry.compile` resolves everything a run
needs (arch, primitives for the revision with replacements applied, the fault path in arch
order, observers per event) into plain attributes and tuples, so the per-step hot path never
looks anything up by name and never calls pluggy.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fuzzkit.domains import Choice, Domain, Handle, Int
from fuzzkit.errors import ConfigError, PluginError
from fuzzkit.machine.arch import Arch

#: The revision a program file without ``config.revision`` names (program schema 1). Which
#: revisions exist is the plugins' business (``fuzzkit_register_revisions``).
DEFAULT_REVISION = "fixed"

#: Machine events invariants can observe (see ``fuzzkit_register_invariants``).
EVENTS = ("pte_set", "page_free", "tlb_flush", "fault_done", "op_done", "access")

#: Order in which registration hooks run; replacements come last so they can see everything.
PHASES = (
    "fuzzkit_register_arches",
    "fuzzkit_register_revisions",
    "fuzzkit_register_primitives",
    "fuzzkit_register_fault_stages",
    "fuzzkit_register_injection_points",
    "fuzzkit_register_ops",
    "fuzzkit_register_invariants",
    "fuzzkit_replace_primitives",
)

_OP_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPEC_ID = re.compile(r"^[A-Z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class OpSpec:
    id: str
    executor: Callable[..., Any]
    args: Mapping[str, Domain]
    summary: str
    rules: tuple[str, ...]
    creates: str | None
    plugin: str
    #: Relative frequency for generators (random programs, fuzzers' seeds); not part of the
    #: op's identity or the op-table fingerprint.
    weight: float = 1.0


@dataclass(frozen=True)
class Invariant:
    spec_id: str
    name: str
    summary: str
    on: Mapping[str, Callable[..., None]]
    #: Only for runs on this arch (None: all arches).
    arch: str | None
    #: Op ids whose completion the ``op_done`` check needs (None: every op).
    ops: tuple[str, ...] | None
    plugin: str


@dataclass(frozen=True)
class Primitive:
    name: str
    fn: Callable[..., Any]
    summary: str
    revision: str | None
    plugin: str


@dataclass(frozen=True)
class Replacement:
    name: str
    fn: Callable[..., Any]
    reason: str
    plugin: str
    #: ``fn`` is handed the implementation it replaces as the keyword ``original``.
    wraps: bool = False


@dataclass(frozen=True)
class FaultStage:
    name: str
    fn: Callable[..., Any]
    summary: str
    plugin: str


@dataclass(frozen=True)
class Revision:
    name: str
    summary: str
    plugin: str


@dataclass(frozen=True)
class InjectionPoint:
    name: str
    summary: str
    plugin: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    distribution: str
    module: str


@dataclass(frozen=True)
class Kernel:
    """Everything one run configuration needs, resolved at start-up."""

    arch: Arch
    revision: str
    cpus: int
    #: Named primitives as attributes: ``kernel.prims.ptep_try_set``.
    prims: SimpleNamespace
    ops: Mapping[str, OpSpec]
    fault_path: tuple[tuple[Callable[..., Any], frozenset[str] | None], ...]
    observers: Mapping[str, tuple[Callable[..., None], ...]]
    #: ``op_done`` checks by op id.
    op_done: Mapping[str, tuple[Callable[..., None], ...]]
    injection_points: tuple[str, ...]
    replaced: tuple[tuple[str, str], ...]
    fingerprint: str
    #: Plugin name by the module it was loaded from, to name the plugin whose code raised.
    modules: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Registry:
    plugins: list[PluginInfo] = field(default_factory=list)
    arches: dict[str, tuple[type[Arch], str]] = field(default_factory=dict)
    #: Code revisions of the modelled mechanism, in registration order (R4).
    revisions: dict[str, Revision] = field(default_factory=dict)
    primitives: dict[tuple[str, str | None], Primitive] = field(default_factory=dict)
    replacements: dict[str, Replacement] = field(default_factory=dict)
    fault_stages: dict[str, FaultStage] = field(default_factory=dict)
    injection_points: dict[str, InjectionPoint] = field(default_factory=dict)
    ops: dict[str, OpSpec] = field(default_factory=dict)
    invariants: dict[tuple[str, str], Invariant] = field(default_factory=dict)
    #: ``fuzzkit_campaign_event`` implementations: (plugin, function), in plugin-name order.
    campaign_observers: list[tuple[str, Callable[..., None]]] = field(default_factory=list)
    #: Distribution of each plugin, for error messages.
    _dists: dict[str, str] = field(default_factory=dict)

    def add_plugin(self, info: PluginInfo) -> None:
        self.plugins.append(info)
        self._dists[info.name] = info.distribution

    def culprit(self, plugin: str) -> str:
        return f"plugin '{plugin}' (distribution {self._dists.get(plugin, '?')})"

    def registrar(self, plugin: str) -> Registrar:
        return Registrar(self, plugin)

    # -- queries -------------------------------------------------------------------------

    def op_table(self) -> list[OpSpec]:
        return [self.ops[k] for k in sorted(self.ops)]

    def fingerprint(self) -> str:
        """Identity of the op table: ids and argument domains, in id order. Programs and
        corpora record it so that a changed plugin set is detected, never misread."""
        text = "\n".join(
            f"{op.id}({', '.join(f'{n}={d!r}' for n, d in sorted(op.args.items()))})"
            for op in self.op_table()
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def revision_names(self) -> tuple[str, ...]:
        """Every registered revision; a plugin set that registers none runs the one code there
        is, under the name :data:`DEFAULT_REVISION`."""
        return tuple(self.revisions) or (DEFAULT_REVISION,)

    def default_revision(self) -> str:
        """:data:`DEFAULT_REVISION` when registered, else the first registered revision."""
        names = self.revision_names()
        return DEFAULT_REVISION if DEFAULT_REVISION in names else names[0]

    def primitive_names(self) -> list[str]:
        """Every replaceable name: primitives and fault-path stages."""
        return sorted({name for name, _ in self.primitives} | set(self.fault_stages))

    # -- compile -------------------------------------------------------------------------

    def compile(self, arch: str, revision: str = DEFAULT_REVISION, cpus: int = 2) -> Kernel:
        if arch not in self.arches:
            known = ", ".join(sorted(self.arches)) or "none (no arch plugin loaded)"
            raise ConfigError(f"unknown arch '{arch}'; loaded arches: {known}")
        if revision not in self.revision_names():
            raise ConfigError(f"unknown revision '{revision}'; one of {', '.join(self.revision_names())}")
        if not 1 <= cpus <= 64:
            raise ConfigError(f"cpus must be between 1 and 64, got {cpus}")
        arch_obj = self.arches[arch][0]()
        prims: dict[str, Callable[..., Any]] = {}
        for name in self.primitive_names():
            entry = self.primitives.get((name, revision)) or self.primitives.get((name, None))
            if entry is not None:
                prims[name] = entry.fn
        for name, stage in self.fault_stages.items():
            prims[name] = stage.fn
        for name, rep in sorted(self.replacements.items()):
            # Bound once here, so a wrapping replacement costs one plain call per step.
            if not rep.wraps:
                prims[name] = rep.fn
            elif name in prims:
                prims[name] = functools.partial(rep.fn, original=prims[name])
        path = tuple(
            (prims[stage], kinds) for stage, kinds in arch_obj.fault_path if stage in self.fault_stages
        )
        observers: dict[str, list[Callable[..., None]]] = {e: [] for e in EVENTS}
        op_done: dict[str, list[Callable[..., None]]] = {op: [] for op in self.ops}
        for key in sorted(self.invariants):
            inv = self.invariants[key]
            if inv.arch is None or inv.arch == arch:
                for event, fn in inv.on.items():
                    observers[event].append(fn)
                    if event == "op_done":
                        for op in inv.ops if inv.ops is not None else self.ops:
                            if op in op_done:
                                op_done[op].append(fn)
        return Kernel(
            arch=arch_obj,
            revision=revision,
            cpus=cpus,
            prims=SimpleNamespace(**prims),
            ops={op.id: op for op in self.op_table()},
            fault_path=path,
            observers={e: tuple(fns) for e, fns in observers.items()},
            op_done={op: tuple(fns) for op, fns in op_done.items()},
            injection_points=tuple(sorted(self.injection_points)),
            replaced=tuple((n, r.plugin) for n, r in sorted(self.replacements.items())),
            fingerprint=self.fingerprint(),
            modules={p.module.partition(":")[0]: p.name for p in self.plugins},
        )


class Registrar:
    """The ``register``/``replace`` callables handed to one plugin's hooks."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self.registry = registry
        self.plugin = plugin

    def _fail(self, what: str) -> PluginError:
        return PluginError(f"{self.registry.culprit(self.plugin)}: {what}")

    def _dup(self, kind: str, name: str, owner: str) -> PluginError:
        return self._fail(f"{kind} '{name}' is already registered by {self.registry.culprit(owner)}")

    def arch(self, cls: type[Arch]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Arch)):
            raise self._fail(f"register_arches expects an Arch subclass, got {cls!r}")
        for attr in ("name", "valid_bit", "pfn_mask", "fault_kinds", "missing_fault", "fault_path"):
            if not hasattr(cls, attr):
                raise self._fail(f"arch {cls.__name__} does not set '{attr}'")
        if cls.name in self.registry.arches:
            raise self._dup("arch", cls.name, self.registry.arches[cls.name][1])
        self.registry.arches[cls.name] = (cls, self.plugin)

    def primitive(
        self, name: str, fn: Callable[..., Any], *, summary: str, revision: str | None = None
    ) -> None:
        if not _NAME.match(name) or not callable(fn):
            raise self._fail(f"primitive '{name}' needs an identifier name and a callable")
        if revision is not None and revision not in self.registry.revision_names():
            raise self._fail(f"primitive '{name}' names unknown revision '{revision}'")
        clash = [
            p
            for (n, r), p in self.registry.primitives.items()
            if n == name and (r is None or revision is None or r == revision)
        ]
        if clash:
            raise self._dup("primitive", name, clash[0].plugin)
        self.registry.primitives[(name, revision)] = Primitive(name, fn, summary, revision, self.plugin)

    def fault_stage(self, name: str, fn: Callable[..., Any], *, summary: str) -> None:
        if not inspect.isgeneratorfunction(fn):
            raise self._fail(f"fault stage '{name}' must be a generator function")
        if name in self.registry.fault_stages:
            raise self._dup("fault stage", name, self.registry.fault_stages[name].plugin)
        clash = [p for (n, _), p in self.registry.primitives.items() if n == name]
        if clash:
            raise self._dup("primitive", name, clash[0].plugin)
        self.registry.fault_stages[name] = FaultStage(name, fn, summary, self.plugin)

    def revision(self, name: str, *, summary: str) -> None:
        if not _NAME.match(name):
            raise self._fail(f"revision '{name}' is not an identifier")
        if name in self.registry.revisions:
            raise self._dup("revision", name, self.registry.revisions[name].plugin)
        self.registry.revisions[name] = Revision(name, summary, self.plugin)

    def injection_point(self, name: str, *, summary: str) -> None:
        if not _NAME.match(name):
            raise self._fail(f"injection point '{name}' is not an identifier")
        if name in self.registry.injection_points:
            raise self._dup("injection point", name, self.registry.injection_points[name].plugin)
        self.registry.injection_points[name] = InjectionPoint(name, summary, self.plugin)

    def op(
        self,
        op_id: str,
        executor: Callable[..., Any],
        *,
        args: Mapping[str, Domain],
        summary: str,
        rules: tuple[str, ...] = (),
        creates: str | None = None,
        weight: float = 1.0,
    ) -> None:
        if not _OP_ID.match(op_id):
            raise self._fail(f"op id '{op_id}' must be dotted lower-case, like 'arena.alloc'")
        if op_id in self.registry.ops:
            raise self._dup("op", op_id, self.registry.ops[op_id].plugin)
        if not inspect.isgeneratorfunction(executor):
            raise self._fail(f"op '{op_id}': executor must be a generator function")
        for arg, dom in args.items():
            if not isinstance(dom, (Int, Choice, Handle)):
                raise self._fail(f"op '{op_id}': argument '{arg}' has no domain (got {dom!r})")
        if not weight > 0:
            raise self._fail(f"op '{op_id}': weight must be positive, got {weight}")
        self.registry.ops[op_id] = OpSpec(
            op_id, executor, dict(args), summary, tuple(rules), creates, self.plugin, weight
        )

    def invariant(
        self,
        spec_id: str,
        name: str,
        *,
        summary: str,
        on: Mapping[str, Callable[..., None]],
        arch: str | None = None,
        ops: tuple[str, ...] | None = None,
    ) -> None:
        if not _SPEC_ID.match(spec_id) or not _NAME.match(name):
            raise self._fail(f"invariant '{spec_id}/{name}': id like 'I8' and an identifier name")
        bad = sorted(set(on) - set(EVENTS))
        if bad or not on:
            raise self._fail(
                f"invariant '{spec_id}/{name}' observes unknown events {bad}; events: {', '.join(EVENTS)}"
            )
        key = (spec_id, name)
        if key in self.registry.invariants:
            raise self._dup("invariant", f"{spec_id}/{name}", self.registry.invariants[key].plugin)
        self.registry.invariants[key] = Invariant(spec_id, name, summary, dict(on), arch, ops, self.plugin)

    def replace(self, name: str, fn: Callable[..., Any], *, reason: str, wraps: bool = False) -> None:
        originals = [p.fn for (n, _), p in self.registry.primitives.items() if n == name]
        if name in self.registry.fault_stages:
            originals.append(self.registry.fault_stages[name].fn)
        if not originals:
            known = ", ".join(self.registry.primitive_names())
            raise self._fail(f"replaces primitive '{name}', which no plugin registers; known: {known}")
        if name in self.registry.replacements:
            owner = self.registry.culprit(self.registry.replacements[name].plugin)
            raise self._fail(f"primitive '{name}' is already replaced by {owner}")
        if inspect.isgeneratorfunction(fn) != inspect.isgeneratorfunction(originals[0]):
            kind = "a generator function" if inspect.isgeneratorfunction(originals[0]) else "a plain function"
            raise self._fail(f"replacement for '{name}' must be {kind}, like the original")
        problem = _signature_mismatch(originals[0], fn, wraps)
        if problem:
            raise self._fail(f"replacement for '{name}' {problem}")
        self.registry.replacements[name] = Replacement(name, fn, reason, self.plugin, wraps)


def _signature_mismatch(original: Callable[..., Any], fn: Callable[..., Any], wraps: bool) -> str:
    """Why ``fn`` cannot be called the way ``original`` is, or "": found at start-up rather
    than at the first call, which may be deep in a campaign."""
    try:
        want, have = inspect.signature(original), inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return ""
    positional = [
        p.name for p in want.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    try:
        have.bind(*positional, **({"original": original} if wraps else {}))
    except TypeError as exc:
        sig = f"({', '.join(positional)}{', *, original' if wraps else ''})"
        return f"does not take the original's arguments {sig}: {exc}"
    return ""


#: Which Registrar method serves which hook.
HOOK_METHODS = {
    "fuzzkit_register_arches": "arch",
    "fuzzkit_register_revisions": "revision",
    "fuzzkit_register_primitives": "primitive",
    "fuzzkit_register_fault_stages": "fault_stage",
    "fuzzkit_register_injection_points": "injection_point",
    "fuzzkit_register_ops": "op",
    "fuzzkit_register_invariants": "invariant",
    "fuzzkit_replace_primitives": "replace",
}

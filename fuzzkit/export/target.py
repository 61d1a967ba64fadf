"""One exported libFuzzer target: what a generated ``<name>_fuzzer.py`` runs under OSS-Fuzz
or ClusterFuzzLite, and what ``fuzzkit import`` decodes a testcase of theirs with.

A target is (arch, revision, cpus, plugin set, op focus), as a campaign's
(:class:`~fuzzkit.engines.campaign.Target`), plus the op-table fingerprint it was exported
with: the codec reads bytes by op-table position, so a testcase decoded under another table
would be another program, and is refused (DESIGN principle 8).

ClusterFuzz files and deduplicates what a target *raises*, not what it writes, so a finding
raises :class:`KernelModelBug`, its message beginning with the bug title. ClusterFuzz names
a Python crash by the first frames of its traceback (``TestOneInput``, :meth:`FuzzTarget.run`,
then the raising frame), so the exception is raised from a frame named after the title:
one ClusterFuzz crash per fuzzkit bug, not one per fuzz target. An exception out of plugin
code is raised as :class:`PluginCrash` (named after the plugin), never as a kernel-model bug.
"""

from __future__ import annotations

import gc
import json
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from fuzzkit.engines.campaign import Target
from fuzzkit.engines.codec import Codec
from fuzzkit.errors import ConfigError, PluginError, PluginFailure
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Finding, Machine, RunResult
from fuzzkit.plugins import load_registry
from fuzzkit.program import Program
from fuzzkit.registry import Kernel, Registry
from fuzzkit.runner import Session

#: Names of exported targets: OSS-Fuzz builds one binary per name, ``<name>_fuzzer``.
NAME = re.compile(r"[A-Za-z0-9_-]+")
FUZZER_SUFFIX = "_fuzzer"
MANIFEST = "fuzzkit-targets.json"
MANIFEST_KIND = "oss-fuzz-targets"
SCHEMA = 1
#: Executions between two collections of reference cycles, as the atheris engine does:
#: collections at moments set by the inputs alone keep a seed's search the same from one
#: process to the next.
GC_EVERY = 100


class KernelModelBug(AssertionError):
    """A fuzzkit invariant fired: the message begins with the finding's title."""

    def __init__(self, finding: Finding, program: Program) -> None:
        super().__init__(
            f"{finding.title}\n(cpu{finding.cpu}, step {finding.step}) {finding.detail}".rstrip()
        )
        self.finding = finding
        self.program = program


class PluginCrash(PluginError):
    """Plugin code (an op, a primitive, an oracle) raised: a plugin's failure, never a finding
    of the kernel model. The message names the plugin and where it raised."""

    def __init__(self, title: str, message: str, program: Program) -> None:
        super().__init__(f"{title}: {message}")
        #: Which plugin raised what where, without the exception's values: the dedup key.
        self.title = title
        self.program = program


@dataclass
class FuzzTarget:
    arch: str
    revision: str
    cpus: int
    #: ``-p`` flags of the plugin set (``no:scx``; with ``autoload`` off, the names to load).
    plugins: tuple[str, ...] = ()
    #: Op-id patterns of a focused target (see :func:`fuzzkit.engines.campaign.focus`).
    ops: tuple[str, ...] = ()
    #: Fingerprint of the (focused) op table the target was exported with; empty: unchecked.
    op_table: str = ""
    autoload: bool = True
    _loaded: tuple[Session, Kernel, Codec] | None = field(default=None, repr=False, compare=False)
    _execs: int = field(default=0, repr=False, compare=False)

    @property
    def campaign_target(self) -> Target:
        return Target(self.arch, self.revision, self.cpus, self.ops)

    @property
    def name(self) -> str:
        """``x86-merged-1cpu``, then the focus and the plugin flags, in ``[A-Za-z0-9_-]``."""
        parts = [f"{self.arch}-{self.revision}-{self.cpus}cpu"]
        parts += [re.sub(r"[^A-Za-z0-9]+", "_", p.replace("*", "any")).strip("_") for p in self.ops]
        parts += [re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") for p in self.plugins]
        return "-".join(parts)

    @property
    def fuzzer(self) -> str:
        return self.name + FUZZER_SUFFIX

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "revision": self.revision,
            "cpus": self.cpus,
            "plugins": list(self.plugins),
            "autoload": self.autoload,
            "ops": list(self.ops),
            "op_table": self.op_table,
        }

    @classmethod
    def from_json(cls, doc: Any, source: str) -> FuzzTarget:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected an object, got {type(doc).__name__}")
        kinds = {"arch": str, "revision": str, "cpus": int, "plugins": list, "autoload": bool, "ops": list}
        for key, kind in kinds.items():
            if key in doc and not isinstance(doc[key], kind):
                raise ConfigError(f"{source}.{key}: expected {kind.__name__}, got {doc[key]!r}")
        for key in ("arch", "revision", "cpus"):
            if key not in doc:
                raise ConfigError(f"{source}.{key}: missing")
        return cls(
            arch=doc["arch"],
            revision=doc["revision"],
            cpus=doc["cpus"],
            plugins=tuple(str(p) for p in doc.get("plugins", [])),
            ops=tuple(str(p) for p in doc.get("ops", [])),
            op_table=str(doc.get("op_table", "")),
            autoload=doc.get("autoload", True),
        )

    # -- running ---------------------------------------------------------------------------

    def registry(self) -> Registry:
        disable = [f[3:] for f in self.plugins if f.startswith("no:")]
        enable = [f for f in self.plugins if not f.startswith("no:")]
        return load_registry(disable=disable, enable=enable, autoload=self.autoload)

    def load(self, atheris: types.ModuleType | None = None) -> tuple[Session, Kernel, Codec]:
        """Load the plugin set and compile the kernel, once; refuse an op table other than the
        exported one. With ``atheris``, instrument the plugins' kernel paths for coverage
        (what the atheris engine steers by) and pin cycle collection."""
        if self._loaded is not None:
            return self._loaded
        registry = self.registry()
        session = Session(registry)
        kernel = self.campaign_target.kernel(session)
        if self.op_table and kernel.fingerprint != self.op_table:
            raise ConfigError(
                f"{self.fuzzer}: the installed plugins give op table {kernel.fingerprint}, the target "
                f"was exported with {self.op_table}: its inputs would decode to other programs; "
                f"install the exported plugin set or export again"
            )
        if atheris is not None:
            from fuzzkit.engines.instrument import coverage_modules, instrument

            instrument(atheris, coverage_modules([p.module for p in registry.plugins if p.name != "core"]))
            gc.disable()
            gc.freeze()
        self._loaded = (session, kernel, Codec(kernel))
        return self._loaded

    def _result(self, data: bytes) -> RunResult:
        session, kernel, codec = self.load()
        calls, switches, inject = codec.decode_run(data)
        try:
            return Machine(kernel, calls, Replay(switches, inject)).run()
        except PluginFailure as exc:  # whatever plugin code raises is the plugin's failure
            program = codec.decode(data)
            program.recorded_with = session.recorded_with()
            site = exc.site
            where = "the engine" if site.plugin == "core" else session.registry.culprit(site.plugin)
            title = f"{where} raised {site.kind} in {site.function}"
            raise PluginCrash(title, site.error, program) from exc.__cause__

    def execute(self, data: bytes) -> tuple[Program, RunResult]:
        """Decode ``data`` and run it: the program (with the choices the run made) and the
        result. Plugin code that raises is a :class:`PluginCrash`."""
        session, _, codec = self.load()
        result = self._result(data)
        return session.record(codec.decode(data), result), result

    def run(self, data: bytes) -> None:
        """``TestOneInput``: decode and run ``data``; on a finding raise
        :class:`KernelModelBug`, on a plugin's exception :class:`PluginCrash`, each from a
        frame named after its title. A program is built only then (the hot path decodes
        straight to calls)."""
        self._execs += 1
        if self._execs % GC_EVERY == 0 and not gc.isenabled():
            gc.collect()
        try:
            result = self._result(data)
        except PluginCrash as crash:
            _raiser(crash.title)(crash, crash.__cause__)
        if result.finding is not None:
            session, _, codec = self.load()
            program = session.record(codec.decode(data), result)
            _raiser(result.finding.title)(KernelModelBug(result.finding, program), None)


def _raise(exc: BaseException, cause: BaseException | None) -> NoReturn:
    raise exc.with_traceback(None) from cause


def _raiser(title: str) -> Callable[[BaseException, BaseException | None], NoReturn]:
    """:func:`_raise` under the name ``title``: the name its traceback frame shows."""
    code = _raise.__code__.replace(co_name=title, co_qualname=title)
    fn: Callable[[BaseException, BaseException | None], NoReturn] = types.FunctionType(
        code, _raise.__globals__, title
    )
    return fn


# -- the manifest: target names back to targets ---------------------------------------------


def write_manifest(folder: Path, targets: Sequence[FuzzTarget]) -> Path:
    """Add ``targets`` to ``folder``'s manifest (a target of the same name is replaced)."""
    path = folder / MANIFEST
    known = read_manifest(path) if path.exists() else {}
    known.update({t.name: t for t in targets})
    doc = {
        "fuzzkit": MANIFEST_KIND,
        "schema": SCHEMA,
        "targets": {name: known[name].to_json() for name in sorted(known)},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def read_manifest(path: Path) -> dict[str, FuzzTarget]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("fuzzkit") != MANIFEST_KIND:
        raise ConfigError(f'{path}: fuzzkit: expected "{MANIFEST_KIND}": not a fuzzkit target manifest')
    if doc.get("schema") != SCHEMA:
        raise ConfigError(f"{path}: schema: version {doc.get('schema')!r} is not supported")
    targets = doc.get("targets")
    if not isinstance(targets, dict):
        raise ConfigError(f"{path}: targets: expected an object")
    return {name: FuzzTarget.from_json(t, f"{path}: targets.{name}") for name, t in targets.items()}


_PLAIN = re.compile(r"(?P<arch>[A-Za-z0-9_]+)-(?P<revision>[A-Za-z0-9_]+)-(?P<cpus>\d{1,2})cpu")


def find_target(name: str, manifest: Path | None, plugins: Sequence[str]) -> FuzzTarget:
    """The target ``name`` (``_fuzzer`` suffix optional) names: from ``manifest`` (a file or
    the export folder holding one), else parsed from a plain ``<arch>-<revision>-<N>cpu``
    name with the plugin set ``plugins``."""
    name = name.removesuffix(FUZZER_SUFFIX)
    if not NAME.fullmatch(name):
        raise ConfigError(f"--target {name!r}: target names use A-Z, a-z, 0-9, '_' and '-' only")
    if manifest is not None:
        path = manifest / MANIFEST if manifest.is_dir() else manifest
        targets = read_manifest(path)
        if name not in targets:
            raise ConfigError(f"--target {name}: not in {path}; it has {', '.join(targets) or 'none'}")
        return targets[name]
    plain = _PLAIN.fullmatch(name)
    if plain is None:
        raise ConfigError(
            f"--target {name}: only a plain <arch>-<revision>-<N>cpu name is understood without "
            f"the export's manifest; pass --manifest DIR/{MANIFEST}"
        )
    return FuzzTarget(plain["arch"], plain["revision"], int(plain["cpus"]), tuple(plugins))


def imported_plugins(registry: Registry) -> list[str]:
    """Plugins loaded as a module by name rather than installed: a build elsewhere cannot
    install them."""
    return [p.name for p in registry.plugins if p.distribution in ("(imported)", "(in-process)")]


def source_modules(registry: Registry) -> list[str]:
    """Top-level modules of the loaded plugins, which a frozen build must bundle (they are
    imported through entry points, which no import scan sees)."""
    return sorted({p.module.partition(":")[0].split(".")[0] for p in registry.plugins if p.name != "core"})


def distributions(registry: Registry) -> list[str]:
    return sorted({p.distribution for p in registry.plugins if p.name != "core"})

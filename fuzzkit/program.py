"""Programs: what fuzzkit runs, replays, minimizes and reports, as human-writable JSON.

A program is a configuration, the operations each CPU runs in order, and the recorded
choices (DESIGN principle 2). Example::

    {
      "fuzzkit": "program",
      "schema": 1,
      "description": "a kernel fault installs the scratch page",
      "config": {"arch": "x86", "revision": "fixed", "cpus": 1},
      "ops": [
        {"cpu": 0, "op": "arena.create", "args": {"max_entries": 16}},
        {"cpu": 0, "op": "arena.kernel_access", "args": {"arena": 0, "pgoff": 3}}
      ],
      "schedule": [{"step": 4, "cpu": 1}],
      "inject": [{"point": "alloc_page", "nth": 2}]
    }

``args`` left out take their domain's default. ``schedule`` lists switches: before global
step ``step``, run ``cpu`` instead of the CPU that would run by default (the current one).
``inject`` lists injected failures: the ``nth`` arrival at ``point`` fails. ``recorded_with``
(plugin versions and op-table fingerprint) is informational, written by fuzzkit.

Loading never executes anything; every malformed field is reported by its path
(``ops[2].args.page_cnt``) together with the file name. A document nested deeper than
:data:`MAX_DEPTH`, an integer too long to convert, or a string holding a lone surrogate (which
no file or terminal can encode) is refused the same way.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzzkit.errors import ProgramError
from fuzzkit.machine.core import Call
from fuzzkit.registry import DEFAULT_REVISION, Kernel
from fuzzkit.text import document_problem

KIND = "program"
SCHEMA = 1
#: Program files larger than this are refused before parsing.
MAX_BYTES = 16 << 20
#: Programs nested deeper than this are refused: a program is four levels deep, and what is
#: loaded is later walked, copied and written out again.
MAX_DEPTH = 32


@dataclass
class OpCall:
    cpu: int
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Program:
    arch: str = "x86"
    revision: str = DEFAULT_REVISION
    cpus: int = 1
    ops: list[OpCall] = field(default_factory=list)
    switches: list[tuple[int, int]] = field(default_factory=list)
    inject: list[tuple[str, int]] = field(default_factory=list)
    description: str = ""
    recorded_with: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"fuzzkit": KIND, "schema": SCHEMA}
        if self.description:
            doc["description"] = self.description
        doc["config"] = {"arch": self.arch, "revision": self.revision, "cpus": self.cpus}
        doc["ops"] = [{"cpu": c.cpu, "op": c.op, "args": dict(c.args)} for c in self.ops]
        doc["schedule"] = [{"step": s, "cpu": c} for s, c in self.switches]
        doc["inject"] = [{"point": p, "nth": n} for p, n in self.inject]
        if self.recorded_with:
            doc["recorded_with"] = self.recorded_with
        return doc

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def save(program: Program, path: str | Path) -> None:
    """Write atomically: a crash never leaves a half-written program behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(program.dumps())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: str | Path) -> Program:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ProgramError(f"{path}: {size} bytes is larger than the {MAX_BYTES} byte limit")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProgramError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return loads(text, str(path))


def loads(text: str, source: str = "<program>") -> Program:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProgramError(f"{source}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError:
        raise ProgramError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # only Python's int conversion limit gets past the JSON decoder
        raise ProgramError(
            f"{source}: an integer has more than {sys.get_int_max_str_digits()} digits"
        ) from None
    return from_json(doc, source)


class _Fields:
    """Typed access to a JSON object that reports bad fields by path."""

    def __init__(self, source: str, path: str, obj: Any, allowed: tuple[str, ...]) -> None:
        self.source, self.path = source, path
        if not isinstance(obj, dict):
            raise self.error("", f"expected an object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            raise self.error(unknown[0], f"unknown field; allowed: {', '.join(allowed)}")
        self.obj = obj

    def error(self, key: str, msg: str) -> ProgramError:
        where = ".".join(p for p in (self.path, key) if p) or "top level"
        return ProgramError(f"{self.source}: {where}: {msg}")

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.obj:
            if default is ...:
                raise self.error(key, "missing")
            return default
        value = self.obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(key, f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value


def from_json(doc: Any, source: str = "<program>") -> Program:
    problem = document_problem(doc, MAX_DEPTH)
    if problem is not None:
        raise ProgramError(f"{source}: {problem[0]}: {problem[1]}")
    top = _Fields(
        source,
        "",
        doc,
        ("fuzzkit", "schema", "description", "config", "ops", "schedule", "inject", "recorded_with"),
    )
    if top.get("fuzzkit", str) != KIND:
        raise top.error("fuzzkit", f'expected "{KIND}": this is not a fuzzkit program')
    schema = top.get("schema", int)
    if schema != SCHEMA:
        raise top.error("schema", f"version {schema} is not supported; this fuzzkit reads version {SCHEMA}")
    cfg = _Fields(source, "config", top.get("config", dict, {}), ("arch", "revision", "cpus"))
    prog = Program(
        arch=cfg.get("arch", str, "x86"),
        revision=cfg.get("revision", str, DEFAULT_REVISION),
        cpus=cfg.get("cpus", int, 1),
        description=top.get("description", str, ""),
        recorded_with=top.get("recorded_with", dict, {}),
    )
    if not 1 <= prog.cpus <= 64:
        raise cfg.error("cpus", f"must be between 1 and 64, got {prog.cpus}")
    for i, raw in enumerate(top.get("ops", list)):
        f = _Fields(source, f"ops[{i}]", raw, ("cpu", "op", "args"))
        cpu = f.get("cpu", int, 0)
        if not 0 <= cpu < prog.cpus:
            raise f.error("cpu", f"cpu {cpu} does not exist (config.cpus is {prog.cpus})")
        prog.ops.append(OpCall(cpu, f.get("op", str), dict(f.get("args", dict, {}))))
    last = 0
    for i, raw in enumerate(top.get("schedule", list, [])):
        f = _Fields(source, f"schedule[{i}]", raw, ("step", "cpu"))
        step, cpu = f.get("step", int), f.get("cpu", int)
        if step <= last:
            raise f.error("step", f"steps must increase and be >= 1, got {step} after {last}")
        if not 0 <= cpu < prog.cpus:
            raise f.error("cpu", f"cpu {cpu} does not exist (config.cpus is {prog.cpus})")
        last = step
        prog.switches.append((step, cpu))
    seen = set()
    for i, raw in enumerate(top.get("inject", list, [])):
        f = _Fields(source, f"inject[{i}]", raw, ("point", "nth"))
        point, nth = f.get("point", str), f.get("nth", int)
        if nth < 1:
            raise f.error("nth", f"must be >= 1, got {nth}")
        if (point, nth) in seen:
            raise f.error("point", f"{point}#{nth} is listed twice")
        seen.add((point, nth))
        prog.inject.append((point, nth))
    return prog


def resolve(program: Program, kernel: Kernel, source: str = "<program>") -> list[Call]:
    """Check ops, arguments and injection points against the loaded plugins and return the
    calls, defaults filled in."""
    calls = []
    for i, oc in enumerate(program.ops):
        spec = kernel.ops.get(oc.op)
        if spec is None:
            raise ProgramError(
                f"{source}: ops[{i}].op: unknown op '{oc.op}' (is the plugin providing it loaded? "
                f"see 'fuzzkit plugins')"
            )
        unknown = sorted(set(oc.args) - set(spec.args))
        if unknown:
            raise ProgramError(
                f"{source}: ops[{i}].args.{unknown[0]}: '{oc.op}' has no such argument; "
                f"it takes {', '.join(spec.args) or 'none'}"
            )
        args = {}
        for name, dom in spec.args.items():
            if name in oc.args:
                try:
                    args[name] = dom.validate(oc.args[name])
                except ValueError as exc:
                    raise ProgramError(f"{source}: ops[{i}].args.{name}: {exc}") from None
            else:
                args[name] = dom.base()
        calls.append(Call(i, oc.cpu, spec, args))
    for i, (point, _) in enumerate(program.inject):
        if point not in kernel.injection_points:
            raise ProgramError(
                f"{source}: inject[{i}].point: unknown injection point '{point}'; "
                f"known: {', '.join(kernel.injection_points)}"
            )
    return calls

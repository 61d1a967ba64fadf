"""``fuzzkit new-plugin NAME --kind variant|subsystem|arch``: an installable plugin package.

The package has a ``pyproject.toml`` with the ``fuzzkit`` entry point, the plugin module (typed:
``py.typed``, checked by mypy like fuzzkit's own plugins), a program in ``tests/`` and a test
that replays it with and without the plugin through the ``fuzzkit`` command. Installed with
``pip install .`` (or ``-e .``), the test passes as generated; the author then edits the
module and the program into the question they mean to ask.

The templates are the ``*.tmpl`` files beside this module, filled with :meth:`str.format`.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fuzzkit.errors import ConfigError

KINDS = ("variant", "subsystem", "arch")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _template(name: str) -> str:
    return files("fuzzkit.scaffold").joinpath(name).read_text()


def _program(kind: str, name: str) -> dict[str, dict[str, Any]]:
    """The programs the generated test replays, by file name."""
    create = {"cpu": 0, "op": "arena.create", "args": {"max_entries": 16}}
    touch = {"cpu": 0, "op": "arena.kernel_access", "args": {"arena": 0, "pgoff": 3, "stack": "main"}}
    doc = {"fuzzkit": "program", "schema": 1}
    if kind == "variant":
        free = {"cpu": 0, "op": "arena.free", "args": {"arena": 0, "pgoff": 3, "page_cnt": 1}}
        return {
            "scratched_free.json": {
                **doc,
                "description": "A kernel touch scratches slot 3, then the slot is freed (R9).",
                "config": {"arch": "x86", "revision": "fixed", "cpus": 1},
                "ops": [create, touch, free],
            }
        }
    if kind == "arch":
        return {
            "first_touch.json": {
                **doc,
                "description": f"A kernel touch of an unallocated slot on {name} is recovered (R15).",
                "config": {"arch": name, "revision": "fixed", "cpus": 1},
                "ops": [create, touch],
            }
        }
    add = {"op": f"{name}.add", "args": {"by": 1}}
    return {
        "one_add.json": {
            **doc,
            "description": "One CPU adds: nothing can interleave.",
            "config": {"arch": "x86", "revision": "fixed", "cpus": 1},
            "ops": [{"cpu": 0, **add}],
        },
        "racing_adds.json": {
            **doc,
            "description": "cpu0 loads, cpu1 adds, cpu0 stores: an update is lost.",
            "config": {"arch": "x86", "revision": "fixed", "cpus": 2},
            "ops": [{"cpu": 0, **add}, {"cpu": 1, **add}],
            "schedule": [{"step": 2, "cpu": 1}, {"step": 4, "cpu": 0}],
        },
    }


def new_plugin(name: str, kind: str, folder: Path) -> Path:
    """Write the package for plugin ``name`` into ``folder/<name>`` and return that path."""
    if not _NAME.match(name) or name.startswith("fuzzkit"):
        raise ConfigError(
            f"plugin name '{name}': a lower-case Python identifier (letters, digits, _) "
            "not starting with 'fuzzkit'"
        )
    if kind not in KINDS:
        raise ConfigError(f"--kind '{kind}': one of {', '.join(KINDS)}")
    root = folder / name
    if root.exists():
        raise ConfigError(f"{root}: already exists; choose another name or --dir")
    fields = {
        "name": name,
        "kind": kind,
        "dist": "fuzzkit-" + name.replace("_", "-"),
        "cls": "".join(part.title() for part in name.split("_")),
    }
    pieces = {
        "pyproject.toml": _template("pyproject.toml.tmpl"),
        "README.md": _template("README.md.tmpl"),
        f"{name}/__init__.py": _template(f"{kind}.py.tmpl"),
        f"{name}/py.typed": "",
        f"tests/test_{name}.py": _template(f"test_{kind}.py.tmpl"),
    }
    root.mkdir(parents=True)
    for rel, text in pieces.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**fields) if rel != f"{name}/py.typed" else "")
    for rel, doc in _program(kind, name).items():
        (root / "tests" / rel).write_text(json.dumps(doc, indent=2) + "\n")
    return root

"""Design variants in one line: a plugin object that replaces named primitives.

A variant is the question "what if this kernel function did something else?" asked of
fuzzkit. Packaged, it is a plugin implementing ``fuzzkit_replace_primitives``; for a test or
a quick experiment, :func:`replacing` builds that plugin in-process::

    session = Session(load_registry(extra=[replacing(reason="plain clear", apply_range_clear_cb=fn)]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("fuzzkit")


class Replacement:
    """A plugin replacing the named primitives with the given functions."""

    def __init__(self, reason: str, fns: dict[str, Callable[..., Any]]) -> None:
        self.__name__ = "variant." + ".".join(fns)
        self.reason, self.fns = reason, fns

    @hookimpl
    def fuzzkit_replace_primitives(self, replace: Any) -> None:
        for name, fn in self.fns.items():
            replace(name, fn, reason=self.reason)


def replacing(*, reason: str, name: str = "variant", **fns: Callable[..., Any]) -> tuple[str, Replacement]:
    """``(plugin name, plugin)`` for ``load_registry(extra=[...])``."""
    return name, Replacement(reason, fns)

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

from fuzzkit.hookspecs import Replace

hookimpl = pluggy.HookimplMarker("fuzzkit")


class Replacement:
    """A plugin replacing the named primitives with the given functions."""

    def __init__(self, reason: str, fns: dict[str, Callable[..., Any]], *, wraps: bool = False) -> None:
        self.__name__ = "variant." + ".".join(fns)
        self.reason, self.fns, self.wraps = reason, fns, wraps

    @hookimpl
    def fuzzkit_replace_primitives(self, replace: Replace) -> None:
        for name, fn in self.fns.items():
            replace(name, fn, reason=self.reason, wraps=self.wraps)


def replacing(
    *, reason: str, name: str = "variant", wraps: bool = False, **fns: Callable[..., Any]
) -> tuple[str, Replacement]:
    """``(plugin name, plugin)`` for ``load_registry(extra=[...])``. With ``wraps=True`` each
    function is handed the one it replaces as the keyword ``original``."""
    return name, Replacement(reason, fns, wraps=wraps)

"""Naming the plugin at fault when plugin code raises during a run.

The traceback is walked from the innermost frame outwards; the first frame whose module
belongs to a loaded plugin (its module or a submodule of it) names the plugin and the
function. A traceback with no plugin frame blames ``core``: an engine or emulator failure,
reported the same way (exit 3) and never as a finding of the kernel model.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fuzzkit.errors import FailureSite, OpHung

if TYPE_CHECKING:
    from fuzzkit.machine.core import Cpu


def owner(module: str, modules: Mapping[str, str]) -> str | None:
    """The plugin ``module`` belongs to, the longest matching package first."""
    best: tuple[int, str] | None = None
    for prefix, plugin in modules.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), plugin)
    return best[1] if best else None


def blame(exc: BaseException, modules: Mapping[str, str], cpu: Cpu | None, step: int) -> FailureSite:
    frames = list(traceback.walk_tb(exc.__traceback__))
    plugin, function = "core", "?"
    for frame, _ in reversed(frames):
        found = owner(frame.f_globals.get("__name__", ""), modules)
        if found is not None:
            plugin, function = found, frame.f_code.co_name
            break
    else:
        if frames:
            function = frames[-1][0].f_code.co_name
    call = cpu.call if cpu is not None else None
    text = (str(exc).strip().splitlines() or [""])[0]
    kind = type(exc).__name__
    return FailureSite(
        plugin=plugin,
        op=call.spec.id if call is not None else "-",
        function=function,
        cpu=cpu.id if cpu is not None else -1,
        step=step,
        kind=kind,
        error=text if isinstance(exc, OpHung) else f"{kind}: {text}" if text else kind,
    )

"""Operations that hold a reference to a handle object while they run (the kernel's kref).

A map, a struct_ops map or a scheduler cannot go away under a program that uses it: an op
naming it takes a reference for its duration, and dropping the owner's reference (closing
the map, unloading, disabling) only marks the object; whichever op lets go of the last
reference runs the release, inside its own steps, as ``kref_put`` does in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzzkit.machine.core import Cpu, Machine, Steps

Executor = Callable[[Machine, Cpu, dict[str, Any]], Steps]


def holding(
    kind: str,
    arg: str,
    *,
    missing: str,
    putting: Callable[[Any], bool],
    released: Callable[[Any], bool],
    release: Callable[[Machine, Cpu, Any], Steps],
    task: Callable[[Steps], Steps] | None = None,
    ends_op: Callable[[Any], bool] = lambda ended: False,
) -> Callable[[Callable[..., Steps]], Executor]:
    """A decorator turning ``fn(m, cpu, obj, args)`` into an op executor that resolves
    ``args[arg]`` as a ``kind`` handle. The op sees ``missing`` when the handle does not exist
    or its owner already let go (``putting``); otherwise it holds ``obj.users`` while ``fn``
    runs, and the last holder of an object being put runs ``release`` unless ``released``.
    ``task`` wraps the op's body and the release (a subsystem's way of ending a kernel task on
    a BUG); when ``ends_op`` says so of the release's result, that result is the op's.

    Without a ``task`` the body runs unwrapped: every generator frame between the scheduler
    and an access is resumed on every step, so an identity wrapper would cost on all of them."""

    def wrap(fn: Callable[..., Steps]) -> Executor:
        def executor(m: Machine, cpu: Cpu, args: dict[str, Any]) -> Steps:
            # m.handle(kind, args[arg]), inlined: this runs at the start of most ops.
            objs = m.handles.get(kind)
            index = args[arg]
            obj = objs[index] if objs is not None and index < len(objs) else None
            if obj is None or putting(obj):
                return missing
            obj.users += 1
            try:
                body = fn(m, cpu, obj, args)
                result = yield from (body if task is None else task(body))
            finally:
                obj.users -= 1
            if putting(obj) and obj.users == 0 and not released(obj):
                teardown = release(m, cpu, obj)
                ended = yield from (teardown if task is None else task(teardown))
                if ends_op(ended):
                    return ended
            return result

        executor.__name__ = executor.__qualname__ = fn.__name__
        executor.__doc__ = fn.__doc__
        return executor

    return wrap

"""What the atheris engine instruments, and how: coverage is the kernel model's decisions.

* **Which modules.** Each plugin's ``FUZZKIT_COVERAGE`` (default: all of its modules); the
  core's own branches, op wrappers and oracle bookkeeping say little about the mechanism.
* **Which functions.** Only those that branch (:func:`decides`).
* **Which blocks.** atheris puts a counter on every basic block, including the loop a
  ``yield from`` compiles to: an instrumented generator would pay a counter on every step
  resumed through it, and its hit count would only say how many steps passed. Those
  resumption points are left out (:func:`_no_counter_on_resumption`).
* **Stable numbering.** atheris numbers a function's counters in an order that differs
  between processes (:func:`_stable_counter_numbering`), which made two campaigns of one
  seed part ways.

Both adjustments reach into atheris 3.0's bytecode instrumentor; when its internals differ
they are skipped, which costs speed and run-to-run determinism, not correctness.
"""

from __future__ import annotations

import dis
import itertools
import sys
import types
from collections.abc import Sequence
from typing import Any


def coverage_modules(plugin_modules: Sequence[str]) -> list[str]:
    """The modules to instrument: each plugin's ``FUZZKIT_COVERAGE`` or all its modules.

    A plugin lists the modules holding its kernel paths, whose branches are the mechanism's
    decisions, and leaves out code that runs on every step and decides nothing (memory
    accessors and address arithmetic, bit helpers, objects, operations, oracles), as the
    kernel sets ``KCOV_INSTRUMENT_foo.o := n`` for hot helpers: each trace call costs about
    as much as twenty bytecodes."""
    chosen = []
    for top in plugin_modules:
        declared = getattr(sys.modules.get(top), "FUZZKIT_COVERAGE", None)
        if declared is not None:
            chosen += list(declared)
        else:
            chosen += [n for n in sys.modules if n == top or n.startswith(top + ".")]
    return sorted(set(chosen))


#: Opcodes that branch besides the conditional jumps (``*_IF_*``): loops and ``except X``.
DECISIONS = frozenset({"FOR_ITER", "CHECK_EXC_MATCH", "CHECK_EG_MATCH"})


def decides(code: types.CodeType) -> bool:
    """Whether ``code`` (or code nested in it) branches on anything. A function without a
    branch is one basic block, covered exactly when its caller's calling block is, so its
    counter says nothing new."""
    if any(i.opname in DECISIONS or "_IF_" in i.opname for i in dis.get_instructions(code)):
        return True
    return any(isinstance(c, types.CodeType) and decides(c) for c in code.co_consts)


def instrument(atheris: types.ModuleType, modules: Sequence[str]) -> int:
    """Instrument the functions of ``modules`` that decide something; returns how many."""
    _stable_counter_numbering()
    _no_counter_on_resumption()
    count = 0
    for name in modules:
        module = sys.modules.get(name)
        for value in list(vars(module).values()) if module is not None else ():
            if isinstance(value, types.FunctionType) and value.__module__ == name:
                fns = [value]
            elif isinstance(value, type) and value.__module__ == name:
                fns = [a for a in vars(value).values() if isinstance(a, types.FunctionType)]
            else:
                continue
            for fn in fns:
                if decides(fn.__code__):
                    atheris.instrument_func(fn)
                    count += 1
    return count


def _instrumentor() -> Any:
    """atheris's bytecode instrumentor module, or None when it is not the one we know."""
    try:
        from atheris import instrument_bytecode as ib
    except ImportError:
        return None
    known = hasattr(ib, "Instruction") and hasattr(getattr(ib, "Instrumentor", None), "trace_control_flow")
    return ib if known else None


def _stable_counter_numbering() -> None:
    """atheris numbers a function's counters while iterating a set of its instructions,
    which hash by ``id()``: the numbering, and with it libFuzzer's feature ids and every
    choice they steer, differs between two processes fuzzing the same seed. Hashing
    instructions in the order they are first hashed (the same in every process) makes it a
    function of the code alone; equality stays identity, as atheris defines it."""
    ib = _instrumentor()
    if ib is None or getattr(ib.Instruction, "_fuzzkit_stable", False):
        return
    order = itertools.count()

    def stable_hash(self: Any) -> int:
        seq: int | None = self.__dict__.get("_fuzzkit_seq")
        if seq is None:
            seq = self.__dict__["_fuzzkit_seq"] = next(order)
        return seq

    ib.Instruction.__hash__ = stable_hash
    ib.Instruction._fuzzkit_stable = True


def _no_counter_on_resumption() -> None:
    """A ``yield from`` compiles to ``SEND``, ``YIELD_VALUE``, a jump back to ``SEND``; that
    jump makes ``SEND`` a basic block of its own, counted on every resumption. Hide such
    jumps while atheris picks its blocks (they are restored before it lays out the code):
    the first entry is counted by the block that contains it, the return by the block after."""
    ib = _instrumentor()
    if ib is None or getattr(ib.Instrumentor, "_fuzzkit_no_resumption", False):
        return
    pick_blocks = ib.Instrumentor.trace_control_flow

    def trace_control_flow(self: Any) -> None:
        hidden = []
        for ins in self.instructions:
            loops_back = [r.mnemonic == "JUMP_BACKWARD_NO_INTERRUPT" for r in ins.referers]
            if ins.mnemonic == "SEND" and loops_back and all(loops_back):
                hidden.append((ins, ins.referers))
                ins.referers = []
        try:
            pick_blocks(self)
        finally:
            for ins, referers in hidden:
                ins.referers = referers

    ib.Instrumentor.trace_control_flow = trace_control_flow
    ib.Instrumentor._fuzzkit_no_resumption = True

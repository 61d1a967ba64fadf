"""What the atheris engine instruments, and how: coverage is the kernel model's decisions.

* **Which modules.** Each plugin's ``FUZZKIT_COVERAGE`` (default: all of its modules); the
  core's own branches, op wrappers and oracle bookkeeping say little about the mechanism.
* **Which functions.** Only those that branch (:func:`decides`).
* **Which blocks.** atheris puts a counter on every basic block; those whose count is implied
  by others are left out: loop heads resumed on every iteration or step, and blocks whose
  successors account for them (:func:`_counters_on_needed_blocks`).
* **Stable numbering.** atheris numbers a function's counters in an order that differs
  between processes (:func:`_stable_counter_numbering`), which made two campaigns of one
  seed part ways.
* **No comparison tracing.** atheris also turns every comparison into a call feeding
  libFuzzer's table of compared values, from which its CMP mutation copies operands into
  the input. An input here is op records and domain indexes, never the addresses, counts
  and PTE values the model compares, so the copies decode to arbitrary records. Without
  the calls, ``fuzzkit bench --bugs`` found every seeded bug in as many seeds or more
  (library median 1,218 executions against 1,946), and the bench workload runs about 5%
  more executions per second (:func:`instrument`).

The adjustments reach into atheris 3.0's bytecode instrumentor; when its internals differ
they are skipped, which costs speed and run-to-run determinism, not correctness.
"""

from __future__ import annotations

import bisect
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
    _counters_on_needed_blocks()
    ib = _instrumentor()
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
                    if ib is None:  # not the atheris we know: its own instrumentation
                        atheris.instrument_func(fn)
                    else:  # blocks only, no comparison tracing (see the module's docstring)
                        fn.__code__ = ib.patch_code(fn.__code__, trace_dataflow=False)
                    count += 1
    return count


def _instrumentor() -> Any:
    """atheris's bytecode instrumentor module, or None when it is not the one we know."""
    try:
        from atheris import instrument_bytecode as ib
    except ImportError:
        return None
    from atheris import version_dependent as jumps

    known = (
        hasattr(ib, "Instruction")
        and hasattr(ib, "patch_code")
        and all(hasattr(ib.Instrumentor, a) for a in ("trace_control_flow", "_insert_at"))
        and all(hasattr(jumps, a) for a in ("CONDITIONAL_JUMPS", "UNCONDITIONAL_JUMPS", "ENDS_FUNCTION"))
    )
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


def _counters_on_needed_blocks() -> None:
    """Count a block only when no other counter implies it ran: a block that dominates all
    its successors (whichever way it goes on, it reaches a block no path avoiding it reaches)
    is left out, as SanitizerCoverage prunes full dominators. This drops the counters that said nothing: a
    ``for`` loop's head, counted on every iteration as well as the body (atheris's own
    comments note the double count), and the ``SEND`` a ``yield from`` compiles to, counted on
    every step resumed through an instrumented generator. Two paths through a function still
    differ in a counter: the first block where they part is dominated by the one before, and
    so is every block down the chain to the first one counted."""
    ib = _instrumentor()
    if ib is None or getattr(ib.Instrumentor, "_fuzzkit_needed_blocks", False):
        return
    from atheris import version_dependent as jumps

    pick_blocks = ib.Instrumentor.trace_control_flow

    def trace_control_flow(self: Any) -> None:
        # Let atheris choose its blocks, recording them instead of instrumenting...
        picked: list[Any] = []
        self._generate_trace_branch_invocation = lambda ins: ins
        self._insert_at = lambda _code, ins: picked.append(ins)
        try:
            pick_blocks(self)
        finally:
            del self._generate_trace_branch_invocation, self._insert_at
        # ... then instrument those it chose that are needed, in its order.
        implied = _full_dominators(self.instructions, picked, jumps)
        for ins in picked:
            if ins not in implied:
                self._insert_at(self._generate_trace_branch_invocation(ins), ins)

    ib.Instrumentor.trace_control_flow = trace_control_flow
    ib.Instrumentor._fuzzkit_needed_blocks = True


def _full_dominators(instructions: list[Any], picked: list[Any], jumps: Any) -> set[Any]:
    """The blocks of ``picked`` that dominate all their successors. SanitizerCoverage keeps
    the entry block's counter regardless; here it goes too (every call still shows in the
    counters of the blocks it runs), as it costs a trace call per call of every instrumented
    function. Exceptional edges are not in the graph; a block only they reach dominates
    nothing."""
    n = len(instructions)
    position = {id(ins): k for k, ins in enumerate(instructions)}
    no_fallthrough = set(jumps.UNCONDITIONAL_JUMPS) | set(jumps.ENDS_FUNCTION)
    # Where each jump goes. atheris leaves SEND's own jump (taken when the inner generator
    # returns) unresolved; it lands after the jump that loops back to the SEND.
    target: dict[int, int] = {}
    leaders = {0}
    for k, ins in enumerate(instructions):
        if ins.reference is not None:
            target[k] = position[id(ins.reference)]
        elif ins.mnemonic == "SEND" and ins.referers:
            target[k] = max(position[id(r)] for r in ins.referers) + 1
        if ins.referers:
            leaders.add(k)
        if k + 1 < n and (k in target or ins.mnemonic in no_fallthrough):
            leaders.add(k + 1)
    leaders.update(t for t in target.values() if t < n)
    starts = sorted(leaders)
    succ: list[list[int]] = []
    for b in range(len(starts)):
        end = (starts[b + 1] if b + 1 < len(starts) else n) - 1
        out = set()
        if end in target and target[end] < n:
            out.add(bisect.bisect_right(starts, target[end]) - 1)
        if instructions[end].mnemonic not in no_fallthrough and b + 1 < len(starts):
            out.add(b + 1)
        succ.append(sorted(out))
    dom = _dominators(succ)
    implied = set()
    for ins in picked:
        b = bisect.bisect_right(starts, position[id(ins)]) - 1
        # A block that loops back to itself keeps its counter: it counts the iterations.
        if succ[b] and all(s != b and b in dom[s] for s in succ[b]):
            implied.add(ins)
    return implied


def _dominators(succ: list[list[int]]) -> list[set[int]]:
    """For each block, the blocks on every path to it from block 0; a block that block 0
    does not reach is dominated by itself alone."""
    pred: list[list[int]] = [[] for _ in succ]
    reached, todo = {0}, [0]
    while todo:
        b = todo.pop()
        for t in succ[b]:
            pred[t].append(b)
            if t not in reached:
                reached.add(t)
                todo.append(t)
    dom = [set(reached) if b in reached else {b} for b in range(len(succ))]
    dom[0] = {0}
    changed = True
    while changed:
        changed = False
        for b in sorted(reached - {0}):
            new = {b} | set.intersection(*(dom[p] for p in pred[b]))
            if new != dom[b]:
                dom[b], changed = new, True
    return dom

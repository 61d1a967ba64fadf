"""One design variant per kernel function that became replaceable, each a plugin object of
this module, loaded the way a user loads one: ``-p variants.replaceable:wide_band``.

Most wrap the implementation they replace (``wraps=True``): the variant is the question, the
original does the rest.
"""

from __future__ import annotations

from typing import Any

from fuzzkit_arena.arena import GUARD_SZ, Arena, BpfProg

from fuzzkit import Cpu, Fault, Machine, Steps, hookimpl
from fuzzkit.hookspecs import Replace


def _band_with_lower_guard(m: Machine, arena: Arena, addr: int, *, original: Any) -> bool:
    """What if the handler also recovered faults in the lower half-guard?"""
    return bool(original(m, arena, addr)) or arena.kbase - GUARD_SZ // 2 <= addr < arena.kbase


def _no_recovery_of_writes(m: Machine, cpu: Cpu, fault: Fault, *, original: Any) -> Steps:
    """What if the arena fault hook left write faults alone?"""
    if fault.write:
        return None
    return (yield from original(m, cpu, fault))


def _kfence_claims_nothing(m: Machine, cpu: Cpu, fault: Fault) -> Steps:
    """What if KFENCE were not built in?"""
    return None
    yield  # a fault stage is a generator function


def _small_arenas(
    m: Machine, cpu: Cpu, index: int, max_entries: int, flags: int, user_vm_start: int, *, original: Any
) -> Arena | str:
    """What if arena_map_alloc() refused arenas over 8 pages?"""
    if max_entries > 8:
        return "E2BIG"
    arena: Arena | str = original(m, cpu, index, max_entries, flags, user_vm_start)
    return arena


def _no_stack_walk(m: Machine, cpu: Cpu) -> BpfProg | None:
    """What if the stack walk found no program?"""
    return None


def _no_report(m: Machine, cpu: Cpu, prog: BpfProg, write: bool, offset: int) -> None:
    """What if violations were not reported to the stream?"""


def _walk_skips_last(m: Machine, lo: int, hi: int, *, original: Any) -> list[int]:
    """What if the PTE walk stopped one entry short?"""
    vpages: list[int] = original(m, lo, hi)
    return vpages[:-1]


class Variant:
    """A plugin replacing one name."""

    def __init__(self, name: str, fn: Any, reason: str, wraps: bool) -> None:
        self.__name__ = f"variants.replaceable.{name}"
        self.name, self.fn, self.reason, self.wraps = name, fn, reason, wraps

    @hookimpl
    def fuzzkit_replace_primitives(self, replace: Replace) -> None:
        replace(self.name, self.fn, reason=self.reason, wraps=self.wraps)


wide_band = Variant("arena_in_recovery_band", _band_with_lower_guard, "lower half-guard too", True)
no_write_recovery = Variant("bpf_arena_handle_page_fault", _no_recovery_of_writes, "reads only", True)
no_kfence = Variant("kfence", _kfence_claims_nothing, "no KFENCE", False)
small_arenas = Variant("arena_map_alloc", _small_arenas, "at most 8 pages", True)
no_stack_walk = Variant("bpf_prog_find_from_stack", _no_stack_walk, "no program found", False)
no_report = Variant("bpf_prog_report_arena_violation", _no_report, "silent", False)
short_walk = Variant("apply_to_existing_page_range", _walk_skips_last, "one short", True)

"""A plugin whose code raises: the free path's clear callback (R7) fails on the first page
it clears. Loaded by name (``-p export.crashing_clear:crashing``), it stands for any plugin
bug, which an exported target must report as the plugin's, never as the kernel model's."""

from __future__ import annotations

from fuzzkit_arena.arena import Arena

from fuzzkit import Cpu, Machine, Steps
from fuzzkit.variants import Replacement


def clear_cb_that_raises(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    yield from m.k.ptep_get_and_clear(m, cpu, vpage)
    raise LookupError(f"no page list entry for vpage {vpage:#x}")


crashing = Replacement("raises", {"apply_range_clear_cb": clear_cb_that_raises})

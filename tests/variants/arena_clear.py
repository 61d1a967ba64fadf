"""Two design variants of the free path's clear callback, ``apply_range_clear_cb`` (R7, R9,
R17), as plugin objects of one module: load one by ``module:attribute``, in this process or in
the atheris engine's child, e.g. ``fuzzkit fuzz -p variants.arena_clear:no_scratch_skip``.

* ``read_then_store``: a plain ``ptep_get`` then ``set_pte_at(0)`` instead of the atomic
  ``ptep_get_and_clear``, with a scheduling point between the two. Benign in this model as in
  kernel/bpf/arena.c: the clear runs under the arena lock over present PTEs, and the only
  writer that takes no lock, the scratch installer, writes into raw-zero PTEs alone.
* ``no_scratch_skip``: the atomic clear, but the scratch page is handed back to be freed like
  any other. The kernel's own comment says what follows: "Without the skip, scratch_page
  would be freed" (I1).
"""

from __future__ import annotations

from fuzzkit_arena.arena import Arena

from fuzzkit import Cpu, Machine, Page, Steps
from fuzzkit.variants import Replacement


def clear_cb_read_then_store(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """The clear as two accesses with a scheduling point between them."""
    old = yield from m.k.ptep_get(m, cpu, vpage)
    yield from m.k.set_pte_at(m, cpu, vpage, 0)
    if m.arch.pte_none(old) or not m.arch.pte_present(old):
        return None
    page: Page | None = m.page_of(old)
    return None if page is arena.scratch else page


def clear_cb_without_scratch_skip(m: Machine, cpu: Cpu, arena: Arena, vpage: int) -> Steps:
    """The atomic clear, but every present page is handed back to be freed."""
    old = yield from m.k.ptep_get_and_clear(m, cpu, vpage)
    page: Page | None = m.page_of(old)
    return page


read_then_store = Replacement("plain clear", {"apply_range_clear_cb": clear_cb_read_then_store})
no_scratch_skip = Replacement("no scratch skip", {"apply_range_clear_cb": clear_cb_without_scratch_skip})

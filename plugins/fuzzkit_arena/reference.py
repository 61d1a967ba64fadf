"""I12's reference model of an arena's range tree: the TAKEN page offsets as bits of one
Python int, sharing no code or representation with :class:`fuzzkit_arena.range_tree.RangeTree`,
and the two calls through which the arena code reaches the range tree and moves the
reference along.

Apart from the kernel paths on purpose: it is an oracle's bookkeeping, so atheris does not
instrument it (it is not in the plugin's ``FUZZKIT_COVERAGE``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzzkit import Machine

if TYPE_CHECKING:
    from fuzzkit_arena.arena import Arena


# The arena code reaches the range tree through these two, which also move the reference
# on success, so a replaced range-tree primitive is still judged against what the operation
# meant to do.


def rt_clear(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    ret: int = m.k.range_tree_clear(m, arena, pgoff, n)
    if ret == 0:
        arena.ref.take(pgoff, n)
    return ret


def rt_set(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    ret: int = m.k.range_tree_set(m, arena, pgoff, n)
    if ret == 0:
        arena.ref.release(pgoff, n)
    return ret


class ReferenceRanges:
    """I12's reference: TAKEN offsets as bits of one int, over ``size`` pages."""

    __slots__ = ("size", "taken")

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0

    def all_free(self, start: int, n: int) -> bool:
        return (self.taken >> start) & ((1 << n) - 1) == 0

    def free_mask(self, lo: int, hi: int) -> int:
        """FREE offsets of ``[lo, hi)`` as bits (bit 0 is ``lo``)."""
        return ~(self.taken >> lo) & ((1 << (hi - lo)) - 1)

    def take(self, start: int, n: int) -> None:
        self.taken |= ((1 << n) - 1) << start

    def release(self, start: int, n: int) -> None:
        self.taken &= ~(((1 << n) - 1) << start)

    def best_fit(self, n: int) -> int:
        """Smallest free run holding ``n`` pages, lowest offset on ties; -1 when none."""
        best, best_len = -1, 0
        bits, pos, size = self.taken, 0, self.size
        while pos < size:
            rest = bits >> pos
            if rest & 1:
                free = ~rest
                pos += (free & -free).bit_length() - 1 if free else size
                continue
            run = (rest & -rest).bit_length() - 1 if rest else size - pos
            run = min(run, size - pos)
            if run >= n and (best < 0 or run < best_len):
                best, best_len = pos, run
            pos += run
        return best

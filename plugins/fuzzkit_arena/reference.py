"""I12's reference model of an arena's range tree: the FREE page offsets as bits of one
Python int, sharing no code or representation with :class:`fuzzkit_arena.range_tree.RangeTree`,
and the calls through which the arena code reaches the range tree and moves the reference
along.

Apart from the kernel paths on purpose: it is an oracle's bookkeeping, so atheris does not
instrument it (it is not in the plugin's ``FUZZKIT_COVERAGE``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzzkit import Machine

if TYPE_CHECKING:
    from fuzzkit_arena.arena import Arena


# The arena code reaches the range tree through these, which also move the reference
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


def rt_set_unavail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    ret: int = m.k.range_tree_set_unavail(m, arena, pgoff, n)
    if ret == 0:
        arena.ref.withhold(pgoff, n)
    return ret


def rt_make_avail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    ret: int = m.k.range_tree_make_avail(m, arena, pgoff, n)
    if ret == 0:
        arena.ref.give_back(pgoff, n)
    return ret


def rt_remove_unavail(m: Machine, arena: Arena, pgoff: int, n: int) -> int:
    ret: int = m.k.range_tree_remove_unavail(m, arena, pgoff, n)
    if ret == 0:
        arena.ref.unwithhold(pgoff, n)
    return ret


class ReferenceRanges:
    """I12's reference: FREE offsets as bits of one int (an empty tree frees nothing, so
    offsets past ``max_entries`` are FREE only if a free marked them, as in the kernel,
    R6), and for each maximal free run the tick at which its bounds last changed: the
    order in which best fit breaks ties between runs of equal size (R2). Offsets withheld
    (unavailable: a free waiting for its TLB flush, a user fault mapping its page, R7, R11)
    are bits of a second int, each withheld range with the tick it was withheld at: the
    tick its run keeps if it comes back with no free neighbour."""

    __slots__ = ("free", "stamps", "ticks", "withheld", "withheld_stamps")

    def __init__(self) -> None:
        self.free = 0
        self.stamps: dict[tuple[int, int], int] = {}
        self.ticks = 0
        self.withheld = 0
        self.withheld_stamps: dict[tuple[int, int], int] = {}

    def all_free(self, start: int, n: int) -> bool:
        mask = (1 << n) - 1
        return (self.free >> start) & mask == mask

    def free_mask(self, lo: int, hi: int) -> int:
        """FREE offsets of ``[lo, hi)`` as bits (bit 0 is ``lo``)."""
        return (self.free >> lo) & ((1 << (hi - lo)) - 1)

    def _run(self, pos: int) -> tuple[int, int]:
        """The maximal free run holding the free offset ``pos``."""
        above = self.free >> pos
        below = ~self.free & ((1 << pos) - 1)
        return below.bit_length(), pos + (~above & (above + 1)).bit_length() - 1

    def _stamp(self, run: tuple[int, int]) -> None:
        self.ticks += 1
        self.stamps[run] = self.ticks

    def take(self, start: int, n: int) -> None:
        """Runs cut short on the left, then on the right, become the newest (a run the
        range only touches keeps its stamp)."""
        end = start + n
        before = self.free
        if not before & ((1 << n) - 1) << start:
            return
        self.free &= ~(((1 << n) - 1) << start)
        if start and (before >> (start - 1)) & 3 == 3:
            self._stamp(self._run(start - 1))
        if (before >> (end - 1)) & 3 == 3:
            self._stamp(self._run(end))

    def release(self, start: int, n: int) -> None:
        """The run the range joins becomes the newest, unless all of it was FREE already."""
        if self.all_free(start, n):
            return
        self.free |= ((1 << n) - 1) << start
        self._stamp(self._run(start))

    def withheld_mask(self, lo: int, hi: int) -> int:
        """Withheld offsets of ``[lo, hi)`` as bits (bit 0 is ``lo``)."""
        return (self.withheld >> lo) & ((1 << (hi - lo)) - 1)

    def withhold(self, start: int, n: int) -> None:
        """Free runs the range cuts become the newest, as :meth:`take`; then the range
        itself is withheld, newer still."""
        self.take(start, n)
        self.withheld |= ((1 << n) - 1) << start
        self.ticks += 1
        self.withheld_stamps[(start, start + n)] = self.ticks

    def give_back(self, start: int, n: int) -> None:
        """A withheld range becomes FREE: with a free neighbour the joined run is the
        newest; alone it keeps the tick it was withheld at."""
        stamp = self.withheld_stamps.pop((start, start + n))
        self.withheld &= ~(((1 << n) - 1) << start)
        alone = not (start and (self.free >> (start - 1)) & 1) and not (self.free >> (start + n)) & 1
        self.free |= ((1 << n) - 1) << start
        if alone:
            self.stamps[(start, start + n)] = stamp
        else:
            self._stamp(self._run(start))

    def unwithhold(self, start: int, n: int) -> None:
        """A withheld range is TAKEN again."""
        del self.withheld_stamps[(start, start + n)]
        self.withheld &= ~(((1 << n) - 1) << start)

    def best_fit(self, n: int) -> int:
        """Smallest free run holding ``n`` pages, the newest on ties; -1 when none."""
        best, best_len, best_stamp = -1, 0, -1
        rest, pos = self.free, 0
        while rest:
            gap = (rest & -rest).bit_length() - 1
            rest >>= gap
            pos += gap
            run = (~rest & (rest + 1)).bit_length() - 1
            if run >= n:
                stamp = self.stamps.get((pos, pos + run), 0)
                if best < 0 or run < best_len or (run == best_len and stamp > best_stamp):
                    best, best_len, best_stamp = pos, run, stamp
            rest >>= run
            pos += run
        return best

"""The arena's range tree (kernel/bpf/range_tree.c).

The kernel keeps the *free* page offsets of an arena as a set of disjoint intervals, each a
node linked into two rbtrees: one ordered by offset, one by size. Marking a range TAKEN
(``range_tree_clear``) can split an interval, and marking it FREE (``range_tree_set``) can
add one: both may need a new node, and that allocation can fail (-ENOMEM, injection point
``range_tree_node_alloc``), in which case nothing changes here.

The size tree decides which of several equal-size intervals best fit returns (R2): it is
the one whose node was inserted last. ``__range_size_insert`` links a node of equal size to
the right of the nodes already there, and ``__find_range`` descends right while the size
still fits, so it ends on the rightmost, newest, of the smallest fitting size. A node is
re-inserted whenever its bounds change (``range_it_remove`` + ``range_it_insert``), so each
interval here carries the tick at which its bounds last changed.

The I12 oracle judges it against :class:`fuzzkit_arena.reference.ReferenceRanges`, which
shares no code or representation with it.
"""

from __future__ import annotations

import bisect

from fuzzkit import Machine

ENOMEM = -12
ESRCH = -3


class RangeTree:
    """Free intervals ``[start, end)``, sorted by start, never adjacent or overlapping, each
    with the tick of its (re-)insertion into the size tree."""

    __slots__ = ("ends", "inserted", "starts", "ticks")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.inserted: list[int] = []
        self.ticks = 0

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def _tick(self) -> int:
        self.ticks += 1
        return self.ticks

    def is_set(self, start: int, n: int) -> int:
        """is_range_tree_set(): 0 when all of ``[start, start+n)`` is FREE, else -ESRCH."""
        i = bisect.bisect_right(self.starts, start) - 1
        return 0 if i >= 0 and self.ends[i] >= start + n else ESRCH

    def find(self, n: int) -> int:
        """range_tree_find() / __find_range(): best fit, the smallest free interval that
        holds ``n`` pages; among equal sizes the one inserted last (R2). -ENOMEM when none
        does (the kernel's -ENOENT; the arena only tests the sign)."""
        best, best_len, best_tick = -1, 0, 0
        for s, e, t in zip(self.starts, self.ends, self.inserted, strict=True):
            size = e - s
            if size >= n and (best < 0 or size < best_len or (size == best_len and t > best_tick)):
                best, best_len, best_tick = s, size, t
        return best if best >= 0 else ENOMEM

    def clear(self, m: Machine, start: int, n: int) -> int:
        """range_tree_clear(): mark ``[start, start+n)`` TAKEN. The overlapping nodes are
        visited lowest first: a node sticking out on the left is re-inserted before one
        sticking out on the right (a split re-inserts the left part, then adds the right)."""
        end = start + n
        lo = bisect.bisect_right(self.ends, start)
        hi = bisect.bisect_left(self.starts, end)
        if lo >= hi:
            return 0
        splits = self.starts[lo] < start and self.ends[hi - 1] > end and lo == hi - 1
        if splits and m.inject("range_tree_node_alloc"):
            return ENOMEM
        keep_s, keep_e, keep_t = [], [], []
        if self.starts[lo] < start:
            keep_s.append(self.starts[lo])
            keep_e.append(start)
            keep_t.append(self._tick())
        if self.ends[hi - 1] > end:
            keep_s.append(end)
            keep_e.append(self.ends[hi - 1])
            keep_t.append(self._tick())
        self.starts[lo:hi] = keep_s
        self.ends[lo:hi] = keep_e
        self.inserted[lo:hi] = keep_t
        return 0

    def set(self, m: Machine, start: int, n: int) -> int:
        """range_tree_set(): mark ``[start, start+n)`` FREE, merging with neighbours into one
        newly inserted node. A range already inside one free node is left alone (the
        kernel's early return): its node keeps its place among equal sizes. Parts already
        FREE stay FREE (a free needs no ownership, R6)."""
        end = start + n
        i = bisect.bisect_right(self.starts, start) - 1
        if i >= 0 and self.ends[i] >= end:
            return 0
        lo = bisect.bisect_left(self.ends, start)
        hi = bisect.bisect_right(self.starts, end)
        if lo == hi and m.inject("range_tree_node_alloc"):
            return ENOMEM
        if lo < hi:
            start = min(start, self.starts[lo])
            end = max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        self.inserted[lo:hi] = [self._tick()]
        return 0

"""The arena's range tree (kernel/bpf/range_tree.c).

The kernel keeps the *free* page offsets of an arena as a set of disjoint intervals. Marking
a range TAKEN (``range_tree_clear``) can split an interval, and marking it FREE
(``range_tree_set``) can add one: both may need a new node, and that allocation can fail
(-ENOMEM, injection point ``range_tree_node_alloc``), in which case nothing changes.

The I12 oracle judges it against :class:`fuzzkit_arena.reference.ReferenceRanges`, which
shares no code or representation with it.
"""

from __future__ import annotations

import bisect

from fuzzkit import Machine

ENOMEM = -12
ESRCH = -3


class RangeTree:
    """Free intervals ``[start, end)``, sorted by start, never adjacent or overlapping."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def is_set(self, start: int, n: int) -> int:
        """is_range_tree_set(): 0 when all of ``[start, start+n)`` is FREE, else -ESRCH."""
        i = bisect.bisect_right(self.starts, start) - 1
        return 0 if i >= 0 and self.ends[i] >= start + n else ESRCH

    def find(self, n: int) -> int:
        """range_tree_find(): best fit, the smallest free interval that holds ``n`` pages,
        lowest offset on ties (R2). -ENOMEM when none does."""
        best = -1
        best_len = 0
        for s, e in zip(self.starts, self.ends, strict=True):
            size = e - s
            if size >= n and (best < 0 or size < best_len):
                best, best_len = s, size
        return best if best >= 0 else ENOMEM

    def clear(self, m: Machine, start: int, n: int) -> int:
        """range_tree_clear(): mark ``[start, start+n)`` TAKEN."""
        end = start + n
        lo = bisect.bisect_right(self.ends, start)
        hi = bisect.bisect_left(self.starts, end)
        if lo >= hi:
            return 0
        splits = self.starts[lo] < start and self.ends[hi - 1] > end and lo == hi - 1
        if splits and m.inject("range_tree_node_alloc"):
            return ENOMEM
        keep_s, keep_e = [], []
        if self.starts[lo] < start:
            keep_s.append(self.starts[lo])
            keep_e.append(start)
        if self.ends[hi - 1] > end:
            keep_s.append(end)
            keep_e.append(self.ends[hi - 1])
        self.starts[lo:hi] = keep_s
        self.ends[lo:hi] = keep_e
        return 0

    def set(self, m: Machine, start: int, n: int) -> int:
        """range_tree_set(): mark ``[start, start+n)`` FREE, merging with neighbours. Parts
        already FREE stay FREE (a free needs no ownership, R6)."""
        end = start + n
        lo = bisect.bisect_left(self.ends, start)
        hi = bisect.bisect_right(self.starts, end)
        if lo == hi and m.inject("range_tree_node_alloc"):
            return ENOMEM
        if lo < hi:
            start = min(start, self.starts[lo])
            end = max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        return 0

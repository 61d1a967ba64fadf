"""The arena's range tree (kernel/bpf/range_tree.c).

The kernel keeps the page offsets of an arena that are not allocated as a set of disjoint
intervals, each a node linked into two rbtrees: one ordered by offset, one by size. A node
is *available* (FREE: allocatable) or *unavailable* (the range is being freed and its TLB
flush is still to come, or a user fault holds it while it maps the page; ``range_node``'s
``available`` field). An offset in no node is TAKEN. Marking a range TAKEN
(``range_tree_clear``) can split an interval, and marking it FREE or unavailable
(``range_tree_set``) can add one: both may need a new node, and that allocation can fail
(-ENOMEM, injection point ``range_tree_node_alloc``), in which case nothing changes here.
``range_tree_clear`` refuses (-EAGAIN) a range that overlaps an unavailable node, so nothing
can claim such a range until ``range_tree_make_avail`` or ``range_tree_remove_unavail``
ends its state. Available nodes are merged with available neighbours; unavailable ones never
merge, so they may border any node.

The size tree decides which of several equal-size intervals best fit returns (R2): it is
the one whose node was inserted last. ``__range_size_insert`` links a node of equal size to
the right of the nodes already there, and ``__find_range`` descends right while the size
still fits, then steps left (``rb_prev``: older, then larger) past unavailable nodes, so it
ends on the newest available node of the smallest fitting size. A node is re-inserted
whenever its bounds change (``range_it_remove`` + ``range_it_insert``), so each interval
here carries the tick at which its bounds last changed; ``range_tree_make_avail`` flips a
node with no available neighbour in place, so that node keeps the tick of its insertion.

The I12 oracle judges it against :class:`fuzzkit_arena.reference.ReferenceRanges`, which
shares no code or representation with it.
"""

from __future__ import annotations

import bisect

from fuzzkit import Machine

ENOMEM = -12
ESRCH = -3
EAGAIN = -11
EINVAL = -22


class RangeTree:
    """Nodes ``[start, end)``, sorted by start, never overlapping, each with its
    availability and the tick of its (re-)insertion into the size tree."""

    __slots__ = ("avail", "ends", "inserted", "starts", "ticks")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.avail: list[bool] = []
        self.inserted: list[int] = []
        self.ticks = 0

    def intervals(self) -> list[tuple[int, int]]:
        """The FREE (available) intervals."""
        return [(s, e) for s, e, a in zip(self.starts, self.ends, self.avail, strict=True) if a]

    def unavailable(self) -> list[tuple[int, int]]:
        """The unavailable intervals."""
        return [(s, e) for s, e, a in zip(self.starts, self.ends, self.avail, strict=True) if not a]

    def _tick(self) -> int:
        self.ticks += 1
        return self.ticks

    def _overlapping(self, start: int, end: int) -> tuple[int, int]:
        return bisect.bisect_right(self.ends, start), bisect.bisect_left(self.starts, end)

    def is_set(self, start: int, n: int) -> int:
        """is_range_tree_set(): 0 when nodes cover all of ``[start, start+n)`` without a
        gap, available or not, else -ESRCH."""
        end = start + n
        lo, hi = self._overlapping(start, end)
        for i in range(lo, hi):
            if self.starts[i] > start:
                return ESRCH
            if self.ends[i] >= end:
                return 0
            start = self.ends[i]
        return ESRCH

    def find(self, n: int) -> int:
        """range_tree_find() / __find_range(): best fit, the smallest available interval
        that holds ``n`` pages; among equal sizes the one inserted last (R2). -ENOMEM when
        none does (the kernel's -ENOENT; the arena only tests the sign)."""
        best, best_len, best_tick = -1, 0, 0
        for s, e, a, t in zip(self.starts, self.ends, self.avail, self.inserted, strict=True):
            size = e - s
            if a and size >= n and (best < 0 or size < best_len or (size == best_len and t > best_tick)):
                best, best_len, best_tick = s, size, t
        return best if best >= 0 else ENOMEM

    def _cut(self, m: Machine, start: int, n: int) -> int:
        """range_tree_clear()'s work: -EAGAIN when an unavailable node overlaps, -ENOMEM
        when a split's node cannot be allocated, else the overlapping nodes are visited
        lowest first: a node sticking out on the left is re-inserted before one sticking
        out on the right (a split re-inserts the left part, then adds the right)."""
        end = start + n
        lo, hi = self._overlapping(start, end)
        if lo >= hi:
            return 0
        if not all(self.avail[lo:hi]):
            return EAGAIN
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
        self.avail[lo:hi] = [True] * len(keep_s)
        self.inserted[lo:hi] = keep_t
        return 0

    def clear(self, m: Machine, start: int, n: int) -> int:
        """range_tree_clear(): mark ``[start, start+n)`` TAKEN."""
        return self._cut(m, start, n)

    def set(self, m: Machine, start: int, n: int) -> int:
        """range_tree_set_avail(): mark ``[start, start+n)`` FREE, merging with available
        neighbours into one newly inserted node. A range already inside one available node
        is left alone (the kernel's early return): its node keeps its place among equal
        sizes. Parts already FREE stay FREE (a free needs no ownership, R6); a range that
        overlaps an unavailable node is refused (-EAGAIN, from range_tree_clear())."""
        end = start + n
        i = bisect.bisect_right(self.starts, start) - 1
        if i >= 0 and self.ends[i] >= end and self.avail[i]:
            return 0
        lo, hi = self._overlapping(start, end)
        if not all(self.avail[lo:hi]):
            return EAGAIN
        # Widen to the neighbours that touch the range; only available ones merge.
        if lo > 0 and self.ends[lo - 1] == start and self.avail[lo - 1]:
            lo -= 1
        if hi < len(self.starts) and self.starts[hi] == end and self.avail[hi]:
            hi += 1
        if lo == hi and m.inject("range_tree_node_alloc"):
            return ENOMEM
        if lo < hi:
            start = min(start, self.starts[lo])
            end = max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        self.avail[lo:hi] = [True]
        self.inserted[lo:hi] = [self._tick()]
        return 0

    def set_unavail(self, m: Machine, start: int, n: int) -> int:
        """range_tree_set_unavail(): clear ``[start, start+n)`` out (range_tree_clear(),
        which refuses an overlapping unavailable node with -EAGAIN), then insert it as one
        new unavailable node, merged with nothing."""
        end = start + n
        lo, hi = self._overlapping(start, end)
        if not all(self.avail[lo:hi]):
            return EAGAIN
        splits = lo == hi - 1 and self.starts[lo] < start and self.ends[lo] > end
        # The split's node (range_tree_clear()), then the new node: both before any change.
        if splits and m.inject("range_tree_node_alloc"):
            return ENOMEM
        if m.inject("range_tree_node_alloc"):
            return ENOMEM
        if splits:
            self._split(lo, start, end)
        else:
            self._cut(m, start, n)
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.avail.insert(i, False)
        self.inserted.insert(i, self._tick())
        return 0

    def _split(self, i: int, start: int, end: int) -> None:
        """A split whose node allocation was already granted: the left part re-inserted,
        then the right part added."""
        right = self.ends[i]
        self.ends[i] = start
        self.inserted[i] = self._tick()
        self.starts.insert(i + 1, end)
        self.ends.insert(i + 1, right)
        self.avail.insert(i + 1, True)
        self.inserted.insert(i + 1, self._tick())

    def _exact_unavailable(self, start: int, n: int) -> int:
        """The index of the unavailable node that is exactly ``[start, start+n)`` and is the
        first node overlapping it, or -1 (range_tree_make_avail()'s -EINVAL checks)."""
        lo, hi = self._overlapping(start, start + n)
        if lo >= hi or self.avail[lo] or self.starts[lo] != start or self.ends[lo] != start + n:
            return -1
        return lo

    def make_avail(self, start: int, n: int) -> int:
        """range_tree_make_avail(): the unavailable node ``[start, start+n)`` becomes
        available. With no available neighbour it is flipped in place (keeping its tick);
        otherwise it is removed and merged into the neighbours (a new tick). Allocates
        nothing, so it fails only on a range that is not exactly one unavailable node."""
        i = self._exact_unavailable(start, n)
        if i < 0:
            return EINVAL
        lo, hi = i, i + 1
        if lo > 0 and self.ends[lo - 1] == start and self.avail[lo - 1]:
            lo -= 1
        if hi < len(self.starts) and self.starts[hi] == start + n and self.avail[hi]:
            hi += 1
        if hi - lo == 1:
            self.avail[i] = True
            return 0
        self.starts[lo:hi] = [self.starts[lo]]
        self.ends[lo:hi] = [self.ends[hi - 1]]
        self.avail[lo:hi] = [True]
        self.inserted[lo:hi] = [self._tick()]
        return 0

    def remove_unavail(self, start: int, n: int) -> int:
        """range_tree_remove_unavail(): the unavailable node ``[start, start+n)`` goes; its
        offsets are TAKEN again. -EINVAL unless exactly one unavailable node."""
        i = self._exact_unavailable(start, n)
        if i < 0:
            return EINVAL
        del self.starts[i], self.ends[i], self.avail[i], self.inserted[i]
        return 0

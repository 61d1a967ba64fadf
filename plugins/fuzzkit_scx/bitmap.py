"""lib/bitmap.c: the bit arithmetic genalloc builds on, over bitmaps held in Python ints (bit
``i`` is granule ``i``, words are 64 bits).

Out of the plugin's ``FUZZKIT_COVERAGE`` on purpose, like the cmask accessors: these are
searches and masks, the pool's decisions (which chunk, retry on a lost race, BUG) are
genalloc's, and atheris would pay for every loop turn here on every allocation.
"""

from __future__ import annotations

BITS_PER_LONG = 64


def bitmap_find_next_zero_area(bits: int, size: int, start: int, nr: int) -> int:
    """The first run of ``nr`` clear bits at or after ``start`` below ``size``; a value past
    ``size - nr`` when there is none."""
    while True:
        inverted = ~bits >> start
        index = min(start + (inverted & -inverted).bit_length() - 1, size)
        end = index + nr
        if end > size:
            return end
        window = (bits >> index) & ((1 << nr) - 1)
        if not window:
            return index
        start = index + (window & -window).bit_length()


def word_masks(start: int, nr: int) -> list[int]:
    """The per-word masks of bits ``[start, start + nr)``, lowest word first."""
    masks = []
    pos, end = start, start + nr
    while pos < end:
        hi = min(end, (pos // BITS_PER_LONG + 1) * BITS_PER_LONG)
        masks.append(((1 << (hi - pos)) - 1) << pos)
        pos = hi
    return masks


def set_bit_ranges(bits: int, end_bit: int) -> list[tuple[int, int]]:
    """for_each_set_bitrange(): the ``[b, e)`` runs of set bits below ``end_bit``."""
    runs = []
    bits &= (1 << end_bit) - 1
    while bits:
        b = (bits & -bits).bit_length() - 1
        rest = ~bits >> b
        e = b + (rest & -rest).bit_length() - 1
        runs.append((b, e))
        bits &= ~(((1 << (e - b)) - 1) << b)
    return runs

"""The seeded-bug library: each entry a target, the plugins that make the bug (a variant of
this package, or none where the model itself has it) and the titles that count as finding it.
``fuzzkit bench --bugs`` fuzzes each, unfocused, and reports how soon the engines get there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Arena bugs are searched with the arena's plugin set, as a user trying an arena design does.
ARENA_ONLY = ("no:struct_ops", "no:scx")


@dataclass(frozen=True)
class SeededBug:
    name: str
    #: What the flaw is, in a line.
    what: str
    arch: str
    revision: str
    cpus: int
    #: ``-p`` flags: plugin set and the variant module.
    plugins: tuple[str, ...]
    #: A finding whose title matches this regular expression is the bug.
    title: str

    def matches(self, title: str) -> bool:
        return re.search(self.title, title) is not None


def _variant(module: str, attr: str) -> str:
    return f"fuzzkit_seeded.{module}:{attr}"


BUGS: tuple[SeededBug, ...] = (
    SeededBug(
        "merged-unallocatable",
        "merged revision: best fit lands on a scratched slot and fails (R4)",
        "x86", "merged", 1, ARENA_ONLY,
        r"^I16 best-fit allocation failed",
    ),
    SeededBug(
        "no-scratch-skip",
        "the clear callback frees the scratch page (R9)",
        "x86", "fixed", 1, (*ARENA_ONLY, _variant("arena", "no_scratch_skip")),
        r"^I1 scratch page freed",
    ),
    SeededBug(
        "no-tlb-flush",
        "the free path clears PTEs without a TLB flush (R7)",
        "arm64", "fixed", 1, (*ARENA_ONLY, _variant("arena", "no_tlb_flush")),
        r"^(I15 |I2 page freed while a TLB entry maps it)",
    ),
    SeededBug(
        "installer-overwrite",
        "the scratch installer stores after a none check, overwriting a racing install (R15)",
        "x86", "fixed", 2, (*ARENA_ONLY, _variant("arena", "installer_overwrite")),
        r"^I8 ",
    ),
    SeededBug(
        "free-no-uncharge",
        "the free path leaves nr_pages charged (R20)",
        "arm64", "fixed", 1, (*ARENA_ONLY, _variant("arena", "no_uncharge")),
        r"^I13 ",
    ),
    SeededBug(
        "no-break-before-make",
        "the scratch page is replaced without a flush between clear and set (R4, arm64)",
        "arm64", "fixed", 1, (*ARENA_ONLY, _variant("arena", "no_break_before_make")),
        r"^I10 ",
    ),
    SeededBug(
        "ad-bits-livelock",
        "stray Accessed/Dirty bits in a none PTE: the kernel fault refaults forever (R16)",
        "x86", "fixed", 1, ARENA_ONLY,
        r"^I16 .* in arena\.kernel_access ",
    ),
    SeededBug(
        "scx-single-retry",
        "scx_arena_alloc retries once after growing the pool (R25)",
        "x86", "fixed", 2, (_variant("scx", "single_retry"),),
        r"^I16 scx_arena_alloc failed although",
    ),
    SeededBug(
        "genpool-unlocked-claim",
        "gen_pool_alloc claims bits with a plain store (R23)",
        "x86", "fixed", 2, (_variant("scx", "unlocked_claim"),),
        r"^I17 overlapping gen_pool grants",
    ),
    SeededBug(
        "genpool-free-keeps-bits",
        "gen_pool_free gives bytes back but leaves the bits set (R23)",
        "arm64", "fixed", 1, (_variant("scx", "free_keeps_bits"),),
        r"^I17 ",
    ),
    SeededBug(
        "cmask-unchecked-set",
        "cmask_set without the range check sets padding bits (I18)",
        "arm64", "fixed", 1, (_variant("scx", "cmask_unchecked"),),
        r"^I18 cmask helper set a cmask padding bit",
    ),
)

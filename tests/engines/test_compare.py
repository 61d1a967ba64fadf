"""``fuzzkit compare`` separates a bug only the design variant has from a bug of the baseline.

The variant is the clear callback without the scratch skip (tests/variants/arena_clear.py:
freeing a scratched slot frees the scratch page, I1); the baseline bug is the merged
revision's unallocatable slot (R4, I16), which the variant leaves alone. One hypothesis
campaign of 300 examples per side, seed 8, on arm64 merged with one CPU and the arena's
plugins finds both bugs with the variant (I16 at its 37th example, I1 at its 84th) and the
I16 bug without it (at its 47th). arm64, because on x86 the stray A/D bit livelocks (R16) of
three ops compete for the same budget and land on either side with the seed: the test is
about attribution (the engines' budgets for these bugs are in test_engines_find_bugs.py)."""

from __future__ import annotations

import json

import pytest

from fuzzkit.cli import main
from fuzzkit.compare import split_flags

NO_SCRATCH_SKIP = "variants.arena_clear:no_scratch_skip"
ARENA_ONLY = ["no:struct_ops", "no:scx"]
UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (arm64, merged)"


def test_compare_separates_a_variant_bug_from_a_baseline_bug(capsys: pytest.CaptureFixture[str]) -> None:
    flags = [arg for f in [*ARENA_ONLY, NO_SCRATCH_SKIP] for arg in ("-p", f)]
    argv = ["compare", *flags, "--engine", "hypothesis", "--arch", "arm64", "--revision", "merged"]
    code = main([*argv, "--cpus", "1", "--runs", "300", "--seeds", "1", "--seed", "8", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1, "the variant found a bug the baseline did not"
    assert out["variant"] == [NO_SCRATCH_SKIP] and out["seeds"] == [8]
    where = {b["title"]: b["where"] for b in out["bugs"]}
    assert where[UNALLOCATABLE] == "in both", where
    mine = [t for t, w in where.items() if w == "only with the variant"]
    assert mine and all(t.startswith("I1 scratch page freed") for t in mine), where
    assert all(t.endswith(f", needs {NO_SCRATCH_SKIP}") for t in mine), "attributed to the variant"
    assert "only in the baseline" not in where.values()
    for bug in out["bugs"]:
        assert set(bug["variant"]) == {"8"}, "the variant's campaign found every bug"
        assert 0 < bug["variant"]["8"] <= 300
    [unallocatable] = [b for b in out["bugs"] if b["title"] == UNALLOCATABLE]
    assert 0 < unallocatable["baseline"]["8"] <= 300


def test_the_baseline_leaves_out_the_variant_and_keeps_the_other_flags() -> None:
    variant, baseline = split_flags([*ARENA_ONLY, NO_SCRATCH_SKIP])
    assert variant == [NO_SCRATCH_SKIP] and baseline == ARENA_ONLY


def test_compare_without_a_variant_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "-p", "no:scx", "--runs", "1", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a design variant" in err[0], err

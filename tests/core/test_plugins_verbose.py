"""``fuzzkit plugins --verbose``: the contract in force, from the registry."""

from __future__ import annotations

import json

import pytest

from fuzzkit.cli import main


def test_verbose_json_spells_out_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json", "--verbose"]) == 0
    contract = json.loads(capsys.readouterr().out)["contract"]
    assert contract["ops"]["arena.alloc"]["args"]["page_cnt"] == "int 0..4096 (default 1)"
    assert contract["ops"]["arena.kernel_access"]["args"]["arena"] == "arena handle (< 4)"
    band = contract["primitives"]["arena_in_recovery_band"]
    assert band["signature"] == "(m: Machine, arena: Arena, addr: int) -> bool" and band["plugin"] == "arena"
    assert contract["primitives"]["apply_range_set_cb"]["summary"].keys() == {"merged", "fixed"}
    assert contract["primitives"]["kfence"]["kind"] == "fault stage"
    x86 = [(s["stage"], s["provided_by"]) for s in contract["fault_paths"]["x86"]]
    assert x86 == [
        ("exception_table_fixup", "core"),
        ("prefetch_check", "x86"),
        ("kfence", "core"),
        ("bpf_arena_handle_page_fault", "arena"),
    ]
    assert contract["fault_paths"]["arm64"][1]["kinds"] == ["translation"]
    assert contract["injection_points"]["stream_capacity"]["plugin"] == "arena"
    assert contract["invariants"]["I10/break_before_make"]["arch"] == "arm64"
    assert list(contract["revisions"]) == ["merged", "fixed"]


def test_verbose_text_shows_a_replacement_and_a_missing_stage(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["-p", "no:arena", "-p", "no:scx", "-p", "no:struct_ops"]
    assert main([*flags, "-p", "variants.replaceable:no_kfence", "plugins", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "kfence(m: Machine, cpu: Cpu, fault: Fault) -> Steps  [core] (fault stage)" in out
    assert "replaced by variants.replaceable:no_kfence: no KFENCE" in out
    assert "4. bpf_arena_handle_page_fault  (faults: not_present)  [not loaded, skipped]" in out
    assert "revisions:\n  (none)" in out
    assert "ops:\n" in out

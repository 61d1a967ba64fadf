"""struct_ops maps and callbacks (R21), cid-form registration (R22), and the frames a
callback puts on the stack for the fault handler's walk (R15)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fuzzkit_arena.arena import BpfProg
from helpers import ARCHES, Op, program, run, slot_state
from scx_helpers import REG, the_arena, the_map

from fuzzkit.cli import main as fuzzkit_main
from fuzzkit.explore import explore
from fuzzkit.runner import Session

TWO_ARENAS: list[Op] = [
    ("arena.create", {"max_entries": 16}),
    ("arena.create", {"max_entries": 16}),
]


def load(layout: str, *, other: int = 1) -> Op:
    return ("struct_ops.load", {"arena": 0, "other": other, "layout": layout})


def call(member: int = 0, **args: Any) -> Op:
    return ("struct_ops.call", {"map": 0, "member": member, **args})


# -- R21 ------------------------------------------------------------------------------------------


def test_R21_for_each_prog_visits_each_member_once_and_skips_null_members(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, load("A,-,B"), ("struct_ops.load", {"arena": 0, "layout": "A"})])
    m = r.machine
    for index, expected in ((0, 3), (1, 1)):
        st_map = the_map(r, index)
        seen: list[BpfProg] = []

        def visit(prog: BpfProg, seen: list[BpfProg] = seen) -> int:
            seen.append(prog)
            return 0

        assert m.k.bpf_struct_ops_for_each_prog(m, m.cpus[0], st_map, visit) == 0
        assert len(seen) == expected and len(set(map(id, seen))) == expected
        assert seen == [p for p in st_map.links if p is not None]


def test_R21_for_each_prog_stops_at_the_first_non_zero_return(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, load("A,-,B")])
    m = r.machine
    seen: list[str] = []

    def cb(prog: BpfProg) -> int:
        seen.append(prog.name)
        return -22 if len(seen) == 2 else 0

    assert m.k.bpf_struct_ops_for_each_prog(m, m.cpus[0], the_map(r), cb) == -22
    assert seen == ["struct_ops0.set_cmask", "struct_ops0.enqueue"]


def test_R21_prog_arena_is_the_programs_arena_or_null_and_shared_by_subprograms(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, load("A,-,B")])
    m, st_map = r.machine, the_map(r)
    arenas = [m.k.bpf_prog_arena(m, m.cpus[0], p) for p in st_map.links]
    assert arenas == [the_arena(r, 0), None, the_arena(r, 1)]
    subs = [m.k.bpf_prog_arena(m, m.cpus[0], s) for s in st_map.subs]
    assert subs == arenas


def test_R21_arena_map_kern_vm_start_is_the_kernel_address_of_offset_zero(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, ("arena.alloc", {"arena": 1, "addr": "fixed", "pgoff": 0})])
    m = r.machine
    for index in (0, 1):
        arena = the_arena(r, index)
        kbase = m.k.bpf_arena_map_kern_vm_start(m, m.cpus[0], arena)
        assert kbase == arena.kbase == arena.kaddr(arena.uaddr(0))
    assert m.ptes.get(the_arena(r, 1).kbase >> 12, 0), "the page at offset 0 is mapped at kern_vm_start"


def test_R21_loaded_map_keeps_its_arena_until_unloaded(session: Session) -> None:
    ops: list[Op] = [
        ("arena.create", {"max_entries": 16}),
        ("struct_ops.load", {"arena": 0}),
        ("arena.destroy", {"arena": 0}),
    ]
    r = run(session, ops)
    assert not the_arena(r).destroyed and not the_arena(r).scratch.freed
    r = run(session, [*ops, ("struct_ops.unload", {"map": 0})])
    assert r.finding is None and r.results[3] == 0
    assert the_arena(r).destroyed and the_arena(r).scratch.freed


def test_R21_unload_is_refused_while_a_scheduler_uses_the_map(session: Session) -> None:
    r = run(session, [*REG, (0, "struct_ops.unload", {"map": 0})])
    assert r.results[3] == "EBUSY" and not the_map(r).unloaded
    r = run(session, [*REG, (0, "scx.unreg", {"sched": 0}), (0, "struct_ops.unload", {"map": 0})])
    assert r.results[4] == 0 and the_map(r).freed


# -- R22 ------------------------------------------------------------------------------------------


def test_R22_cid_registration_refuses_two_arenas_with_a_reason(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, load("A,B"), ("scx.reg_cid", {"map": 0})])
    assert r.finding is None
    assert r.results[3] == "EINVAL: cid-form scheduler uses multiple arena maps"
    assert not r.machine.handles.get("sched") and the_map(r).attached is None
    assert the_arena(r).nr_pages == 0, "refused before any arena page was claimed"


def test_R22_cid_registration_refuses_a_map_without_arena(session: Session) -> None:
    r = run(session, [*TWO_ARENAS, load("-,-"), ("scx.reg_cid", {"map": 0})])
    assert r.results[3] == "EINVAL: cid-form scheduler uses no arena map"
    assert not r.machine.handles.get("sched")


@pytest.mark.parametrize("layout", ["A", "A,-", "-,A", "A,A", "A,-,B"])
def test_R22_one_arena_across_members_registers(session: Session, layout: str) -> None:
    # "B" names arena 0 as well here: one arena, however many programs use it.
    r = run(session, [*TWO_ARENAS, load(layout, other=0), ("scx.reg_cid", {"map": 0})])
    assert r.finding is None and r.results[3] == 0
    sch = r.machine.handles["sched"][0]
    assert sch.arena is the_arena(r, 0) and sch.arena_kern_base == the_arena(r, 0).kbase
    assert the_map(r).attached is sch


def test_R22_refused_map_leaves_room_for_a_good_one_and_one_scheduler_at_a_time(session: Session) -> None:
    ops: list[Op] = [
        *TWO_ARENAS,
        load("A,B"),
        load("A,-"),
        ("scx.reg_cid", {"map": 0}),
        ("scx.reg_cid", {"map": 1}),
        ("scx.reg_cid", {"map": 1}),
    ]
    r = run(session, ops)
    assert [r.results[i] for i in (4, 5, 6)] == [
        "EINVAL: cid-form scheduler uses multiple arena maps",
        0,
        "EBUSY",
    ]


# -- callbacks: kernel > main program > subprogram > kfunc > kernel (R15) --------------------------


def _reports(r: Any, member: int = 0) -> list[str]:
    lines: list[str] = the_map(r).links[member].stream.lines
    return lines


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_callback_kfunc_fault_walks_past_kfunc_and_subprogram_to_the_main_program(
    session: Session, arch: str
) -> None:
    r = run(
        session,
        [("arena.create", {}), load("A,-"), call(via="sub", access="kfunc_load", pgoff=3)],
        arch=arch,
    )
    assert r.finding is None and r.results[2] == 0
    assert slot_state(r, 0, 3) == "SCRATCH"
    (line,) = _reports(r)
    assert line.startswith("ERROR: Arena READ access at unmapped address 0x7e0000003000 ")
    # The stack as the walk saw it, innermost first: it had to skip the kfunc and the subprogram.
    assert line.endswith("[kernel <- kfunc <- struct_ops0.set_cmask.sub <- struct_ops0.set_cmask <- kernel]")


def test_R15_callback_retried_store_reaches_the_scratch_page(session: Session) -> None:
    r = run(
        session,
        [
            ("arena.create", {}),
            load("A,-"),
            call(via="main", access="kfunc_store", pgoff=3, value=0x5A),
            call(via="sub", access="kfunc_load", pgoff=3),
        ],
    )
    assert r.results[3] == 0x5A and len(_reports(r)) == 1


def test_R15_kfunc_pointer_from_a_program_without_arena_oopses(session: Session) -> None:
    r = run(session, [("arena.create", {}), load("-,A"), call(member=0, access="kfunc_store", pgoff=3)])
    assert r.finding is None, "I6: no arena on the stack, an oops is the right outcome"
    assert r.results[2] == "oops" and slot_state(r, 0, 3) == "EMPTY"


def test_R12_callback_jited_access_to_an_empty_slot_is_fixed_up_and_reported(session: Session) -> None:
    r = run(session, [("arena.create", {}), load("A,-"), call(via="sub", access="prog_store", pgoff=5)])
    assert r.results[2] == "fixup" and slot_state(r, 0, 5) == "EMPTY"
    assert _reports(r)[0].startswith("ERROR: Arena WRITE access at unmapped address 0x7e0000005000 ")


def test_R12_jited_access_needs_an_arena_of_the_programs_own(session: Session) -> None:
    r = run(session, [("arena.create", {}), load("-,A"), call(member=0, access="prog_load")])
    assert r.results[2] == "no-arena"


def test_stream_capacity_injection_drops_the_callback_report(session: Session) -> None:
    ops = [("arena.create", {}), load("A,-"), call(access="kfunc_load", pgoff=3)]
    r = run(session, ops, inject=[("stream_capacity", 1)])
    assert r.finding is None, "I7 holds: a dropped push is capacity, not a missing report"
    stream = the_map(r).links[0].stream
    assert stream.lines == [] and stream.dropped == 1 and len(stream.attempts) == 1


@pytest.mark.parametrize("arch", ARCHES)
def test_R15_callback_install_racing_an_allocation_is_clean_in_every_schedule(
    session: Session, arch: str
) -> None:
    ops: list[Op] = [
        (0, "arena.create", {}),
        (0, "struct_ops.load", {"arena": 0, "layout": "A,-"}),
        (0, "struct_ops.call", {"map": 0, "member": 0, "via": "sub", "access": "kfunc_load", "pgoff": 2}),
        (1, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 2}),
    ]
    e = explore(session, program(ops, arch=arch, cpus=2), max_switches=3)
    assert e.exhaustive and e.found is None and e.runs > 20


# -- the plugin set ---------------------------------------------------------------------------------


def test_fuzzkit_plugins_lists_all_five_first_party_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzzkit_main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    for name in ("x86", "arm64", "arena", "struct_ops", "scx"):
        assert listed[name]["distribution"] == "fuzzkit"
    assert "bpf_struct_ops_for_each_prog" in listed["struct_ops"]["registered"]["primitives"]
    assert "struct_ops.call" in listed["struct_ops"]["registered"]["ops"]
    assert {"I17/no_bug", "I17/grants", "I17/chunks", "I18/cmask"} <= set(
        listed["scx"]["registered"]["invariants"]
    )

"""The byte codec: total, invertible, and local (small byte changes, small program changes)."""

from __future__ import annotations

import random

import pytest

from fuzzkit import ProgramError
from fuzzkit.engines.codec import (
    ARRIVAL_NEAR,
    COUNT_WIDE,
    INJECT_TAG,
    MAX_COUNT,
    MAX_OPS,
    REUSE_BYTE,
    SWITCH_TAG,
    Codec,
    reuses,
)
from fuzzkit.generate import random_program
from fuzzkit.program import OpCall, Program, resolve
from fuzzkit.runner import Session


@pytest.fixture(scope="module")
def codec(session: Session) -> Codec:
    return Codec(session.kernel("x86", "fixed", 2))


def test_decode_of_encode_is_identity(codec: Codec) -> None:
    rng = random.Random(7)
    for _ in range(200):
        prog = random_program(codec.kernel, rng, rng.randrange(1, 40))
        prog.switches = sorted({(rng.randrange(1, 400), rng.randrange(2)) for _ in range(3)})
        prog.switches = [s for i, s in enumerate(prog.switches) if i == 0 or s[0] > prog.switches[i - 1][0]]
        prog.inject = [("alloc_page", rng.randrange(1, 9)), ("arena_spin_lock", 3)]
        assert codec.decode(codec.encode(prog)) == prog
    # Counts of one byte and of three, at the edges of each width.
    wide = Program(
        arch="x86", revision="fixed", cpus=2, ops=codec.decode(bytes(18)).ops[:1],
        switches=[(1, 1), (COUNT_WIDE, 0), (COUNT_WIDE + 1, 1), (70_000, 0), (MAX_COUNT, 1)],
        inject=[("alloc_page", COUNT_WIDE + 1), ("alloc_page", MAX_COUNT)],
    )  # fmt: skip
    assert codec.decode(codec.encode(wide)) == wide


def test_random_switches_and_injections_land_where_runs_reach(codec: Codec) -> None:
    # A program of 32 ops runs about a hundred steps and reaches an injection point a few
    # times: a random count must usually be that small, or mutations waste their runs.
    rng = random.Random(3)
    steps, nths = [], []
    for _ in range(300):
        prog = codec.decode(bytes(rng.randrange(256) for _ in range(200)))
        steps += [s for s, _ in prog.switches]
        nths += [n for _, n in prog.inject]
    assert steps and nths
    assert sum(s <= COUNT_WIDE for s in steps) / len(steps) > 0.5
    assert sum(n <= COUNT_WIDE for n in nths) / len(nths) > 0.85
    # Arrivals are fewer than steps (at most 15 at any point in nine runs in ten), and the
    # first ones, which every run reaching a point has, come most often.
    assert sum(n <= ARRIVAL_NEAR for n in nths) / len(nths) > 0.9
    assert sum(n == 1 for n in nths) / len(nths) > 0.1
    assert sum(n <= 4 for n in nths) / len(nths) > 0.4


def test_a_wide_index_in_the_reuse_range_repeats_an_earlier_value(codec: Codec) -> None:
    """Two ops meeting on one page: the free's offset repeats the allocation's."""
    ops = codec.ops
    alloc, free = ops.index(codec.kernel.ops["arena.alloc"]), ops.index(codec.kernel.ops["arena.free"])
    pgoff = codec.kernel.ops["arena.alloc"].args["pgoff"]
    assert reuses(pgoff) and codec.kernel.ops["arena.free"].args["pgoff"] == pgoff
    page = pgoff.index(4242).to_bytes(3, "little")

    def record(op: int, pgoff_bytes: bytes) -> bytes:
        spec = ops[op]
        out = bytearray((op, 0))
        for name, dom in spec.args.items():
            width = max(1, ((dom.size - 1).bit_length() + 7) // 8)
            out += pgoff_bytes if name == "pgoff" else bytes(width)
        return bytes(out)

    reuse = bytes((0, 0, REUSE_BYTE))  # low byte 0: the first earlier value
    prog = codec.decode(bytes((0,)) + record(alloc, page) + record(free, reuse))
    assert [c.args["pgoff"] for c in prog.ops] == [4242, 4242]
    # With nothing drawn before, the same bytes are an ordinary index.
    alone = codec.decode(bytes((0,)) + record(free, reuse))
    assert alone.ops[0].args["pgoff"] == pgoff.at((REUSE_BYTE << 16) % pgoff.size)


def test_any_bytes_decode_to_a_valid_program(codec: Codec) -> None:
    rng = random.Random(11)
    for _ in range(500):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        prog = codec.decode(data)
        resolve(prog, codec.kernel)  # raises on anything invalid
        assert len(prog.ops) <= MAX_OPS


def test_zero_bytes_mean_defaults(codec: Codec) -> None:
    first = codec.ops[0]
    prog = codec.decode(bytes(1 + 1 + 16))
    assert prog.ops[0] == OpCall(0, first.id, {n: d.base() for n, d in first.args.items()})


def test_one_flipped_bit_outside_a_tag_changes_one_op(codec: Codec) -> None:
    # A tag byte names the op and so the record's length: flipping it may reframe what
    # follows. Every other byte (CPU, argument indexes) touches exactly one op.
    base = Program(
        arch="x86", revision="fixed", cpus=2, ops=[OpCall(0, "arena.create"), OpCall(1, "arena.alloc")]
    )
    data = bytearray(codec.encode(base))
    decoded = codec.decode(bytes(data))
    # Byte 0 is the swarm byte, which renames every op: a tag of tags.
    tags = {0, 1, len(codec.encode(Program(ops=base.ops[:1])))}
    for i in set(range(len(data))) - tags:
        mutated = bytearray(data)
        mutated[i] ^= 1
        prog = codec.decode(bytes(mutated))
        assert len(prog.ops) == 2
        assert sum(a != b for a, b in zip(prog.ops, decoded.ops, strict=True)) == 1, f"byte {i}"


def test_truncated_and_malformed_records_are_dropped_not_fatal(codec: Codec) -> None:
    assert codec.decode(b"").ops == []
    # Each input begins with its swarm byte; 0 is the configuration holding everything.
    assert codec.decode(bytes((0, SWITCH_TAG, 4, 1, SWITCH_TAG, 2, 0))).switches == [(5, 1)]
    twice = bytes((0, INJECT_TAG, 0, 0, INJECT_TAG, 0, 0))
    assert codec.decode(twice).inject == [(codec.kernel.injection_points[0], 1)]
    # A wide count cut short reads its missing bytes as zero.
    assert codec.decode(bytes((0, SWITCH_TAG, COUNT_WIDE))).switches == [(COUNT_WIDE + 1, 0)]


def test_encode_refuses_what_it_cannot_represent(codec: Codec) -> None:
    with pytest.raises(ProgramError, match="not in this op table"):
        codec.encode(Program(ops=[OpCall(0, "nope.op")]))
    with pytest.raises(ProgramError, match="more than the codec's"):
        codec.encode(Program(ops=[OpCall(0, "arena.create")] * (MAX_OPS + 1)))
    with pytest.raises(ProgramError, match=r"switch step \d+ is beyond the codec's"):
        codec.encode(Program(ops=[OpCall(0, "arena.create")], switches=[(MAX_COUNT + 1, 1)]))


def test_dictionary_has_every_op_header_and_injection_point(codec: Codec) -> None:
    entries = codec.dictionary()
    assert bytes((0, 1)) in entries and bytes((len(codec.ops) - 1, 0)) in entries
    assert bytes((INJECT_TAG, len(codec.kernel.injection_points) - 1)) in entries


# -- swarm configurations (Groce et al., ISSTA 2012) ------------------------------------------------


def test_swarm_configurations_hold_about_half_and_what_their_ops_need(codec: Codec) -> None:
    from fuzzkit.domains import Handle

    ops, points = codec.configs[0]
    assert ops == list(range(len(codec.ops))) and points == list(range(len(codec.kernel.injection_points)))
    creators = {op.creates for op in codec.ops if op.creates}
    sizes = []
    for held, _ in codec.configs[1:]:
        ids = {codec.ops[i].id for i in held}
        for i in held:
            for dom in codec.ops[i].args.values():
                if isinstance(dom, Handle) and dom.kind in creators:
                    assert any(codec.ops[j].creates == dom.kind for j in held), (ids, dom.kind)
        sizes.append(len(held))
    assert min(sizes) < len(codec.ops) / 2 < max(sizes) < len(codec.ops)
    # Every op and every injection point is in some narrow configuration, and every op but
    # the creators (which most others need) is left out of some.
    for i, op in enumerate(codec.ops):
        if op.creates:
            continue
        assert 50 < sum(i in held for held, _ in codec.configs[1:]) < 250
    for p in range(len(codec.kernel.injection_points)):
        assert 50 < sum(p in held for _, held in codec.configs[1:]) < 250


def test_an_input_draws_only_from_its_swarm_configuration(codec: Codec) -> None:
    rng = random.Random(5)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        prog = codec.decode(data)
        ops, points = codec.configs[data[0]]
        assert {c.op for c in prog.ops} <= {codec.ops[i].id for i in ops}
        assert {p for p, _ in prog.inject} <= {codec.kernel.injection_points[i] for i in points}


def test_encode_writes_the_narrowest_configuration_that_holds_the_program(codec: Codec) -> None:
    def call(cpu: int, op: str) -> OpCall:
        return OpCall(cpu, op, {n: d.base() for n, d in codec.kernel.ops[op].args.items()})

    prog = Program(
        arch="x86", revision="fixed", cpus=2,
        ops=[call(0, "arena.create"), call(1, "arena.alloc"), call(0, "arena.free")],
        inject=[("pte_erratum_bits", 1)],
    )  # fmt: skip
    data = codec.encode(prog)
    ops, _ = codec.configs[data[0]]
    assert data[0] != 0 and len(ops) < len(codec.ops) / 2
    assert codec.decode(data) == prog
    narrower = [c for c, (o, p) in enumerate(codec.configs) if len(o) < len(ops)]
    held = {codec.ops.index(codec.kernel.ops[c.op]) for c in prog.ops}
    erratum = codec.kernel.injection_points.index("pte_erratum_bits")
    assert not [c for c in narrower if held <= set(codec.configs[c][0]) and erratum in codec.configs[c][1]]

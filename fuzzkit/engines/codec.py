"""The byte codec: any byte string is a valid program, and every program has bytes.

libFuzzer mutates bytes, so the encoding is a flat sequence of small fixed-shape records in
which one byte changed is one thing changed, after one header byte:

* the **swarm byte** (swarm testing, Groce et al., ISSTA 2012) names the configuration the
  input draws from: 0 is every op and every injection point; each other value a fixed
  pseudo-random half of the ops (with, transitively, the ops creating the handles they take)
  and of the injection points, hardware events included (:func:`swarm`). An input is then a
  narrow configuration, never chosen by a user, that mutations keep: a mutated tag names an
  op of the same configuration. Ops that dilute or mask a bug are left out of most inputs
  somewhere in the corpus;
* an **op record** is a tag byte below ``SWITCH_TAG`` naming the op (``tag % len(ops)``,
  ops of the configuration in op-table order), a CPU byte (``% cpus``), then each argument
  in declaration order as a little-endian index into its domain, as wide as the domain
  needs (1-4 bytes).
  Index 0 is the domain's default and nearby indexes are nearby values (see
  ``fuzzkit.domains``), so a flipped low bit nudges an argument. In a domain of two bytes
  or more (a page offset, a count) whose values leave room, an index whose top byte is
  ``REUSE_BYTE`` or above instead repeats a value an earlier argument of the input took
  from the same domain (the low byte picks which): most bugs need two ops to meet on one
  page, which two independent offsets out of a million do about never;
* a **switch record** (``SWITCH_TAG``..``INJECT_TAG - 1``): step - 1 as a *count* (below)
  and a CPU byte;
* an **inject record** (``INJECT_TAG``..0xFF): injection point (``% len(points)``, points of
  the configuration; a configuration without any drops the record) and nth - 1 as an
  *arrival* (below).

A count is one byte below ``COUNT_WIDE`` and three bytes above it (up to about a million).
Steps that matter are small (a program of 32 ops runs about a hundred steps), so a random or
mutated byte almost always names one the run reaches; a fixed two-byte field put nearly
every random switch past the end of the run. Arrivals at an injection point are fewer still:
measured over 400 random 32-op programs of the full op table, the median run arrives 0-8
times at each point and nine runs in ten at most 15 times (``stream_capacity``; stray A/D
bits at most 4 times, and only in the runs that free a mapped page). So an arrival below
``ARRIVAL_NEAR`` (15) is one byte, the smaller of its two nibbles, and four bytes (a byte
from ``COUNT_WIDE`` on, then three) for anything larger: a random inject record names the
first arrival one time in eight and one of the first four nearly one time in two, where a
byte up to 240 reached one about one time in thirty.

Records may come in any order; a truncated record takes defaults for what is missing, a
switch whose step does not increase and a repeated injection are dropped, so decoding is
total. :func:`encode` writes the narrowest configuration that holds the program's ops and
injection points, then ops, then switches, then injections, and
``decode(encode(p)) == p`` for every program within the codec's ranges (at most
``MAX_OPS`` ops, steps and nths up to ``MAX_COUNT``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from fuzzkit.domains import Domain, Handle
from fuzzkit.errors import ProgramError
from fuzzkit.machine.core import Call
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel, OpSpec

SWITCH_TAG = 0xE0
INJECT_TAG = 0xF0
MAX_OPS = 64
#: Changes whenever the same bytes decode to another program: a corpus records it.
CODEC_VERSION = 3
#: The chance that a swarm configuration holds a given op or injection point: Groce et al.'s
#: coin flip, which leaves out about half, so any three ops are together in one
#: configuration in eight and alone with few others in many.
SWARM_KEEP = 0.5
SWARM_CONFIGS = 256
#: Counts from this byte on take two more bytes.
COUNT_WIDE = 0xF0
MAX_COUNT = COUNT_WIDE + (0x100 - COUNT_WIDE) * 0x10000
#: One-byte arrivals name arrivals 1..ARRIVAL_NEAR; larger ones take three more bytes.
ARRIVAL_NEAR = 15
#: An argument index of two bytes or more whose top byte is this or above repeats an
#: earlier value of its domain: a quarter of random indexes.
REUSE_BYTE = 0xC0


def _count(data: bytes, i: int) -> tuple[int, int]:
    """The count at ``data[i]`` (of zero-padded data) and the index after it."""
    b = data[i]
    if b < COUNT_WIDE:
        return b, i + 1
    return COUNT_WIDE + ((b - COUNT_WIDE) << 16 | int.from_bytes(data[i + 1 : i + 3], "little")), i + 3


def _count_bytes(value: int, what: str) -> bytes:
    if not 0 <= value < MAX_COUNT:
        raise ProgramError(f"{what} {value + 1} is beyond the codec's {MAX_COUNT}")
    if value < COUNT_WIDE:
        return bytes((value,))
    wide = value - COUNT_WIDE
    return bytes((COUNT_WIDE + (wide >> 16),)) + (wide & 0xFFFF).to_bytes(2, "little")


def _arrival(data: bytes, i: int) -> tuple[int, int]:
    """The arrival (nth - 1) at ``data[i]`` (of zero-padded data) and the index after it."""
    b = data[i]
    if b < COUNT_WIDE:
        return min(b & 0xF, b >> 4), i + 1
    return ARRIVAL_NEAR + int.from_bytes(data[i + 1 : i + 4], "little"), i + 4


def _arrival_bytes(value: int) -> bytes:
    if not 0 <= value < MAX_COUNT:
        raise ProgramError(f"injection arrival {value + 1} is beyond the codec's {MAX_COUNT}")
    if value < ARRIVAL_NEAR:
        return bytes((value << 4 | value,))
    return bytes((COUNT_WIDE,)) + (value - ARRIVAL_NEAR).to_bytes(3, "little")


def _width(dom: Domain) -> int:
    return max(1, ((dom.size - 1).bit_length() + 7) // 8)


#: Domains up to this many values decode through a precomputed table.
TABLE_LIMIT = 4096


def reuses(dom: Domain) -> bool:
    """Whether indexes into ``dom`` carry the reuse range (see ``REUSE_BYTE``): two bytes or
    more, with every value still below it."""
    width = _width(dom)
    return width >= 2 and dom.size <= REUSE_BYTE << 8 * (width - 1)


def _arguments(
    op: OpSpec, keys: dict[Domain, int]
) -> tuple[Callable[[bytes, int, dict[int, list[Any]]], dict[str, Any]], int]:
    """A straight-line decoder of ``op``'s arguments, ``(padded data, index, seen) ->
    args``, and their width in bytes. It reads each argument's little-endian index without
    slicing or a loop; the data is zero-padded, and a byte past the input reading as zero is
    what a truncated record means. Small domains are a subscript of a precomputed tuple (no
    call per argument), large ones their own ``at``. ``seen`` holds, per domain that
    :func:`reuses` (numbered by ``keys``), the values the input's arguments took so far."""
    env: dict[str, Any] = {}
    lines, items, width = [], [], 0
    for k, (name, dom) in enumerate(op.args.items()):
        raw = " | ".join(f"d[i + {width + b}]" + (f" << {8 * b}" if b else "") for b in range(_width(dom)))
        index = "r" if dom.size == 1 << 8 * _width(dom) else f"r % {dom.size}"
        if dom.size <= TABLE_LIMIT:
            env[f"v{k}"] = tuple(dom.at(i) for i in range(dom.size))
            value = f"v{k}[{index}]"
        else:
            env[f"v{k}"] = dom.at
            value = f"v{k}({index})"
        lines.append(f"r = {raw}")
        if reuses(dom):
            key = keys.setdefault(dom, len(keys))
            limit = REUSE_BYTE << 8 * (_width(dom) - 1)
            lines += [
                f"e = seen.get({key})",
                f"if e is None: e = seen[{key}] = []",
                f"a{k} = e[d[i + {width}] % len(e)] if e and r >= {limit} else {value}",
                f"e.append(a{k})",
            ]
        else:
            lines.append(f"a{k} = {value}")
        items.append(f"{name!r}: a{k}")
        width += _width(dom)
    body = "".join(f"    {line}\n" for line in lines)
    exec(f"def arguments(d, i, seen):\n{body}    return {{{', '.join(items)}}}\n", env)
    return env["arguments"], width


def with_creators(ops: Sequence[OpSpec], chosen: set[str]) -> set[str]:
    """``chosen`` and, transitively, the ops creating the handles they take."""
    creators = {op.creates: op.id for op in ops if op.creates}
    by_id = {op.id: op for op in ops}
    out, todo = set(chosen), list(chosen)
    while todo:
        for dom in by_id[todo.pop()].args.values():
            maker = creators.get(dom.kind) if isinstance(dom, Handle) else None
            if maker is not None and maker not in out:
                out.add(maker)
                todo.append(maker)
    return out


def swarm(ops: Sequence[OpSpec], points: Sequence[str], config: int) -> tuple[list[int], list[int]]:
    """Swarm configuration ``config``: the indexes of its ops and of its injection points.
    Configuration 0 holds everything; the others are drawn from a generator seeded with the
    configuration, so they are the same in every process and every Python."""
    if config == 0:
        return list(range(len(ops))), list(range(len(points)))
    rng = random.Random(config)
    kept = {op.id for op in ops if rng.random() < SWARM_KEEP}
    kept_points = [i for i in range(len(points)) if rng.random() < SWARM_KEEP]
    kept = with_creators(ops, kept) or {op.id for op in ops}
    return [i for i, op in enumerate(ops) if op.id in kept], kept_points


class Codec:
    """The codec of one compiled kernel (its op table and injection points). The per-op
    argument decoders and the swarm configurations are compiled once here: decoding is on
    the fuzzer's hot path."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.ops: list[OpSpec] = list(kernel.ops.values())
        #: Per op: the op, its argument decoder and the width of its arguments.
        # Numbers for the domains whose values an argument may repeat (see ``REUSE_BYTE``).
        reused: dict[Domain, int] = {}
        tables = [(op, *_arguments(op, reused)) for op in self.ops]
        points = kernel.injection_points
        #: Per swarm configuration: its op indexes and injection point indexes.
        self.configs = [swarm(self.ops, points, c) for c in range(SWARM_CONFIGS)]
        #: Per swarm configuration: its op tables and its injection points.
        self._swarm = [([tables[i] for i in o], tuple(points[i] for i in p)) for o, p in self.configs]
        #: Zero bytes appended to an input: enough for the widest record.
        self._pad = bytes(max((w for *_, w in tables), default=0) + 8)

    def decode(self, data: bytes) -> Program:
        k = self.kernel
        calls, switches, inject = self.decode_run(data)
        ops = [OpCall(c.cpu, c.spec.id, c.args) for c in calls]
        return Program(
            arch=k.arch.name, revision=k.revision, cpus=k.cpus, ops=ops, switches=switches, inject=inject
        )

    def decode_run(self, data: bytes) -> tuple[list[Call], list[tuple[int, int]], list[tuple[str, int]]]:
        """What :meth:`decode` gives, as the machine takes it: calls resolved against the op
        table, switches, injections. The fuzzer's hot path: no program object is built
        unless a run finds something."""
        cpus = self.kernel.cpus
        calls: list[Call] = []
        switches: list[tuple[int, int]] = []
        inject: list[tuple[str, int]] = []
        seen: set[tuple[str, int]] = set()
        values: dict[int, list[Any]] = {}
        n = len(data)
        data += self._pad
        tables, points = self._swarm[data[0]]
        i = 1
        while i < n:
            tag = data[i]
            if tag < SWITCH_TAG:
                if len(calls) >= MAX_OPS or not tables:
                    i += 1
                    continue
                spec, arguments, width = tables[tag % len(tables)]
                calls.append(Call(len(calls), data[i + 1] % cpus, spec, arguments(data, i + 2, values)))
                i += 2 + width
            elif tag < INJECT_TAG:
                step, i = _count(data, i + 1)
                cpu = data[i] % cpus
                i += 1
                if not switches or step + 1 > switches[-1][0]:
                    switches.append((step + 1, cpu))
            else:
                point = points[data[i + 1] % len(points)] if points else None
                nth, i = _arrival(data, i + 2)
                if point is not None and (point, nth + 1) not in seen:
                    seen.add((point, nth + 1))
                    inject.append((point, nth + 1))
        return calls, switches, inject

    def config_of(self, prog: Program) -> int:
        """The swarm configuration with the fewest ops that holds every op and injection
        point of ``prog`` (0, which holds everything, when no other does)."""
        ops = {i for i, op in enumerate(self.ops) if any(c.op == op.id for c in prog.ops)}
        points = self.kernel.injection_points
        used = {points.index(p) for p, _ in prog.inject if p in points}
        fits = [c for c, (o, p) in enumerate(self.configs) if ops <= set(o) and used <= set(p)]
        return min(fits, key=lambda c: (len(self.configs[c][0]), c))

    def encode(self, prog: Program) -> bytes:
        if len(prog.ops) > MAX_OPS:
            raise ProgramError(f"{len(prog.ops)} ops is more than the codec's {MAX_OPS}")
        for call in prog.ops:
            if call.op not in self.kernel.ops:
                raise ProgramError(f"op '{call.op}' is not in this op table")
        config = self.config_of(prog)
        op_ids, point_ids = self.configs[config]
        index = {self.ops[o].id: i for i, o in enumerate(op_ids)}
        points = {self.kernel.injection_points[p]: i for i, p in enumerate(point_ids)}
        out = bytearray((config,))
        for call in prog.ops:
            op = self.kernel.ops[call.op]
            out += bytes((index[call.op], call.cpu))
            for name, dom in op.args.items():
                value = call.args.get(name, dom.base())
                out += dom.index(value).to_bytes(_width(dom), "little")
        for step, cpu in prog.switches:
            out += bytes((SWITCH_TAG,)) + _count_bytes(step - 1, "switch step") + bytes((cpu,))
        for point, nth in prog.inject:
            out += bytes((INJECT_TAG, points[point])) + _arrival_bytes(nth - 1)
        return bytes(out)

    def dictionary(self) -> list[bytes]:
        """libFuzzer ``-dict`` entries: each op's record header on each CPU, and each
        injection point's record header (as configuration 0, which holds everything, names
        them)."""
        entries = [bytes((i, cpu)) for i in range(len(self.ops)) for cpu in range(self.kernel.cpus)]
        entries += [bytes((INJECT_TAG, i)) for i in range(len(self.kernel.injection_points))]
        return entries


def write_dictionary(codec: Codec, path: str) -> None:
    lines = [f"# fuzzkit op table {codec.kernel.fingerprint}: op headers, then injection points"]
    for op_entry in codec.dictionary():
        lines.append('"' + "".join(f"\\x{b:02x}" for b in op_entry) + '"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

"""The byte codec: any byte string is a valid program, and every program has bytes.

libFuzzer mutates bytes, so the encoding is a flat sequence of small fixed-shape records in
which one byte changed is one thing changed:

* an **op record** is a tag byte below ``SWITCH_TAG`` naming the op (``tag % len(ops)``,
  ops in op-table order), a CPU byte (``% cpus``), then each argument in declaration order
  as a little-endian index into its domain, as wide as the domain needs (1-4 bytes).
  Index 0 is the domain's default and nearby indexes are nearby values (see
  ``fuzzkit.domains``), so a flipped low bit nudges an argument;
* a **switch record** (``SWITCH_TAG``..``INJECT_TAG - 1``): step - 1 as a *count* (below)
  and a CPU byte;
* an **inject record** (``INJECT_TAG``..0xFF): injection point (``% len(points)``) and
  nth - 1 as a count.

A count is one byte below ``COUNT_WIDE`` and three bytes above it (up to about a million).
Steps and arrivals that matter are small (a program of 32 ops runs about a hundred steps), so
a random or mutated byte almost always names one the run reaches; a fixed two-byte field put
nearly every random switch past the end of the run.

Records may come in any order; a truncated record takes defaults for what is missing, a
switch whose step does not increase and a repeated injection are dropped, so decoding is
total. :func:`encode` writes ops, then switches, then injections, and
``decode(encode(p)) == p`` for every program within the codec's ranges (at most
``MAX_OPS`` ops, steps and nths up to ``MAX_COUNT``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzzkit.domains import Domain
from fuzzkit.errors import ProgramError
from fuzzkit.machine.core import Call
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel, OpSpec

SWITCH_TAG = 0xE0
INJECT_TAG = 0xF0
MAX_OPS = 64
#: Counts from this byte on take two more bytes.
COUNT_WIDE = 0xF0
MAX_COUNT = COUNT_WIDE + (0x100 - COUNT_WIDE) * 0x10000


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


def _width(dom: Domain) -> int:
    return max(1, ((dom.size - 1).bit_length() + 7) // 8)


#: Domains up to this many values decode through a precomputed table.
TABLE_LIMIT = 4096


def _arguments(op: OpSpec) -> tuple[Callable[[bytes, int], dict[str, Any]], int]:
    """A straight-line decoder of ``op``'s arguments, ``(padded data, index) -> args``, and
    their width in bytes. It reads each argument's little-endian index without slicing or a
    loop; the data is zero-padded, and a byte past the input reading as zero is what a
    truncated record means. Small domains are a subscript of a precomputed tuple (no call per
    argument), large ones their own ``at``."""
    env: dict[str, Any] = {}
    items, width = [], 0
    for k, (name, dom) in enumerate(op.args.items()):
        raw = " | ".join(f"d[i + {width + b}]" + (f" << {8 * b}" if b else "") for b in range(_width(dom)))
        index = raw if dom.size == 1 << 8 * _width(dom) else f"({raw}) % {dom.size}"
        if dom.size <= TABLE_LIMIT:
            env[f"v{k}"] = tuple(dom.at(i) for i in range(dom.size))
            items.append(f"{name!r}: v{k}[{index}]")
        else:
            env[f"v{k}"] = dom.at
            items.append(f"{name!r}: v{k}({index})")
        width += _width(dom)
    exec(f"def arguments(d, i):\n    return {{{', '.join(items)}}}\n", env)
    return env["arguments"], width


class Codec:
    """The codec of one compiled kernel (its op table and injection points). The per-op
    argument decoders are compiled once here: decoding is on the fuzzer's hot path."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.ops: list[OpSpec] = list(kernel.ops.values())
        #: Per op: the op, its argument decoder and the width of its arguments.
        self._tables = [(op, *_arguments(op)) for op in self.ops]
        #: Zero bytes appended to an input: enough for the widest record.
        self._pad = bytes(max((w for *_, w in self._tables), default=0) + 8)

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
        tables, points, cpus = self._tables, self.kernel.injection_points, self.kernel.cpus
        calls: list[Call] = []
        switches: list[tuple[int, int]] = []
        inject: list[tuple[str, int]] = []
        seen: set[tuple[str, int]] = set()
        n = len(data)
        data += self._pad
        i = 0
        while i < n:
            tag = data[i]
            if tag < SWITCH_TAG:
                if len(calls) >= MAX_OPS or not tables:
                    i += 1
                    continue
                spec, arguments, width = tables[tag % len(tables)]
                calls.append(Call(len(calls), data[i + 1] % cpus, spec, arguments(data, i + 2)))
                i += 2 + width
            elif tag < INJECT_TAG:
                step, i = _count(data, i + 1)
                cpu = data[i] % cpus
                i += 1
                if not switches or step + 1 > switches[-1][0]:
                    switches.append((step + 1, cpu))
            else:
                point = points[data[i + 1] % len(points)] if points else None
                nth, i = _count(data, i + 2)
                if point is not None and (point, nth + 1) not in seen:
                    seen.add((point, nth + 1))
                    inject.append((point, nth + 1))
        return calls, switches, inject

    def encode(self, prog: Program) -> bytes:
        index = {op.id: i for i, op in enumerate(self.ops)}
        points = {p: i for i, p in enumerate(self.kernel.injection_points)}
        out = bytearray()
        if len(prog.ops) > MAX_OPS:
            raise ProgramError(f"{len(prog.ops)} ops is more than the codec's {MAX_OPS}")
        for call in prog.ops:
            if call.op not in index:
                raise ProgramError(f"op '{call.op}' is not in this op table")
            op = self.kernel.ops[call.op]
            out += bytes((index[call.op], call.cpu))
            for name, dom in op.args.items():
                value = call.args.get(name, dom.base())
                out += dom.index(value).to_bytes(_width(dom), "little")
        for step, cpu in prog.switches:
            out += bytes((SWITCH_TAG,)) + _count_bytes(step - 1, "switch step") + bytes((cpu,))
        for point, nth in prog.inject:
            out += bytes((INJECT_TAG, points[point])) + _count_bytes(nth - 1, "injection arrival")
        return bytes(out)

    def dictionary(self) -> list[bytes]:
        """libFuzzer ``-dict`` entries: each op's record header on each CPU, and each
        injection point's record header."""
        entries = [bytes((i, cpu)) for i in range(len(self.ops)) for cpu in range(self.kernel.cpus)]
        entries += [bytes((INJECT_TAG, i)) for i in range(len(self.kernel.injection_points))]
        return entries


def write_dictionary(codec: Codec, path: str) -> None:
    lines = [f"# fuzzkit op table {codec.kernel.fingerprint}: op headers, then injection points"]
    for op_entry in codec.dictionary():
        lines.append('"' + "".join(f"\\x{b:02x}" for b in op_entry) + '"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

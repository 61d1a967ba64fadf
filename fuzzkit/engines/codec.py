"""The byte codec: any byte string is a valid program, and every program has bytes.

libFuzzer mutates bytes, so the encoding is a flat sequence of small fixed-shape records in
which one byte changed is one thing changed:

* an **op record** is a tag byte below ``SWITCH_TAG`` naming the op (``tag % len(ops)``,
  ops in op-table order), a CPU byte (``% cpus``), then each argument in declaration order
  as a little-endian index into its domain, as wide as the domain needs (1-4 bytes).
  Index 0 is the domain's default and nearby indexes are nearby values (see
  ``fuzzkit.domains``), so a flipped low bit nudges an argument;
* a **switch record** (``SWITCH_TAG``..``INJECT_TAG - 1``): step (u16 + 1) and CPU;
* an **inject record** (``INJECT_TAG``..0xFF): injection point (``% len(points)``) and
  nth (u16 + 1).

Records may come in any order; a truncated record takes defaults for what is missing, a
switch whose step does not increase and a repeated injection are dropped, so decoding is
total. :func:`encode` writes ops, then switches, then injections, and
``decode(encode(p)) == p`` for every program within the codec's ranges (at most
``MAX_OPS`` ops, steps and nths up to 65536).
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzzkit.domains import Domain
from fuzzkit.errors import ProgramError
from fuzzkit.program import OpCall, Program
from fuzzkit.registry import Kernel, OpSpec

SWITCH_TAG = 0xE0
INJECT_TAG = 0xF0
MAX_OPS = 64


def _width(dom: Domain) -> int:
    return max(1, ((dom.size - 1).bit_length() + 7) // 8)


@dataclass(frozen=True)
class Codec:
    """The codec of one compiled kernel (its op table and injection points)."""

    kernel: Kernel

    @property
    def ops(self) -> list[OpSpec]:
        return list(self.kernel.ops.values())

    def decode(self, data: bytes) -> Program:
        k = self.kernel
        ops, points = self.ops, k.injection_points
        prog = Program(arch=k.arch.name, revision=k.revision, cpus=k.cpus)
        seen: set[tuple[str, int]] = set()
        i, n = 0, len(data)

        def take(width: int) -> int:
            nonlocal i
            chunk = data[i : i + width]
            i += width
            return int.from_bytes(chunk, "little")

        while i < n:
            tag = data[i]
            i += 1
            if tag < SWITCH_TAG:
                if len(prog.ops) >= MAX_OPS or not ops:
                    continue
                op = ops[tag % len(ops)]
                cpu = take(1) % k.cpus
                args = {name: dom.at(take(_width(dom))) for name, dom in op.args.items()}
                prog.ops.append(OpCall(cpu, op.id, args))
            elif tag < INJECT_TAG:
                step, cpu = take(2) + 1, take(1) % k.cpus
                if not prog.switches or step > prog.switches[-1][0]:
                    prog.switches.append((step, cpu))
            elif points:
                point, nth = points[take(1) % len(points)], take(2) + 1
                if (point, nth) not in seen:
                    seen.add((point, nth))
                    prog.inject.append((point, nth))
        return prog

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
            out += bytes((SWITCH_TAG,)) + (step - 1).to_bytes(2, "little") + bytes((cpu,))
        for point, nth in prog.inject:
            out += bytes((INJECT_TAG, points[point])) + (nth - 1).to_bytes(2, "little")
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

"""``fuzzkit import``: a ClusterFuzz testcase (the raw bytes a target crashed on) back into a
fuzzkit program file, which replay, minimize and triage then take like a local finding.

The bytes are decoded exactly as the exported target decoded them (same plugin set, focus
and op table) and run once, so the program carries the choices that run made and the
finding's title; a program of a focused target uses ops of the full table and replays
without the focus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fuzzkit.errors import ProgramError
from fuzzkit.export.target import FuzzTarget, PluginCrash
from fuzzkit.machine.core import Finding
from fuzzkit.program import Program

#: Testcases larger than this are refused: libFuzzer never grows an input past its max_len.
MAX_BYTES = 1 << 20


@dataclass
class Imported:
    program: Program
    finding: Finding | None
    #: Plugin code raised on this input (then ``finding`` is None).
    crash: PluginCrash | None = None


def import_testcase(path: Path, target: FuzzTarget) -> Imported:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ProgramError(f"{path}: {size} bytes is larger than the {MAX_BYTES} byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise ProgramError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        program, result = target.execute(data)
    except PluginCrash as crash:
        crash.program.description = f"{crash.title}; imported from {path.name} ({target.name})"
        return Imported(crash.program, None, crash)
    if result.finding is not None:
        f = result.finding
        program.description = (
            f"{f.title} (cpu{f.cpu}, step {f.step}); imported from {path.name} ({target.name})"
        )
    else:
        program.description = f"imported from {path.name} ({target.name}); no finding on replay"
    return Imported(program, result.finding)

"""What both engines share: the target being fuzzed, its corpus folder (stamped with the op
table it was made with), and :func:`save_program`, which turns findings into program files.

A target is (arch, revision, cpus, plugin set, optional op focus); the plugin set and focus
are identified by the op-table fingerprint. A corpus made with another op table would be
misread byte for byte, so it is refused with a message saying how to proceed (DESIGN principle 8).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fuzzkit.domains import Handle
from fuzzkit.engines.codec import CODEC_VERSION
from fuzzkit.errors import ConfigError
from fuzzkit.files import slug as slug  # one naming for finding files and bundles
from fuzzkit.files import temp_file
from fuzzkit.machine.core import Call
from fuzzkit.program import Program
from fuzzkit.registry import Kernel
from fuzzkit.runner import Session

STAMP = "fuzzkit-corpus.json"


@dataclass(frozen=True)
class Target:
    arch: str
    revision: str
    cpus: int
    #: Op-id patterns (``scx.*``) a focused campaign draws from, as syzkaller's
    #: ``enable_syscalls``; empty for the whole op table. See :func:`focus`.
    ops: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        base = f"{self.arch}-{self.revision}-{self.cpus}cpu"
        focus = (re.sub(r"[^A-Za-z0-9.]+", "_", p.replace("*", "any")) for p in self.ops)
        return base + "".join("-" + f for f in focus)

    def kernel(self, session: Session) -> Kernel:
        return focus(session.kernel(self.arch, self.revision, self.cpus), self.ops)


def focus(kernel: Kernel, patterns: Sequence[str]) -> Kernel:
    """``kernel`` with an op table of the ops matching ``patterns`` (``fnmatch``, on op ids)
    and, transitively, the ops creating the handles they take: a campaign on one subsystem
    or one replaced primitive spends its executions there, not on the whole table. The
    fingerprint is the focused table's, so corpora of different focuses never mix. Programs
    found this way use ops of the full table and replay without the focus."""
    if not patterns:
        return kernel
    chosen: set[str] = set()
    for pattern in patterns:
        matched = fnmatch.filter(kernel.ops, pattern)
        if not matched:
            raise ConfigError(f"--ops '{pattern}' matches no op; ops: {', '.join(kernel.ops)}")
        chosen.update(matched)
    creators = {op.creates: op.id for op in kernel.ops.values() if op.creates}
    todo = list(chosen)
    while todo:
        for dom in kernel.ops[todo.pop()].args.values():
            maker = creators.get(dom.kind) if isinstance(dom, Handle) else None
            if maker is not None and maker not in chosen:
                chosen.add(maker)
                todo.append(maker)
    ops = {op_id: spec for op_id, spec in kernel.ops.items() if op_id in chosen}
    digest = hashlib.sha256(f"{kernel.fingerprint} {' '.join(ops)}".encode()).hexdigest()[:16]
    return dataclasses.replace(kernel, ops=ops, fingerprint=digest)


def trusted_calls(program: Program, kernel: Kernel) -> list[Call]:
    """Calls of a program the codec or a strategy built: valid by construction, so the
    per-argument validation of :func:`fuzzkit.program.resolve` is skipped (hot path)."""
    ops = kernel.ops
    return [Call(i, c.cpu, ops[c.op], c.args) for i, c in enumerate(program.ops)]


def prepare_corpus(path: Path, kernel: Kernel) -> None:
    """Create or check the corpus folder's stamp."""
    path.mkdir(parents=True, exist_ok=True)
    stamp = path / STAMP
    want = {
        "op_table": kernel.fingerprint,
        "arch": kernel.arch.name,
        "revision": kernel.revision,
        "cpus": kernel.cpus,
        "codec": CODEC_VERSION,
    }
    if stamp.exists():
        try:
            have = json.loads(stamp.read_text())
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8, not JSON
            raise ConfigError(f"{stamp}: unreadable corpus stamp ({exc}); remove it to start afresh") from exc
        if have != want:
            raise ConfigError(
                f"{path}: corpus was made for {have}, this run is {want}. Its inputs would decode "
                f"to different programs; fuzz with another --corpus, or delete the folder."
            )
        return
    stamp.write_text(json.dumps(want, indent=2) + "\n")


def save_program(folder: Path, name: str, program: Program) -> Path:
    """Write ``program`` to ``folder/name`` atomically unless that file exists (a concurrent
    writer or an earlier campaign got there first: the file already on disk is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.exists():
        return path
    fd, tmp = temp_file(folder, ".finding-")  # the umask's mode, not mkstemp's 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(program.dumps())
        os.link(tmp, path)  # atomic, and fails rather than overwrite a concurrent writer
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path

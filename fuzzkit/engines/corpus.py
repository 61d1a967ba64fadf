"""Keeping a grown atheris corpus small: libFuzzer's own merge.

A campaign's corpus keeps every input that once added coverage, so after a night it holds
several times the inputs that still matter. ``fuzzkit corpus prune`` keeps the smallest
subset with the same coverage (``-merge=1`` into an empty folder, then swapped in);
``fuzzkit corpus merge DIR...`` adds to a target's corpus the inputs of other folders that
bring new coverage (another machine's corpus, a ClusterFuzz corpus). Both run the target's
worker exactly as a campaign does (same op table, plugins and instrumentation), through the
launcher libFuzzer re-executes for its crash-resistant merge, and refuse to touch a corpus
while a campaign's worker holds one of the target's slots.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fuzzkit.engines.atheris_engine import DICTIONARY, LAUNCHER, AtherisEngine, artifacts
from fuzzkit.engines.campaign import STAMP, Target
from fuzzkit.engines.worker import Job, worker_env
from fuzzkit.errors import ConfigError, EngineFailure
from fuzzkit.runner import Session

#: Files of a corpus folder that are not inputs.
KEPT = (STAMP, DICTIONARY)


@dataclass(frozen=True)
class Merged:
    corpus: Path
    before: int
    after: int
    log: Path


def inputs(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and p.name not in KEPT)


def merge(
    session: Session,
    target: Target,
    *,
    corpora: Path,
    reports: Path,
    sources: Sequence[Path] = (),
    plugin_flags: Sequence[str] = (),
) -> Merged:
    """Prune the target's corpus (no ``sources``) or merge ``sources`` into it."""
    engine = AtherisEngine()
    job = Job("atheris", target, 0, 1, None, None, reports.resolve(), (corpora / target.name).resolve(),
              tuple(plugin_flags))  # fmt: skip
    corpus = job.corpus
    if not corpus.is_dir():
        raise ConfigError(f"{corpus}: no corpus for {target.name} yet (fuzz it first)")
    for source in sources:
        if not source.is_dir():
            raise ConfigError(f"{source}: not a folder of inputs")
    engine.check(job)
    engine.prepare(job, session)  # the stamp must match this op table, as for a campaign
    _refuse_if_running(artifacts(job))
    before = inputs(corpus)
    log = artifacts(job) / "merge.log"
    with tempfile.TemporaryDirectory(prefix=".merge-", dir=corpus.parent) as tmp:
        dest = Path(tmp) / "corpus" if not sources else corpus
        dest.mkdir(exist_ok=True)
        cmd = [
            str(artifacts(job) / LAUNCHER),
            "-merge=1",
            f"-merge_control_file={Path(tmp) / 'control'}",
            f"-artifact_prefix={artifacts(job)}/",
            str(dest),
            *(str(s.resolve()) for s in (sources or [corpus])),
        ]
        with open(log, "ab") as out:
            done = subprocess.run(cmd, env=worker_env(job), stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise EngineFailure(f"libFuzzer's merge exited with code {done.returncode}; see {log}")
        _drop_copies_of_kept(dest, [corpus, *sources])
        if not sources:
            for name in KEPT:
                if (corpus / name).exists():
                    shutil.copy2(corpus / name, dest / name)
            old = Path(tmp) / "old"
            os.rename(corpus, old)  # two renames on one file system: never half a corpus
            os.rename(dest, corpus)
    return Merged(corpus, before, inputs(corpus), log)


def _drop_copies_of_kept(dest: Path, folders: Sequence[Path]) -> None:
    """libFuzzer takes every file of a folder for an input, the stamp and the dictionary too,
    and keeps one that happens to add coverage under its SHA-1: such copies are not inputs."""
    kept = {(f / name).read_bytes() for f in folders for name in KEPT if (f / name).is_file()}
    for path in dest.iterdir():
        if path.name not in KEPT and path.is_file() and path.read_bytes() in kept:
            path.unlink()


def _refuse_if_running(folder: Path) -> None:
    for lock in sorted(folder.glob("w*.lock")):
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"{folder.name}: a campaign's worker holds {lock.name}; stop it before changing "
                    f"its corpus"
                ) from None
            fcntl.flock(f, fcntl.LOCK_UN)

"""The atheris engine: libFuzzer mutating bytes, the codec turning them into programs.

libFuzzer owns the process it runs in and ends it with exit(), so a campaign runs it in a
child (``python -m fuzzkit.engines.atheris_engine``) and the parent reads what the child
wrote: program files for findings and a JSON-lines log of them.

Coverage comes from the kernel model's decisions only (see :mod:`fuzzkit.engines.instrument`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzzkit.engines.campaign import FindingSink, Target, prepare_corpus
from fuzzkit.engines.codec import Codec, write_dictionary
from fuzzkit.engines.instrument import coverage_modules, instrument
from fuzzkit.errors import MissingFeature
from fuzzkit.generate import random_program
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Machine
from fuzzkit.plugins import load_registry
from fuzzkit.runner import Session

MAX_LEN = 4096
#: Executions between two collections of reference cycles (see ``child``).
GC_EVERY = 100
#: Rounds of ``--bench``: the same programs run this many times, each round timed.
BENCH_ROUNDS = 5
#: How often a campaign prints progress.
PROGRESS_SECONDS = 10


def require_atheris() -> types.ModuleType:
    try:
        import atheris
    except ImportError as exc:
        raise MissingFeature(
            "the atheris engine needs the atheris package, which ships wheels for Linux x86-64 "
            "only and is not installed here; use --engine hypothesis, which works everywhere"
        ) from exc
    return atheris


@dataclass
class AtherisRun:
    returncode: int
    found: list[dict[str, Any]]
    corpus: Path


def run(
    target: Target,
    *,
    corpus: Path,
    findings: Path,
    plugin_flags: Sequence[str] = (),
    seed: int = 1,
    runs: int | None = None,
    seconds: int | None = None,
    jobs: int | None = None,
    libfuzzer_args: Sequence[str] = (),
    quiet: bool = False,
) -> AtherisRun:
    """Run a campaign in a child process and return what it found."""
    require_atheris()
    session = Session(_registry(plugin_flags))
    kernel = target.kernel(session)
    prepare_corpus(corpus, kernel)
    dict_path = corpus / "fuzzkit.dict"
    write_dictionary(Codec(kernel), str(dict_path))
    findings.mkdir(parents=True, exist_ok=True)
    log = findings / f".atheris-{target.name}.jsonl"
    log.unlink(missing_ok=True)
    args = [f"-dict={dict_path}", f"-seed={seed}", f"-max_len={MAX_LEN}", "-print_final_stats=1"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={seconds}")
    if jobs is not None and jobs > 1:
        args += [f"-jobs={jobs}", f"-workers={jobs}"]
    else:
        # One process re-reading its own corpus folder every second runs extra inputs at
        # moments set by the clock, so two runs of one seed part ways; only parallel
        # workers need the reload, to share what each found.
        args.append("-reload=0")
    cmd = [*_child_cmd(target, findings, log, plugin_flags), "--", *args, *libfuzzer_args, str(corpus)]
    fuzzer_log = findings / f"libfuzzer-{target.name}.log"
    with open(fuzzer_log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_child_env())
        if not quiet:
            print(f"   libFuzzer output: {fuzzer_log}", flush=True)
        start, reported = time.monotonic(), 0
        while True:
            try:
                proc.wait(timeout=PROGRESS_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            finally:
                found = _read_log(log)
                if not quiet:
                    for f in found[reported:]:
                        print(f"   found after {f['execs']} executions: {f['title']}", flush=True)
                    print(f"   {time.monotonic() - start:.0f}s, {len(found)} distinct findings", flush=True)
                reported = len(found)
    found = _read_log(log)
    log.unlink(missing_ok=True)
    return AtherisRun(proc.returncode, found, corpus)


def _child_cmd(target: Target, findings: Path, log: Path, plugin_flags: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "fuzzkit.engines.atheris_engine",
        "--arch", target.arch, "--revision", target.revision, "--cpus", str(target.cpus),
        "--findings", str(findings), "--log", str(log), *[f"-p={flag}" for flag in plugin_flags],
        *[f"--ops={pattern}" for pattern in target.ops],
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    """The child imports what this process can: a plugin loaded by module name (``-p
    module``) may live on a path added at run time (a test folder, a notebook's cwd). Its
    string hashes are fixed: set order steers branches, so coverage, and with it what
    libFuzzer keeps, would otherwise differ from one run of the same seed to the next."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _read_log(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _registry(plugin_flags: Sequence[str]):  # type: ignore[no-untyped-def]
    disable = [f[3:] for f in plugin_flags if f.startswith("no:")]
    enable = [f for f in plugin_flags if not f.startswith("no:")]
    return load_registry(disable=disable, enable=enable)


def child(argv: Sequence[str]) -> None:
    """The libFuzzer process: never returns (except in --bench mode)."""
    parser = argparse.ArgumentParser(prog="fuzzkit.engines.atheris_engine")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--revision", required=True)
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--findings", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("-p", dest="plugin_flags", action="append", default=[])
    parser.add_argument("--ops", action="append", default=[])
    parser.add_argument(
        "--bench", type=int, default=0, help="time this many 32-op programs per round, print exec/s"
    )
    ours, libfuzzer = parser.parse_known_args(argv)
    libfuzzer = [a for a in libfuzzer if a != "--"]
    atheris = require_atheris()
    registry = _registry(ours.plugin_flags)
    session = Session(registry)
    kernel = Target(ours.arch, ours.revision, ours.cpus, tuple(ours.ops)).kernel(session)
    codec = Codec(kernel)
    sink = FindingSink(ours.findings, log=ours.log)
    recorded_with = session.recorded_with()
    instrument(atheris, coverage_modules([p.module for p in registry.plugins if p.name != "core"]))

    execs = 0
    # A run leaves reference cycles (machine, CPUs, generator frames); the cyclic collector
    # finalizes them at moments that differ from one process to the next, running instrumented
    # code as it does, so coverage (and so what libFuzzer keeps) would differ between two runs
    # of the same seed. Collecting every GC_EVERY executions instead makes it a function of
    # the inputs alone. What exists now (modules, registry, kernel) lives as long as the
    # process: frozen, the collections only walk what the runs left behind.
    gc.disable()
    gc.freeze()

    def test_one_input(data: bytes) -> None:
        nonlocal execs
        execs += 1
        if execs % GC_EVERY == 0:
            gc.collect()
        calls, switches, inject = codec.decode_run(data)
        result = Machine(kernel, calls, Replay(switches, inject)).run()
        if result.finding is not None:
            recorded = session.record(codec.decode(data), result)
            recorded.recorded_with = recorded_with
            sink.add(result.finding, recorded, execs)

    if ours.bench:
        rng = random.Random(1)
        inputs = [codec.encode(random_program(kernel, rng, 32)) for _ in range(ours.bench)]
        rates = []
        for _ in range(BENCH_ROUNDS):
            start = time.perf_counter()
            for data in inputs:
                test_one_input(data)
            rates.append(ours.bench / (time.perf_counter() - start))
        print(json.dumps({"exec_per_second": rates}))
        return
    atheris.Setup([sys.argv[0], *libfuzzer], test_one_input)
    atheris.Fuzz()


def bench(target: Target, programs: int, plugin_flags: Sequence[str] = ()) -> list[float]:
    """Executions per second of the instrumented engine on seeded 32-op programs, one figure
    per round (``BENCH_ROUNDS``): a neighbour on a shared machine slows some rounds down,
    so a single timing says as much about the neighbour as about the engine."""
    require_atheris()
    with tempfile.TemporaryDirectory(prefix="fuzzkit-bench-") as tmp:
        cmd = [*_child_cmd(target, Path(tmp), Path(tmp) / "log", plugin_flags), "--bench", str(programs)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env()).stdout
    rates: list[float] = json.loads(out.strip().splitlines()[-1])["exec_per_second"]
    return rates


if __name__ == "__main__":
    child(sys.argv[1:])

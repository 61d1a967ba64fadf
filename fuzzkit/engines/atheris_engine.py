"""The atheris engine: libFuzzer mutating bytes, the codec turning them into programs.

libFuzzer owns the process it runs in and ends it with exit(), so each worker of a campaign
is a process of its own (:func:`main`, started through a small launcher script that
libFuzzer can re-run for ``-merge``), watched by the supervisor
(:mod:`fuzzkit.engines.supervisor`): findings are recorded by the worker as they happen
(:class:`fuzzkit.engines.worker.Recorder`), and libFuzzer's status lines become the
campaign's statistics and coverage events.

Coverage comes from the kernel model's decisions only (see :mod:`fuzzkit.engines.instrument`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuzzkit.engines.campaign import Target, prepare_corpus
from fuzzkit.engines.codec import Codec, write_dictionary
from fuzzkit.engines.directed import pair_programs, reaching_ops, seed_programs
from fuzzkit.engines.instrument import coverage_modules, instrument
from fuzzkit.engines.worker import Emitter, Job, Recorder, worker_env
from fuzzkit.errors import EXIT_FAILURE, ConfigError, MissingFeature, PluginFailure
from fuzzkit.generate import random_program
from fuzzkit.machine.choices import Replay
from fuzzkit.machine.core import Machine
from fuzzkit.plugins import registry_from_flags
from fuzzkit.runner import Session

MAX_LEN = 4096
#: Executions between two collections of reference cycles (see :func:`main`).
GC_EVERY = 100
#: Rounds of ``--bench``: the same programs run this many times, each round timed.
BENCH_ROUNDS = 5


def atheris_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("atheris") is not None


def require_atheris() -> types.ModuleType:
    try:
        import atheris
    except ImportError as exc:
        raise MissingFeature(
            "the atheris engine needs the atheris package, which ships wheels for Linux x86-64 "
            "only and is not installed here; use --engine hypothesis, which works everywhere"
        ) from exc
    return atheris


#: libFuzzer flags fuzzkit sets itself, and the fuzzkit flag to use instead.
OWN_FLAGS = {
    "jobs": "--jobs (fuzzkit runs and watches its workers itself)",
    "workers": "--jobs",
    "fork": "--jobs",
    "merge": "'fuzzkit corpus merge'",
    "set_cover_merge": "'fuzzkit corpus merge'",
    "runs": "--runs",
    "max_total_time": "--time",
    "seed": "--seed",
    "artifact_prefix": "--reports",
    "exact_artifact_path": "--reports",
    "dict": "nothing: fuzzkit writes the dictionary from the op table",
}
#: A libFuzzer status line: ``#1234 NEW cov: 56 ft: 78 corp: 9/300b ... exec/s: 2000 rss: 80Mb``.
STATUS = re.compile(
    r"^#(?P<execs>\d+)\s+(?P<what>\w+)\s+cov: (?P<cov>\d+) ft: (?P<ft>\d+) corp: (?P<corpus>\d+)/"
    r"(?:.*?exec/s: (?P<rate>\d+))?"
)

FINAL = re.compile(r"^stat::(number_of_executed_units|average_exec_per_sec):\s+(\d+)")
FINAL_FIELDS = {"number_of_executed_units": "execs", "average_exec_per_sec": "exec_per_second"}


class AtherisEngine:
    """libFuzzer in a worker process per job (see :class:`fuzzkit.engines.base.Engine`)."""

    name = "atheris"
    default_runs = 20_000

    def check(self, job: Job) -> None:
        require_atheris()
        if job.database:
            raise ConfigError("--database is the hypothesis engine's; atheris keeps its corpus in --corpus")
        for arg in job.libfuzzer_args:
            flag = arg.lstrip("-").split("=", 1)[0]
            if arg.startswith("-") and flag in OWN_FLAGS:
                raise ConfigError(f"libFuzzer flag '{arg}' is fuzzkit's to set: use {OWN_FLAGS[flag]}")

    def prepare(self, job: Job, session: Session) -> None:
        kernel = job.target.kernel(session)
        fresh = not job.corpus.exists()
        prepare_corpus(job.corpus, kernel)
        codec = Codec(kernel)
        write_dictionary(codec, str(job.corpus / DICTIONARY))
        if fresh:
            # Variant-directed search: a new corpus starts from programs of the ops that
            # reach the replaced primitives, each in its own narrow swarm configuration,
            # and from each such op run on two CPUs by turns.
            reaching = reaching_ops(kernel)
            for program in seed_programs(kernel, reaching) + pair_programs(kernel, reaching):
                data = codec.encode(program)
                (job.corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
        launcher = artifacts(job) / LAUNCHER
        text = f"#!{sys.executable}\nfrom fuzzkit.engines.atheris_engine import main\nmain()\n"
        if not launcher.exists() or launcher.read_text() != text:
            tmp = launcher.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, launcher)

    def command(self, job: Job) -> list[str]:
        args = [
            f"-dict={job.corpus / DICTIONARY}",
            f"-seed={job.seed}",
            f"-max_len={MAX_LEN}",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts(job)}/",
        ]
        if job.runs is not None:
            args.append(f"-runs={job.runs}")
        if job.seconds is not None:
            args.append(f"-max_total_time={max(1, round(job.seconds))}")
        if not job.shared:
            # One process re-reading its own corpus folder every second runs extra inputs at
            # moments set by the clock, so two runs of one seed part ways; only workers that
            # share a corpus need the reload, to take up what the others found.
            args.append("-reload=0")
        return [str(artifacts(job) / LAUNCHER), *args, *job.libfuzzer_args, str(job.corpus)]

    def parse(self, line: str) -> dict[str, Any] | None:
        m = STATUS.match(line)
        if m is None:
            final = FINAL.match(line)  # -print_final_stats: the last word on executions
            if final is None:
                return None
            return {"kind": "stats", FINAL_FIELDS[final[1]]: int(final[2])}
        return {
            "kind": "coverage" if m["what"] == "NEW" else "stats",
            "execs": int(m["execs"]),
            "exec_per_second": int(m["rate"]) if m["rate"] else None,
            "coverage": int(m["cov"]),
            "features": int(m["ft"]),
            "corpus": int(m["corpus"]),
        }


DICTIONARY = "fuzzkit.dict"
#: The executable libFuzzer sees as its ``argv[0]`` (it re-runs it for ``-merge``).
LAUNCHER = "fuzzkit-atheris"


def artifacts(job: Job) -> Path:
    """Where libFuzzer may leave crash, timeout and leak files: the campaign's folder."""
    path = job.reports / "campaign" / job.target.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    """The worker process: libFuzzer runs here and ends it with exit()."""
    job = Job.from_env()
    bench = sys.argv[1:2] == ["--bench"]
    atheris = require_atheris()
    registry = registry_from_flags(job.plugin_flags)
    session = Session(registry)
    kernel = job.target.kernel(session)
    codec = Codec(kernel)
    emit = Emitter.from_env(job)
    recorder = Recorder(job, session, emit)
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
        try:
            result = Machine(kernel, calls, Replay(switches, inject)).run()
        except PluginFailure as failure:
            # Not a finding, and not libFuzzer's crash either (it would write crash-* and
            # call it one): save the program, say whose code failed, and stop.
            program = codec.decode(data)
            program.recorded_with = recorded_with
            recorder.plugin_failure(failure, program, execs)
            os._exit(EXIT_FAILURE)
        if result.finding is not None:
            recorded = session.record(codec.decode(data), result)
            recorded.recorded_with = recorded_with
            recorder.finding(result.finding, recorded, execs)

    if bench:
        rng = random.Random(1)
        programs = int(sys.argv[2])
        inputs = [codec.encode(random_program(kernel, rng, 32)) for _ in range(programs)]
        rates = []
        for _ in range(BENCH_ROUNDS):
            start = time.perf_counter()
            for data in inputs:
                test_one_input(data)
            rates.append(programs / (time.perf_counter() - start))
        print(json.dumps({"exec_per_second": rates}))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def bench(target: Target, programs: int, plugin_flags: Sequence[str] = (), workers: int = 1) -> list[float]:
    """Executions per second of the instrumented engine on seeded 32-op programs, one figure
    per round (``BENCH_ROUNDS``): a neighbour on a shared machine slows some rounds down,
    so a single timing says as much about the neighbour as about the engine. With several
    ``workers``, that many processes run the same rounds at once and each round's figure is
    their sum: what a campaign with ``--jobs`` gets out of the machine."""
    require_atheris()
    with tempfile.TemporaryDirectory(prefix="fuzzkit-bench-") as tmp:
        job = Job("atheris", target, 0, 1, None, None, Path(tmp), Path(tmp), tuple(plugin_flags))
        env = worker_env(job)
        cmd = [sys.executable, "-m", "fuzzkit.engines.atheris_engine", "--bench", str(programs)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(workers)]
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise MissingFeature(f"the atheris bench worker failed (exit {[p.returncode for p in procs]})")
    per_worker = [json.loads(out.strip().splitlines()[-1])["exec_per_second"] for out in outs]
    return [sum(r) for r in zip(*per_worker, strict=True)]


if __name__ == "__main__":
    main()

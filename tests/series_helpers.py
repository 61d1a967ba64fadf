"""Stats series written by hand (every time in them fixed) and a short real campaign, for the
status and campaign page tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TARGET = "x86-fixed-2cpu"
T0 = 1_800_000_000.0
TITLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, fixed)"


def ev(kind: str, t: float, worker: int = 0, **fields: Any) -> dict[str, Any]:
    return {"target": TARGET, "worker": worker, "time": T0 + t, "kind": kind, **fields}


def finding(t: float, *, new: bool, slug: str = "i16-bug") -> dict[str, Any]:
    return ev("finding", t, title=TITLE, bug=TITLE, slug=slug, new=new, known=False, execs=int(t) * 10)


#: Worker 0: a first run that grew coverage until t=20 and found a new bug at t=15, then a
#: resumed run that met the same bug again and never exceeded the first run's coverage.
#: Worker 1: one run killed outright (no ``stopped`` line).
SERIES = {
    0: [
        ev("started", 0, pid=10, engine="atheris", seed=1),
        ev("stats", 5, execs=500, exec_per_second=100, coverage=40, features=90, corpus=7, bugs=0),
        ev("stats", 10, execs=1000, exec_per_second=100, coverage=44, features=120, corpus=9, bugs=0),
        finding(15, new=True),
        ev("stats", 20, execs=2000, exec_per_second=100, coverage=45, features=130, corpus=10, bugs=1),
        ev("stats", 30, execs=3000, exec_per_second=100, coverage=45, features=130, corpus=10, bugs=1),
        ev("stopped", 31, returncode=0, reason="interrupted", occurrences={"i16-bug": 1}),
        ev("started", 100, pid=11, engine="atheris", seed=1),
        ev("stats", 105, execs=400, exec_per_second=80, coverage=45, features=125, corpus=10, bugs=0),
        finding(107, new=False),
        ev("stats", 110, execs=800, exec_per_second=80, coverage=45, features=130, corpus=10, bugs=1),
        ev("stopped", 112, returncode=0, reason="done", occurrences={"i16-bug": 1}),
    ],
    1: [
        ev("started", 0, worker=1, pid=12, engine="atheris", seed=2),
        ev("stats", 5, worker=1, execs=300, exec_per_second=60, coverage=41, features=95, corpus=6, bugs=0),
        finding(8, new=True, slug="r27-bug") | {"worker": 1},
        ev("stats", 10, worker=1, execs=600, exec_per_second=60, coverage=41, features=95, corpus=6, bugs=1),
    ],
}


def write_series(reports: Path, series: dict[int, list[dict[str, Any]]] = SERIES) -> Path:
    folder = reports / "campaign" / TARGET
    folder.mkdir(parents=True, exist_ok=True)
    for worker, events in series.items():
        (folder / f"w{worker}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


TESTS = Path(__file__).resolve().parent
#: hypothesis seed 4 finds the merged revision's unallocatable slot within its first examples.
HYPOTHESIS = ["-p", "no:scx", "-p", "no:struct_ops", "fuzz", "--engine", "hypothesis", "--arch", "x86"]
HYPOTHESIS += ["--revision", "merged", "--cpus", "1", "--seed", "4", "--jobs", "1"]
HYPOTHESIS += ["--reports", "reports", "--corpus", "corpora"]


def fuzzkit(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fuzzkit", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

"""One hypothesis worker of the shared example database test, run as its own process:
fuzzkit's state machine for the merged revision (1 CPU, the arena's plugin set) against the
database named by ``--database``, printing the title of what it found, ``clean``, or
``empty`` when asked to replay an empty database.

``find`` generates examples only (it never reads the database, so what it finds it found
itself); ``replay`` runs the database's examples only (it never generates, so what it finds
came from the database).
"""

from __future__ import annotations

import argparse
import unittest

from hypothesis import Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from fuzzkit import load_registry
from fuzzkit.engines.database import open_database
from fuzzkit.engines.hypothesis_engine import FuzzkitFailure, state_machine
from fuzzkit.runner import Session

SEED = 4  # finds the unallocatable slot at its 9th example
PHASES = {"find": (Phase.generate,), "replay": (Phase.reuse,)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(PHASES))
    parser.add_argument("--database", required=True)
    parser.add_argument("--examples", type=int, default=400)
    args = parser.parse_args()
    session = Session(load_registry(disable=["struct_ops", "scx"]))
    # A seed, not derandomize: hypothesis refuses a database with derandomize.
    machine = seed(SEED)(state_machine("x86", "merged", 1, session=session))
    run = settings(
        settings.get_profile("fuzzkit-dev"),
        database=open_database(args.database),
        max_examples=args.examples,
        phases=PHASES[args.mode],
        report_multiple_bugs=False,
        print_blob=False,
    )
    try:
        run_state_machine_as_test(machine, settings=run)
    except FuzzkitFailure as failure:
        print(failure.finding.title)
        return
    except unittest.SkipTest:  # hypothesis' word for "no example to run": nothing saved yet
        print("empty")
        return
    print("clean")


if __name__ == "__main__":
    main()

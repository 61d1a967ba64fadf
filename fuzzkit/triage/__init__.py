"""Triage: from findings to one minimized, explained report per bug.

Layout, in the order a finding flows through it:

* ``probe``: instrumented replays (which primitive an invariant fired in; machine state
  before a step), built on the compiled kernel without touching the core;
* ``signature``: the title a bug is known by, its alternative titles, its slug;
  ``attribution``: whether a bug found with replaced primitives needs them (a second replay
  without them);
* ``store``: the dedup store, ``<reports>/bugs.json``;
* ``minimize``: the minimizer, bounded by a replay budget (its search in ``shrink``, the
  choices it carries through edits in ``anchors``, program sizes in ``size``);
* ``known``: known bugs, ``<reports>/known.json`` (counted, never reported as new);
* ``report``: report bundles (``report.md``, ``repro.json``, a pytest regression test) and
  ``index.md``; ``explain`` renders ``report.md``, in the plain-text ``layout`` of at most 100
  columns; ``files`` writes atomically with the user's umask;
* ``pipeline``: what engines and the command line call;
* ``bench``: the minimizer's benchmark figure.

Formats are documented in ``reports/README.md``.
"""

from fuzzkit.triage.bench import MinimizeFigure, minimize_figure
from fuzzkit.triage.errors import TriageError
from fuzzkit.triage.known import Known, load_known, mark_known, unmark_known
from fuzzkit.triage.minimize import DEFAULT_BUDGET, Minimized, minimize
from fuzzkit.triage.pipeline import (
    Triaged,
    TriageResult,
    minimize_file,
    recheck,
    save_new,
    timestamp,
    triage,
)
from fuzzkit.triage.probe import Probe, ProbeRun, Replayer, Snapshot, snapshot
from fuzzkit.triage.report import (
    regression_test_name,
    render_index,
    render_report,
    render_test,
    write_bundle,
    write_index,
)
from fuzzkit.triage.signature import (
    Signature,
    at_completion,
    attribute,
    completion_title,
    race_titles,
    signature,
    signature_of,
    slug,
    title,
)
from fuzzkit.triage.size import PassStats, ProgramSize, program_size
from fuzzkit.triage.store import STATUSES, Bug, BugStore

__all__ = [
    "DEFAULT_BUDGET",
    "STATUSES",
    "Bug",
    "BugStore",
    "Known",
    "MinimizeFigure",
    "Minimized",
    "PassStats",
    "Probe",
    "ProbeRun",
    "ProgramSize",
    "Replayer",
    "Signature",
    "Snapshot",
    "TriageError",
    "TriageResult",
    "Triaged",
    "at_completion",
    "attribute",
    "completion_title",
    "load_known",
    "mark_known",
    "minimize",
    "minimize_figure",
    "minimize_file",
    "program_size",
    "race_titles",
    "recheck",
    "regression_test_name",
    "render_index",
    "render_report",
    "render_test",
    "save_new",
    "signature",
    "signature_of",
    "slug",
    "snapshot",
    "timestamp",
    "title",
    "triage",
    "unmark_known",
    "write_bundle",
    "write_index",
]

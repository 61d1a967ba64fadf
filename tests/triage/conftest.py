"""The pipeline cases reuse the sched_ext variants of tests/scx, whose modules import their
shared helpers as the top-level ``scx_helpers`` (pytest puts a test's own folder on the path
when it collects it). Running tests/triage alone collects nothing from tests/scx, so the
folder is put on the path here for them."""

from __future__ import annotations

import sys
from pathlib import Path

SCX_TESTS = str(Path(__file__).resolve().parents[1] / "scx")
if SCX_TESTS not in sys.path:
    sys.path.append(SCX_TESTS)

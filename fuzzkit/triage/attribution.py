"""Differential attribution: does a bug found with a design variant need the variant?

A run with replaced primitives (:attr:`Finding.replaced
<fuzzkit.machine.core.Finding.replaced>`) is replayed once more on the *baseline*: the same
program, the same recorded choices, the same plugins with every replacement of the replacing
plugins left out. Only the replacements go: the ops, injection points and invariants those
plugins may also register stay, so the program still resolves and the same checks watch it.
The answer is one of

* ``needs P``: the baseline replay does not show the bug (it is clean, or shows another
  one). The bug is the variant's: every title it is known by ends in ``, needs P``
  (:func:`dependent_title`), so it never merges with a baseline bug of the same invariant,
  the minimizer keeps that dependence (a smaller program must still show it with the variant
  and still give the same baseline outcome), and a bundle's reproduce line loads P;
* ``also without P``: the baseline replay shows the same bug. It is a bug of the baseline
  found during a variant campaign, titled and merged like any baseline bug.

A finding of a run without replacements needs nothing and gets no baseline replay.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable

from fuzzkit.runner import Session

#: Outcomes of the baseline replay, as :attr:`Signature.baseline
#: <fuzzkit.triage.signature.Signature.baseline>` records them.
SAME, CLEAN, OTHER = "same", "clean", "other"

#: Baseline sessions of each session, by the plugins left out: built once per process, so a
#: campaign worker compiles the baseline kernel once however many findings it records.
_baselines: weakref.WeakKeyDictionary[Session, dict[frozenset[str], Session]] = weakref.WeakKeyDictionary()


def replacing_plugins(replaced: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The plugins behind ``replaced`` ((primitive, plugin) pairs), sorted, each once."""
    return tuple(sorted({plugin for _, plugin in replaced}))


def baseline(session: Session, plugins: Iterable[str]) -> Session:
    """``session`` without the primitive replacements of ``plugins``."""
    left_out = frozenset(plugins)
    per_session = _baselines.setdefault(session, {})
    base = per_session.get(left_out)
    if base is None:
        reg = session.registry
        kept = {name: rep for name, rep in reg.replacements.items() if rep.plugin not in left_out}
        base = per_session[left_out] = Session(dataclasses.replace(reg, replacements=kept))
    return base


def dependent_title(title: str, needs: Iterable[str]) -> str:
    """``title`` of a bug that only shows with the plugins ``needs``."""
    return f"{title}, needs {', '.join(needs)}"


def label(needs: Iterable[str], also_without: Iterable[str]) -> str:
    """How bugs.json, index.md and report.md state a bug's dependence on a variant ("" for a
    bug found without replacements)."""
    needs, also_without = list(needs), list(also_without)
    if needs:
        return "needs " + ", ".join(needs)
    if also_without:
        return "also without " + ", ".join(also_without)
    return ""


def missing(session: Session, needs: Iterable[str]) -> list[str]:
    """The plugins of ``needs`` that ``session`` did not load."""
    loaded = {p.name for p in session.registry.plugins}
    return [name for name in needs if name not in loaded]

"""Meta-tests: the plugin contract is its own documentation, and every hook is exercised."""

from __future__ import annotations

import inspect
from pathlib import Path

from fuzzkit import hookspecs
from fuzzkit.registry import HOOK_METHODS, PHASES

HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("fuzzkit_") and inspect.isfunction(f))
#: Hooks that run while a campaign runs, not at registration (they take no registrar).
CAMPAIGN_HOOKS = ["fuzzkit_campaign_event"]
TESTS = Path(__file__).resolve().parent.parent


def test_every_hook_has_a_phase_and_a_registrar_method() -> None:
    assert sorted([*PHASES, *CAMPAIGN_HOOKS]) == HOOKS
    assert sorted(PHASES) == sorted(HOOK_METHODS)


def test_every_hook_is_documented() -> None:
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert len(doc) > 150, f"{name} needs a real docstring"
        if name not in CAMPAIGN_HOOKS:
            assert all(f"``{p}(" in doc for p in params), f"{name}'s docstring must show how to call {params}"


def test_every_hook_is_used_by_some_test() -> None:
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name)
    missing = [name for name in HOOKS if name not in sources]
    assert not missing, f"hooks without a test: {missing}"

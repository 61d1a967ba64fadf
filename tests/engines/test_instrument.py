"""What the atheris engine counts: every path through a function still shows as its own set
of counters, while loop heads, ``yield from`` resumptions and blocks that other counters
account for cost nothing."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fuzzkit.engines.instrument import instrument

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here"
)


def branchy(x: int) -> int:
    if x < 0:
        return -1
    total = 0
    for i in range(x):
        if i % 2:
            total += i
    if total > 3:
        total -= 1
    else:
        total += 1
    return total


def loop(n: int) -> None:
    for _ in range(n):
        pass


def countdown(n: int) -> int:
    while True:
        n -= 1
        if n <= 0:
            break
    return n


def inner(n: int) -> Iterator[str]:
    for _ in range(n):
        yield "step"
    return n  # type: ignore[misc]


def outer(n: int) -> Iterator[str]:
    got = yield from inner(n)
    if got > 2:  # type: ignore[operator]
        return "many"  # type: ignore[misc]
    return "few"  # type: ignore[misc]


@pytest.fixture(scope="module")
def hits() -> Iterator[Callable[[Callable[[], Any]], list[int]]]:
    """Instrument the functions above and return ``hits(thunk)``: the counters ``thunk``
    bumps, in order."""
    atheris = pytest.importorskip("atheris")
    instrument(atheris, [])  # installs the adjustments, instruments nothing of fuzzkit's
    for fn in (branchy, loop, countdown, outer):
        atheris.instrument_func(fn)
    seen: list[int] = []
    real = atheris._trace_branch
    atheris._trace_branch = seen.append

    def run(thunk: Callable[[], Any]) -> list[int]:
        seen.clear()
        thunk()
        return list(seen)

    yield run
    atheris._trace_branch = real


def test_every_path_has_its_own_counters(hits: Callable[[Callable[[], Any]], list[int]]) -> None:
    # early return; no iteration and else; an even iteration; an odd one; the if branch
    paths = [frozenset(hits(lambda x=x: branchy(x))) for x in (-1, 0, 1, 2, 5)]
    assert len(set(paths)) == len(paths)


def test_a_loop_iteration_bumps_one_counter(hits: Callable[[Callable[[], Any]], list[int]]) -> None:
    assert len(hits(lambda: loop(10))) - len(hits(lambda: loop(0))) == 10
    # A loop whose body is one block that jumps back to itself: that block counts them.
    assert len(hits(lambda: countdown(10))) - len(hits(lambda: countdown(1))) == 9


def test_resuming_a_yield_from_bumps_no_counter(hits: Callable[[Callable[[], Any]], list[int]]) -> None:
    # outer is instrumented, inner is not: more steps through the same path cost nothing.
    assert hits(lambda: list(outer(3))) == hits(lambda: list(outer(30)))
    assert hits(lambda: list(outer(1))) != hits(lambda: list(outer(3)))


def test_instrumented_code_counts_blocks_but_traces_no_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons of the model's code mean nothing to the codec's bytes (see
    ``fuzzkit.engines.instrument``): they cost no call into atheris."""
    atheris = pytest.importorskip("atheris")
    probe = types.ModuleType("fuzzkit_cmp_probe")
    exec("def pick(a, b):\n    if a < b:\n        return a\n    return b\n", vars(probe))
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    assert instrument(atheris, [probe.__name__]) == 1
    branches: list[int] = []
    compares: list[Any] = []
    monkeypatch.setattr(atheris, "_trace_branch", branches.append)
    monkeypatch.setattr(atheris, "_trace_cmp", lambda *args: compares.append(args) or args[0] < args[1])
    assert probe.pick(1, 2) == 1 and probe.pick(3, 2) == 2
    assert branches and not compares

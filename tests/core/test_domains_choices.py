"""Argument domains and the choice sources."""

from __future__ import annotations

import pytest

from fuzzkit import Choice, Handle, Int, RandomChoices, Replay


@pytest.mark.parametrize(
    "dom", [Int(0, 10), Int(0, 10, default=3), Int(-1, 5, default=5), Int(7, 7), Int(-3, 9, 2)]
)
def test_int_index_is_a_bijection_starting_at_the_default(dom: Int) -> None:
    values = [dom.at(i) for i in range(dom.size)]
    assert values[0] == dom.base()
    assert sorted(values) == list(range(dom.lo, dom.hi + 1))
    assert [dom.index(v) for v in values] == list(range(dom.size))
    distances = [abs(v - dom.base()) for v in values]
    assert distances == sorted(distances), "smaller index, nearer the default"


def test_domain_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 4\]"):
        Int(0, 4).validate(5)
    with pytest.raises(ValueError, match="expected an integer"):
        Int(0, 4).validate(True)
    with pytest.raises(ValueError, match="expected one of"):
        Choice(("a", "b")).validate("c")
    with pytest.raises(ValueError, match="past the limit"):
        Handle("arena", limit=2).validate(2)
    assert Choice((True, False)).validate(False) is False
    with pytest.raises(ValueError):
        Choice((0, 1)).validate(False)


def test_replay_ignores_a_switch_to_a_cpu_that_cannot_run() -> None:
    class C:
        def __init__(self, i: int) -> None:
            self.id = i

    a, b, c = C(0), C(1), C(2)
    r = Replay(switches=[(5, 2), (6, 1)])
    assert r.pick(5, [a, b], a) is a
    assert r.pick(6, [a, b], a) is b
    assert r.pick(7, [a, b, c], a) is a


def test_random_choices_are_a_function_of_the_seed() -> None:
    def draws(seed: int) -> list[int]:
        r = RandomChoices(seed, preempt=0.5)
        return [r.pick(i, [0, 1, 2], 0) for i in range(50)]

    assert draws(4) == draws(4) != draws(5)


def test_bounded_preemption_switches_only_at_drawn_steps() -> None:
    r = RandomChoices(1, bound=2, horizon=30)
    assert r.switch_at is not None and 1 <= len(r.switch_at) <= 2
    quiet = [s for s in range(1, 31) if s not in r.switch_at]
    assert all(r.pick(s, [0, 1], 0) == 0 for s in quiet)

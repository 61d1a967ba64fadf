"""Typed argument domains for operations.

A plugin declares each operation's arguments once, as domains (DESIGN principle 1). Everything
else is derived from them: validation of program files, random generation, the atheris byte
codec, the hypothesis strategies and the minimizer's idea of a "smaller" value (the one nearer
``default``). Every domain is a finite, ordered set of values indexed ``0 .. size-1`` with the
default at index 0, so "simpler" always means "smaller index".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Int:
    """An integer in ``[lo, hi]``; index 0 is ``default`` (``lo`` unless given)."""

    lo: int
    hi: int
    default: int | None = None
    #: How far values reach on both sides of the default, and whether the longer side is
    #: above it: fixed by the bounds, kept for :meth:`at` (the codec's hot path).
    _near: int = field(init=False, repr=False, compare=False, default=0)
    _up: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"empty Int domain [{self.lo}, {self.hi}]")
        if self.default is not None and not self.lo <= self.default <= self.hi:
            raise ValueError(f"default {self.default} outside [{self.lo}, {self.hi}]")
        d = self.base()
        object.__setattr__(self, "_near", min(self.hi - d, d - self.lo))
        object.__setattr__(self, "_up", self.hi - d > d - self.lo)

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    def base(self) -> int:
        return self.lo if self.default is None else self.default

    def validate(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer in [{self.lo}, {self.hi}], got {value!r}")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{value} is outside [{self.lo}, {self.hi}]")
        return value

    def at(self, index: int) -> int:
        """Value number ``index``: the default first, then alternately one above and one
        below it, then the rest of the longer side, so that small indexes stay near it."""
        index %= self.hi - self.lo + 1
        d = self.lo if self.default is None else self.default
        near = self._near
        if index <= 2 * near:
            k = (index + 1) // 2
            return d + k if index % 2 else d - k
        return d + (index - near) if self._up else d - (index - near)

    def index(self, value: int) -> int:
        d = self.base()
        near = min(self.hi - d, d - self.lo)
        k = abs(value - d)
        if k <= near:
            return 2 * k - 1 if value > d else 2 * k
        return near + k


@dataclass(frozen=True)
class Choice:
    """One of a fixed tuple of values; the first is the default."""

    values: tuple[str | int | bool, ...]

    def __post_init__(self) -> None:
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError(f"Choice needs distinct values, got {self.values!r}")

    @property
    def size(self) -> int:
        return len(self.values)

    def base(self) -> str | int | bool:
        return self.values[0]

    def validate(self, value: object) -> str | int | bool:
        for v in self.values:
            if v == value and type(v) is type(value):
                return v
        raise ValueError(f"expected one of {list(self.values)}, got {value!r}")

    def at(self, index: int) -> str | int | bool:
        return self.values[index % len(self.values)]

    def index(self, value: str | int | bool) -> int:
        return self.values.index(value)


@dataclass(frozen=True)
class Handle:
    """A reference to the n-th object of ``kind`` created so far in the run (an arena, a
    program, a pool). A handle that does not exist when the op runs makes the op a no-op with
    result ``"no-handle"``, so that every program is runnable whatever the interleaving."""

    kind: str
    limit: int = 4

    @property
    def size(self) -> int:
        return self.limit

    def base(self) -> int:
        return 0

    def validate(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a {self.kind} handle (integer >= 0), got {value!r}")
        if value >= self.limit:
            raise ValueError(f"{self.kind} handle {value} is past the limit {self.limit}")
        return value

    def at(self, index: int) -> int:
        return index % self.limit

    def index(self, value: int) -> int:
        return value


Domain = Int | Choice | Handle

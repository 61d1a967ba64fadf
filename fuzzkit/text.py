"""Text from data files, made safe to print.

Program descriptions, bug titles, notes and field names come from files anyone can write. A
control character in them (an ANSI escape, a carriage return, a bidi override) would let a
file rewrite the user's terminal, and a lone surrogate cannot be encoded at all, so every
such character is shown as its Python escape (``\\x1b``, ``\\u202e``, ``\\ud800``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["document_problem", "printable"]


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character that is not printable escaped (``str.isprintable``: C0
    and C1 controls, format characters, separators other than space, surrogates). With
    ``newlines``, line breaks are kept, for multi-line text such as a table."""
    if text.isprintable():
        return text
    if newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def document_problem(doc: Any, max_depth: int) -> tuple[str, str] | None:
    """What makes a parsed JSON document unusable, as (field path, reason), or None: nesting
    deeper than ``max_depth``, or a string or key holding a lone surrogate (JSON's ``\\ud800``
    escape parses to one; no file or terminal can encode it). Walked without recursion, so
    depth cannot exhaust the stack."""
    todo: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while todo:
        value, path, depth = todo.pop()
        if depth > max_depth:
            return path or "top level", f"nested more than {max_depth} levels deep"
        if isinstance(value, str) and not _encodable(value):
            return path or "top level", "a lone surrogate is not text"
        if isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not _encodable(key):
                    return where, "a lone surrogate is not text"
                todo.append((item, where, depth + 1))
        elif isinstance(value, list):
            todo.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

"""Plain-text layout for reports: tables and lists that fit in :data:`WIDTH` columns.

A report is pasted into mail and read in terminals, where a line of 200 columns is a line
nobody reads. Tables are plain text (for a fenced block), their widest columns wrapped until
the table fits; list items wrap with a hanging indent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from tabulate import tabulate

#: No line of a report is longer than this.
WIDTH = 100
#: tabulate's "simple" format puts this many spaces between columns.
GAP = 2
#: A column is never wrapped narrower than this.
MIN_COLUMN = 12


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` columns (existing line breaks kept), the lines
    after the first indented by ``indent``."""
    out: list[str] = []
    for line in text.splitlines() or [""]:
        lead = line[: len(line) - len(line.lstrip())]
        out += textwrap.wrap(
            line,
            width,
            subsequent_indent=lead + indent,
            break_long_words=True,
            break_on_hyphens=False,
        ) or [""]
    return out


def _widths(rows: Sequence[Sequence[str]], headers: Sequence[str], width: int) -> list[int]:
    # tabulate pads a header by two (its MIN_PADDING): a column is never narrower than that.
    natural = [
        max(len(h) + 2, *(len(line) for r in rows for line in (r[i].splitlines() or [""])))
        for i, h in enumerate(headers)
    ]
    widths = list(natural)
    budget = width - GAP * (len(headers) - 1)
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_COLUMN:
            break
        widths[widest] -= 1
    return widths


def text_table(rows: Sequence[Sequence[object]], headers: Sequence[str], width: int = WIDTH) -> str:
    """``rows`` as a plain-text table of at most ``width`` columns: cells of the widest
    columns wrap (continuation lines indented by two) until the table fits."""
    cells = [[str(c) for c in row] for row in rows]
    widths = _widths(cells, headers, width)
    wrapped = [["\n".join(wrap(cell, widths[i], "  ")) for i, cell in enumerate(row)] for row in cells]
    table = tabulate(wrapped, headers=list(headers), tablefmt="simple", disable_numparse=True)
    return "\n".join(line.rstrip() for line in table.splitlines())


def item(label: str, text: str, width: int = WIDTH) -> str:
    """A markdown list item ``- **label**: text``, wrapped with a hanging indent."""
    return "\n".join(wrap(f"- **{label}**: {text}", width, "  "))

"""The one plain-text table of rnnbench's terminal output: columns padded to their widest cell,
two spaces apart, no trailing blanks, and a rule under the head when asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def text_table(
    head: Sequence[Any],
    rows: Sequence[Sequence[Any]],
    *,
    rule: bool = True,
    wrap_last: bool = False,
) -> str:
    """``head`` and ``rows`` as aligned text. ``wrap_last``: the last column (a free-text
    verdict or error) does not widen the others' rule, so a long message stays one line
    without a rule as long as itself."""
    cells = [[str(c) for c in head], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    if wrap_last:
        widths[-1] = len(cells[0][-1])
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths)).rstrip()]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells[1:]]
    return "\n".join(lines)

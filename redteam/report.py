"""The table ``python -m redteam`` prints."""

from __future__ import annotations

import textwrap


def table(rows: list[dict]) -> str:
    """One line per (database, attack): the outcome and what stopped or named it, wrapped to fit a terminal."""
    headers = ("database", "attack", "outcome", "how")
    widths = (9, 41, 10, 72)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "  ".join("-" * w for w in widths)]
    for row in rows:
        how = textwrap.wrap(row["how"], widths[3]) or [""]
        first = (row["backend"], row["attack"], row["outcome"], how[0])
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(first, widths, strict=True)))
        indent = " " * (sum(widths[:3]) + 6)
        lines += [indent + more for more in how[1:]]
    return "\n".join(lines)

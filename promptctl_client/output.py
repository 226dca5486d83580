"""Human output (tables like ``manage.py promptctl``'s) or, with ``--json``, the server's JSON only."""

from __future__ import annotations

import json
import sys
from typing import Any


class Output:
    """Human lines go to stdout unless ``--json`` is set, in which case only the JSON does."""

    def __init__(self, *, json_mode: bool, stream=None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stdout

    def human(self, text: str = "") -> None:
        if not self.json_mode:
            self.stream.write(text + "\n")

    def table(self, rows: list[list[Any]], headers: list[str]) -> None:
        if self.json_mode:
            return
        cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for index, row in enumerate(cells):
            self.human("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
            if index == 0:
                self.human("  ".join("-" * w for w in widths))

    def emit_json(self, data: Any) -> None:
        self.stream.write(json.dumps(data, indent=2, default=str, sort_keys=True) + "\n")


def short_time(value: Any) -> str:
    """``2026-11-30T19:10:26.123+00:00`` as ``2026-11-30T19:10:26``; ``-`` for nothing."""
    return str(value)[:19] if value else "-"

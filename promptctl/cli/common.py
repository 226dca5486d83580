"""Helpers shared by CLI groups: acting user, agent lookup, output."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.contrib.auth import get_user_model

from promptctl.errors import DomainError


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


def add_actor_argument(parser, *, required: bool = True) -> None:
    parser.add_argument("--as", dest="actor", required=required, metavar="USER", help="the acting user")


def actor_from_options(options) -> Any:
    """The user named by ``--as``; refusing unknown or inactive users by name."""
    username = getattr(options, "actor", None)
    if not username:
        raise DomainError("No acting user: pass --as USER (see `promptctl user add`).")
    user_model = get_user_model()
    try:
        user = user_model.objects.get(username=username)
    except user_model.DoesNotExist:
        raise DomainError(f"Unknown user {username!r}: create it with `promptctl user add {username} --role ...`.")
    if not user.is_active:
        raise DomainError(f"User {username!r} is inactive and cannot act.")
    return user

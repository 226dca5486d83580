"""Cursor pagination in the shape the SDK's page classes read.

``SyncPageCursor`` reads ``data`` and ``next_page`` and sends ``?page=<next_page>`` for
the following page; ``SyncBidirectionalPageCursor`` also has ``prev_page``. A cursor is
an opaque token naming the sort key of the item it continues from (keyset pagination),
so items created between two page requests neither repeat nor go missing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import invalid_request

Item = TypeVar("Item")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def page_limit(raw: str | None) -> int:
    """Default 20, at most 100, as the API documents; anything else is refused with the range."""
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise invalid_request(f"limit {raw!r} is not a whole number; use 1 to {MAX_LIMIT}.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_request(f"limit {limit} is out of range; use 1 to {MAX_LIMIT}.")
    return limit


def _encode(direction: str, key: int) -> str:
    raw = json.dumps({"d": direction, "k": key}).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int]:
    try:
        payload = cursor.removeprefix("page_")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        direction, key = data["d"], int(data["k"])
    except (ValueError, KeyError, TypeError):
        raise invalid_request(f"page cursor {cursor!r} is not one this server issued; start from the first page.")
    if direction not in ("after", "before"):
        raise invalid_request(f"page cursor {cursor!r} is not one this server issued; start from the first page.")
    return direction, key


def paginate(
    items: Sequence[Item],
    *,
    sort_key: Callable[[Item], int],
    render: Callable[[Item], dict[str, Any]],
    limit: int,
    cursor: str | None,
    descending: bool,
    bidirectional: bool = False,
) -> dict[str, Any]:
    """One page of ``items`` (any order in, sorted here by unique integer ``sort_key``)."""
    ordered = sorted(items, key=sort_key, reverse=descending)

    def comes_after(item: Item, key: int) -> bool:
        return sort_key(item) < key if descending else sort_key(item) > key

    if cursor:
        direction, key = _decode(cursor)
        if direction == "after":
            remaining = [item for item in ordered if comes_after(item, key)]
            chosen = remaining[:limit]
        else:
            preceding = [item for item in ordered if sort_key(item) != key and not comes_after(item, key)]
            chosen = preceding[-limit:]
    else:
        chosen = ordered[:limit]

    next_page = None
    prev_page = None
    if chosen:
        last_key = sort_key(chosen[-1])
        if any(comes_after(item, last_key) for item in ordered):
            next_page = _encode("after", last_key)
        first_key = sort_key(chosen[0])
        if any(sort_key(item) != first_key and not comes_after(item, first_key) for item in ordered):
            prev_page = _encode("before", first_key)
    page: dict[str, Any] = {"data": [render(item) for item in chosen], "next_page": next_page}
    if bidirectional:
        page["prev_page"] = prev_page
    return page
